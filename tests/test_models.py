"""The NNX twins of timm's ResNets (prcm_jax.models): parity with timm on whole networks, a
broken twin caught, from_timm, checkpoints both ways, Flax modes, and bad input."""

import copy
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.torch
import timm
import torch
from flax import nnx

import parity
import prcm_jax
import prcm_torch
from parity.proof.networks import (ATTENTIONS, CHECKS, EPS32, OP_RATIO, QUICK_TRAIN, TYPICAL_LIMIT, WORST_LIMIT, NetworkCase,
                                   attention_layer, compare, randomize, run_network_case, summarize)  # fmt: skip
from parity.proof.operations import layer_errors
from prcm_jax.models import BasicBlock, BatchNorm, Bottleneck, ResNet, SqueezeExcite, from_timm, resnet18, resnet50, twin_config


def _message(result) -> str:
    lines = [f"{check}: typical {c.typical:.2f} (limit {TYPICAL_LIMIT}), worst {c.ratio[0]:.2f} (limit {WORST_LIMIT}) at "
             f"{c.ratio[1]}" for check, c in result.checks.items()]  # fmt: skip
    return "; ".join(lines + [f"round trips {result.exact}", f"kinks crossed {result.crossed}"])


# -- parity on a whole network: resnet18 with every attention block --------------------------


# Every check (eval, train, stats, grad, round trips) for no attention, timm's SE and AffinePRCM
# (the dropout path of the PRCM family); eval and round trips for the other blocks, whose train-mode
# checks run on a smaller ResNet below. The train-mode program takes ~7 s to compile per network:
# `python -m parity` runs every check for every block on resnet18 and resnet50.
FULL = QUICK_TRAIN


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_resnet18_matches_timm(attention):
    result = run_network_case(NetworkCase("resnet18", attention, train=attention in FULL))
    assert set(result.checks) == (set(CHECKS) if attention in FULL else {"eval"})
    assert result.exact == {"timm -> nnx -> timm": True, "nnx -> timm -> nnx": True}
    assert result.ok, _message(result)


@pytest.mark.parametrize("attention", [a for a in ATTENTIONS if a not in FULL])
def test_every_attention_trains_within_the_limits(attention):
    """The train, stats and grad checks of the blocks that test_resnet18_matches_timm runs in eval
    mode only, on a ResNet with one block per stage and resnet18's 1000 classes."""
    model = _one_block_per_stage(attention, 1000)
    x = np.random.default_rng(2).standard_normal((2, 64, 64, 3)).astype(np.float32)
    errors, _ = compare(model, from_timm(model), x)
    for check in CHECKS:
        summary = summarize(errors[check])
        assert summary.ok, (check, summary)


# -- the checks catch a twin that differs in anything but rounding ---------------------------


class _AttentionAfterAdd(BasicBlock):
    """A wrong twin: the attention after the residual add instead of before it."""

    def __call__(self, x, *, deterministic=None, rngs=None):
        shortcut = x if self.downsample is None else self.downsample(x)
        x = self.bn2(self.conv2(nnx.relu(self.bn1(self.conv1(x)))))
        return self.se(nnx.relu(x + shortcut), deterministic=deterministic, rngs=rngs)


class _FlaxRunningVariance(BatchNorm):
    """A wrong twin: Flax's BatchNorm call (biased running variance, no unbiasing)."""

    __call__ = nnx.BatchNorm.__call__


def _same_padding(twin):
    twin.conv1.padding = "SAME"  # pads the stride-2 7x7 stem (2, 3) where torch pads (3, 3)


def _bn_epsilon(twin):
    for _, m in nnx.iter_modules(twin):
        if isinstance(m, BatchNorm):
            m.epsilon = 1e-3


def _attention_after_add(twin):
    for _, m in nnx.iter_modules(twin):
        if isinstance(m, BasicBlock):
            m.__class__ = _AttentionAfterAdd  # a new class: a new graph, compiled afresh


def _flax_running_variance(twin):
    for _, m in nnx.iter_modules(twin):
        if isinstance(m, BatchNorm):
            m.__class__ = _FlaxRunningVariance


def _one_block_per_stage(attention: str, num_classes: int) -> torch.nn.Module:
    """A randomised timm ResNet with one BasicBlock per stage (every layer kind of resnet18, about
    half the compile time) and ``attention`` in every block."""
    from timm.models.resnet import BasicBlock as TimmBasicBlock, ResNet as TimmResNet

    torch.manual_seed(1)
    block_args = dict(attn_layer=attention_layer(attention))
    model = TimmResNet(TimmBasicBlock, (1, 1, 1, 1), num_classes=num_classes, block_args=block_args)
    calib = torch.from_numpy(np.random.default_rng(1).standard_normal((2, 3, 64, 64)).astype(np.float32))
    return randomize(model, calib, seed=1)


@pytest.fixture(scope="module")
def small_timm():
    """AffinePRCM blocks, 10 classes (cheap to compile)."""
    return _one_block_per_stage("AffinePRCM", 10)


@pytest.mark.parametrize(("breakage", "check"), [(_same_padding, "eval"), (_bn_epsilon, "eval"),
                                                 (_attention_after_add, "eval"), (_flax_running_variance, "stats")])  # fmt: skip
def test_a_broken_twin_fails_the_checks(small_timm, breakage, check):
    twin = from_timm(small_timm)
    breakage(twin)
    x = np.random.default_rng(2).standard_normal((2, 64, 64, 3)).astype(np.float32)
    errors, _ = compare(small_timm, twin, x, train=check != "eval")
    summary = summarize(errors[check])
    assert summary.ratio[0] > 100 * WORST_LIMIT, summary  # not a near miss: orders of magnitude


#: The relative noise, in eps, that makes a twin five times less accurate than torch (see below).
NOISE = 8.0


@jax.custom_vjp
def _noise(x):
    """``x * (1 + NOISE * eps * z)``, ``z`` a fixed standard normal draw; another on the way back."""
    return x * (1 + NOISE * EPS32 * jax.random.normal(jax.random.key(0), x.shape, x.dtype))


def _noise_back(_, g):
    return (g * (1 + NOISE * EPS32 * jax.random.normal(jax.random.key(1), g.shape, g.dtype)),)


_noise.defvjp(lambda x: (_noise(x), None), _noise_back)


class _LessAccurateBatchNorm(BatchNorm):
    """A twin five times less accurate than torch: every BatchNorm output and input gradient
    carries NOISE eps of relative error more (as if each convolution and BatchNorm rounded
    worse), which puts JAX's errors at 4-6 times torch's (typical ratio of eval, train, grad)."""

    def __call__(self, x, use_running_average=None, *, mask=None):
        return _noise(super().__call__(x, use_running_average, mask=mask))


def _less_accurate(twin):
    for _, m in nnx.iter_modules(twin):
        if isinstance(m, BatchNorm):
            m.__class__ = _LessAccurateBatchNorm


def test_a_less_accurate_twin_fails_the_checks(small_timm):
    twin = from_timm(small_timm)
    _less_accurate(twin)
    x = np.random.default_rng(2).standard_normal((2, 64, 64, 3)).astype(np.float32)
    errors, _ = compare(small_timm, twin, x)
    for check in ("eval", "train", "grad"):
        summary = summarize(errors[check])
        assert not summary.ok, (check, summary)
        assert summary.typical < 2 * 5, (check, summary)  # caught at about 5x, not 50x


def test_the_limits_follow_from_the_per_layer_ratio():
    """TYPICAL_LIMIT and WORST_LIMIT are OP_RATIO times the 99.99% point of the ratio of two norms
    of k independent normal components, sqrt(F(k, k)), for k = 128 and k = 8 (module docstring)."""
    from scipy import stats

    for limit, k in ((TYPICAL_LIMIT, 128), (WORST_LIMIT, 8)):
        assert limit == pytest.approx(OP_RATIO * stats.f.ppf(0.9999, k, k) ** 0.5, abs=0.05)


#: One layer of each kind: the stem, a 3x3 convolution, a downsampling one, BatchNorm, the attention, the head.
LAYERS = ("conv1", "layer2.0.conv1", "layer2.0.downsample.0", "layer2.0.bn1", "layer2.0.se", "fc")


def test_every_layer_is_within_the_per_layer_ratio(small_timm):
    """The premise of the limits: on each layer, at the values the network feeds it in a train
    step, JAX's float32 error is within OP_RATIO of torch's; the less accurate twin's BatchNorm is not."""
    x = np.random.default_rng(2).standard_normal((2, 64, 64, 3)).astype(np.float32)
    twin = from_timm(small_timm)
    errors = layer_errors(small_timm, twin, x, train=True, names=LAYERS)
    assert set(errors) == set(LAYERS)
    worse = {(n, k): e for n, results in errors.items() for k, e in results.items() if e.ratio > OP_RATIO}
    assert not worse, worse
    _less_accurate(twin)
    noisy = layer_errors(small_timm, twin, x, train=True, names=("layer2.0.bn1",))["layer2.0.bn1"]
    assert all(e.ratio > OP_RATIO for e in (noisy["output"], noisy["grad input"])), noisy


# -- from_timm: every depth, the factories, and what it refuses ------------------------------


def _meta(name, **kwargs):
    with torch.device("meta"):
        return timm.create_model(name, **kwargs)


def _zeros(model):
    return {k: torch.zeros(v.shape, dtype=v.dtype) for k, v in model.state_dict().items()}


@pytest.mark.parametrize(("name", "attention"), [("resnet18", None), ("resnet34", prcm_torch.SEModule), ("resnet50", "se"),
                                                 ("resnet50", prcm_torch.AffinePRCM)])  # fmt: skip
def test_from_timm_pairs_with_timm_and_the_factories(name, attention):
    skeleton = _meta(name, block_args=dict(attn_layer=attention))
    twin = from_timm(skeleton, weights=_zeros(skeleton))  # strict: every key, shape and dtype
    attn = None if attention is None else "se" if attention == "se" else getattr(prcm_jax, attention.__name__)
    built = nnx.eval_shape(lambda: getattr(prcm_jax.models, name)(attn_layer=attn, rngs=nnx.Rngs(0)))
    assert _shapes(twin) == _shapes(built)


def _shapes(model):
    return jax.tree.map(lambda v: (v.shape, v.dtype), nnx.to_pure_dict(nnx.state(model, (nnx.Param, nnx.BatchStat))))


@pytest.mark.parametrize(("name", "depths"), [("resnet101", (3, 4, 23, 3))])
def test_deep_factories_hold_timms_weights(name, depths):
    skeleton = _meta(name)
    assert twin_config(skeleton)["layers"] == depths
    built = nnx.eval_shape(lambda: getattr(prcm_jax.models, name)(rngs=nnx.Rngs(0)))
    sizes = sorted(int(np.prod(s)) for s, _ in jax.tree.leaves(_shapes(built), is_leaf=lambda t: isinstance(t, tuple)))
    want = sorted(v.numel() for k, v in skeleton.state_dict().items() if not k.endswith("num_batches_tracked"))
    assert sizes == want


@pytest.mark.parametrize("channels", [24, 64, 100, 128, 256, 512, 1024, 2048])
def test_squeeze_excite_has_timms_hidden_width(channels):
    from timm.layers import SEModule

    se = SqueezeExcite(channels, rngs=nnx.Rngs(0))
    assert se.fc1.kernel.shape == (1, 1, channels, SEModule(channels, device="meta").fc1.out_channels)


@pytest.mark.parametrize(("name", "kwargs", "expected"), [
    ("resnet18d", {}, "deep stem"),
    ("resnet50", {"avg_down": True}, "avg_down=True"),
    ("resnet50", {"drop_path_rate": 0.1}, "DropPath"),
    ("resnet50", {"drop_block_rate": 0.1}, "DropBlock"),
    ("resnet50", {"drop_rate": 0.2}, "dropout before the classifier"),
    ("resnet50", {"global_pool": "max"}, "global_pool"),
    ("resnet50", {"output_stride": 16}, "dilated"),
    ("resnext50_32x4d", {}, "cardinality=32"),
    ("wide_resnet50_2", {}, "convolution widths"),
    ("resnet50", {"act_layer": "silu"}, r"SiLU \(act_layer"),
    ("resnet50", {"norm_layer": "groupnorm"}, r"GroupNorm \(norm_layer\)"),
    ("resnet50", {"block_args": {"attn_layer": "eca"}}, "EcaModule has no NNX twin"),
])  # fmt: skip
def test_from_timm_names_what_the_twins_do_not_cover(name, kwargs, expected):
    with pytest.raises(parity.ConversionError, match=expected) as info:
        twin_config(_meta(name, **kwargs))
    assert "nothing was converted" in str(info.value)


@pytest.mark.parametrize("mode", ["circular", "reflect"])
def test_from_timm_refuses_convolutions_that_pad_with_other_than_zeros(mode):
    model = _meta("resnet18")
    model.layer2[0].conv1.padding_mode = mode  # no timm option does this; a hand edit would be silently wrong
    with pytest.raises(parity.ConversionError, match=f"layer2.0.conv1: padding_mode='{mode}'; the twin pads with zeros"):
        twin_config(model)


def test_from_timm_bad_arguments():
    with pytest.raises(TypeError, match="expected a timm ResNet"):
        from_timm(torch.nn.Linear(2, 3))
    with pytest.raises(parity.ConversionError, match="meta device: pass weights="):
        from_timm(_meta("resnet18"))
    skeleton = _meta("resnet18", num_classes=10)
    wrong = _zeros(_meta("resnet18"))  # 1000 classes
    with pytest.raises(parity.ConversionError, match=r"fc.weight"):
        from_timm(skeleton, weights=wrong)


def test_from_timm_reads_classes_channels_dropout_and_mode():
    attn_layer = lambda c, **kw: prcm_torch.PRCM(c, num_basis=4, dropout_rate=0.25, **kw)  # noqa: E731
    model = timm.create_model("resnet18", in_chans=1, num_classes=0, block_args=dict(attn_layer=attn_layer))
    twin = from_timm(model.eval())
    block = twin.layer3[1].se
    assert (type(block), block.num_basis, block.dropout_rate) == (prcm_jax.PRCM, 4, 0.25)
    assert twin.num_classes == 0 and twin.in_chans == 1 and twin.layer1[0].bn1.use_running_average
    y = twin(jnp.ones((2, 32, 32, 1)))
    with torch.no_grad():
        want = model(torch.ones(2, 1, 32, 32)).numpy()
    assert y.shape == (2, 512) and np.allclose(y, want, rtol=1e-4, atol=1e-5)
    for module in model.modules():  # how torch users change dropout: each layer's `p`
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.1
    assert from_timm(model).layer3[1].se.dropout_rate == 0.1


# -- checkpoints: .safetensors and .pth in, .safetensors out ---------------------------------


def test_timm_checkpoints_into_the_twin_and_back(small_timm, tmp_path):
    state = small_timm.state_dict()
    safetensors.torch.save_file(state, tmp_path / "w.safetensors")
    torch.save(state, tmp_path / "w.pth")
    skeleton = copy.deepcopy(small_timm).to("meta").eval()
    direct = from_timm(small_timm)
    from_file = from_timm(skeleton, weights=tmp_path / "w.safetensors")
    build = lambda: ResNet("basic", (1, 1, 1, 1), num_classes=10, attn_layer=prcm_jax.AffinePRCM, rngs=nnx.Rngs(0))  # noqa: E731
    abstract = nnx.eval_shape(build)
    by_hand = parity.torch_to_nnx(tmp_path / "w.pth", abstract)
    for twin in (from_file, by_hand):
        for a, b in zip(jax.tree.leaves(nnx.state(twin, (nnx.Param, nnx.BatchStat))),
                        jax.tree.leaves(nnx.state(direct, (nnx.Param, nnx.BatchStat)))):  # fmt: skip
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    parity.save_safetensors(from_file, skeleton, tmp_path / "back.safetensors")
    back = copy.deepcopy(small_timm)
    back.load_state_dict(safetensors.torch.load_file(tmp_path / "back.safetensors"), strict=True)
    for key, value in state.items():
        assert torch.equal(back.state_dict()[key], value), key


# -- Flax protocols: nnx.view, train/eval, dropout streams -----------------------------------


def _layers():
    from prcm_examples.digits import Net

    rngs = lambda: nnx.Rngs(0)  # noqa: E731
    for attn_layer, block in ((None, "none"), ("se", "SEModule"), (prcm_jax.PRCM, "PRCM")):
        name = getattr(attn_layer, "__name__", attn_layer)
        yield pytest.param(lambda a=attn_layer: BasicBlock(64, 64, attn_layer=a, rngs=rngs()), attn_layer, id=f"BasicBlock-{name}")
        yield pytest.param(lambda a=attn_layer: Bottleneck(256, 64, attn_layer=a, rngs=rngs()), attn_layer, id=f"Bottleneck-{name}")
        yield pytest.param(lambda b=block: Net(b, rngs=rngs()), attn_layer, id=f"digits-{name}")


@pytest.mark.parametrize(("build", "attn_layer"), list(_layers()))
def test_every_block_of_the_twins_takes_nnx_views_arguments(build, attn_layer):
    """A block or the example's CNN, used on its own, takes ``nnx.view``'s ``deterministic``
    whether or not it holds dropout, and ``use_running_average`` for its BatchNorm layers."""
    model = build()
    frozen = nnx.view(model, deterministic=True, use_running_average=True)
    modules = [m for _, m in nnx.iter_modules(frozen)]
    assert all(m.use_running_average for m in modules if isinstance(m, nnx.BatchNorm))
    dropout = [m for m in modules if isinstance(m, prcm_jax.PRCM)]
    assert len(dropout) == (0 if attn_layer != prcm_jax.PRCM else 2 if "Net" in type(model).__name__ else 1)
    assert all(m.deterministic for m in dropout)
    with pytest.raises(ValueError, match="Unused keys"):
        nnx.view(model, determinstic=True)


def test_squeeze_excite_takes_deterministic_and_has_no_batch_norm():
    se = SqueezeExcite(64, rngs=nnx.Rngs(0))
    x = jnp.ones((2, 4, 4, 64))
    np.testing.assert_array_equal(nnx.view(se, deterministic=True)(x), se(x))
    with pytest.raises(ValueError, match="Unused keys"):
        nnx.view(se, use_running_average=True)


@pytest.mark.parametrize("attn_layer", [None, "se", prcm_jax.PRCM])
def test_modes_follow_nnx_view_and_train_eval(attn_layer):
    model = nnx.eval_shape(lambda: ResNet("basic", (1, 1, 1, 1), num_classes=3, attn_layer=attn_layer, rngs=nnx.Rngs(0)))
    flags = lambda m: {(type(s).__name__, k, getattr(s, k)) for _, s in nnx.iter_modules(m)  # noqa: E731
                       for k in ("deterministic", "use_running_average") if hasattr(s, k)}
    view = nnx.view(model, deterministic=True, use_running_average=True)
    assert all(v for _, _, v in flags(view)) and not any(v for _, _, v in flags(model))
    nnx.view(model, deterministic=True)  # accepted with or without a block that has dropout
    nnx.view(model, use_running_average=True)
    with pytest.raises(ValueError, match="Unused keys"):
        nnx.view(model, determinstic=True)
    model.eval()
    assert all(v for _, _, v in flags(model))
    model.train()
    assert not any(v for _, _, v in flags(model))


def test_each_block_draws_dropout_from_its_own_stream():
    twin = from_timm(timm.create_model("resnet18", block_args=dict(attn_layer=prcm_torch.AffinePRCM)), seed=3)
    keys = [np.asarray(jax.random.key_data(k)) for k in jax.tree.leaves(nnx.state(twin, nnx.RngKey))]
    assert len(keys) == 8 and len({k.tobytes() for k in keys}) == 8


def test_batchnorm_updates_running_statistics_like_torch():
    x = np.random.default_rng(0).standard_normal((3, 5, 4, 6)).astype(np.float32) * 3 + 1
    torch_bn = torch.nn.BatchNorm2d(6).double().train()
    want = torch_bn(torch.from_numpy(x).double().permute(0, 3, 1, 2)).permute(0, 2, 3, 1).detach().numpy()
    bn = BatchNorm(6, rngs=nnx.Rngs(0))
    got = np.asarray(bn(jnp.asarray(x)))
    eps = np.finfo(np.float32).eps
    assert np.abs(got - want).max() <= 16 * eps * np.abs(want).max()
    for ours, theirs in ((bn.mean, torch_bn.running_mean), (bn.var, torch_bn.running_var)):  # unbiased variance, as torch
        np.testing.assert_allclose(np.asarray(ours[...]), theirs.numpy(), rtol=16 * eps)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        BatchNorm(6, rngs=nnx.Rngs(0))(jnp.ones((1, 1, 1, 6)))


# -- bad input ---------------------------------------------------------------------------


def test_bad_input_is_named_before_any_work():
    model = nnx.eval_shape(lambda: resnet18(num_classes=2, rngs=nnx.Rngs(0)))  # the checks run before any weight is read
    with pytest.raises(ValueError, match=r"expected an input \(B, H, W, 3\).*got shape \(2, 3, 32, 32\)"):
        model(jnp.ones((2, 3, 32, 32)))
    with pytest.raises(ValueError, match=r"got shape \(32, 32, 3\)"):
        model(jnp.ones((32, 32, 3)))
    with pytest.raises(TypeError, match="expected a floating-point input, got dtype int32"):
        model(jnp.ones((1, 32, 32, 3), jnp.int32))
    with pytest.raises(TypeError, match="expected a JAX or NumPy array, got Tensor"):
        model(torch.ones(1, 32, 32, 3))
    with pytest.raises(ValueError, match="block must be one of"):
        ResNet("bottle", (1, 1, 1, 1), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="layers must be 4 ints >= 1"):
        ResNet("basic", (2, 2, 2), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="num_classes must be an int >= 0"):
        resnet18(num_classes=-1, rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match="attn_layer must be None, 'se' or a module class"):
        resnet18(attn_layer="cbam", rngs=nnx.Rngs(0))


# -- the command line ----------------------------------------------------------------------


def test_parity_cli_networks_part(monkeypatch, capsys):
    from parity import __main__ as cli
    from parity.proof.networks import CheckSummary, NetworkResult

    def fake(case):
        summary = CheckSummary(1, (1.0, 99.0), (1.0, 99.0), (99.0, "logits"), 99.0)
        return NetworkResult(case, {"eval": summary}, {"timm -> nnx -> timm": True, "nnx -> timm -> nnx": True})

    monkeypatch.setattr(cli, "run_network_case", fake)
    assert cli.main(["--quick", "--networks", "resnet18", "--attentions", "PRCM,se"]) == 1
    out = capsys.readouterr().out
    assert "FAIL at logits" in out and "2 of 2 network cases failed" in out and "module" not in out.split("parity, networks")[0]
    with pytest.raises(SystemExit) as bad:
        cli.parse_args(["--attentions", "cbam"])
    assert bad.value.code == 2 and "unknown attention cbam; choose from none, se, PRCM" in capsys.readouterr().err


def test_parity_cli_networks_part_without_timm_exits_2_before_any_work(monkeypatch, capsys):
    from parity import __main__ as cli

    monkeypatch.setitem(sys.modules, "timm", None)  # import raises, as when it is not installed
    with pytest.raises(SystemExit) as bad:
        cli.parse_args(["--quick"])
    err = capsys.readouterr().err
    assert bad.value.code == 2 and "the networks part needs timm" in err and "--parts modules" in err
    assert cli.parse_args(["--quick", "--parts", "modules"]).parts == ("modules",)


def test_a_timm_that_fails_to_import_counts_as_unavailable(tmp_path, monkeypatch, capsys):
    """What torchvision built for another torch does: installed, but importing it raises."""
    from parity import __main__ as cli
    from prcm.cli import unavailable

    (tmp_path / "timm.py").write_text("raise RuntimeError('operator torchvision::nms does not exist\\nmore lines')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "timm")
    assert unavailable("timm") == {"timm": "RuntimeError: operator torchvision::nms does not exist"}
    with pytest.raises(SystemExit) as bad:
        cli.parse_args(["--networks", "resnet18"])
    assert bad.value.code == 2 and "(RuntimeError: operator torchvision::nms does not exist)" in capsys.readouterr().err
