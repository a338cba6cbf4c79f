"""The lightweight twins (EfficientNet, MobileNetV3), ResNet-D and torchvision ResNets: parity with
the torch model on small networks (every check of the network parity), a broken twin caught,
from_timm against timm's and torchvision's own models, what it refuses, and the Flax modes."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import timm
import torch
import torchvision
from flax import nnx
from torch import nn

import parity
import prcm
import prcm_jax
import prcm_jax.models as models
import prcm_torch
from parity.proof.networks import ATTENTIONS, _relu_kinks, _relu_namer, _with_se_slots, attention_layer, compare, randomize, round_trips, summarize
from parity.proof.networks import TYPICAL_LIMIT, WORST_LIMIT
from prcm_jax.models import BatchNormAct, EfficientNet, MobileNetV3, from_timm, twin_config
from prcm_jax.models.efficientnet_blocks import SqueezeExcite

IMAGE = 40  # odd feature maps deep in a ResNet (20, 10, 5, 3): the ceil-mode average pool's partial windows


# -- small torch networks of each family (cheap to compile), with their library's init ----------


def tiny_mobilenetv3():
    """timm's MobileNetV3 class with a short architecture: ds (SE, ReLU), ir (ReLU, skip), ir (SE,
    hard-swish, k5), cn; the SE of mobilenetv3_* (ReLU, hard sigmoid, width rounded to 8)."""
    from timm.models._efficientnet_blocks import SqueezeExcite as TimmSE
    from timm.models._efficientnet_builder import decode_arch_def, round_channels
    from timm.models.mobilenetv3 import MobileNetV3 as TimmMobileNetV3

    arch = [["ds_r1_k3_s1_e1_c16_se0.25_nre"], ["ir_r1_k3_s2_e3_c24_nre", "ir_r1_k3_s1_e3_c24_nre"],
            ["ir_r1_k5_s2_e4_c40_se0.25"], ["cn_r1_k1_s1_c96"]]  # fmt: skip
    se_layer = functools.partial(TimmSE, gate_layer="hard_sigmoid", force_act_layer=nn.ReLU, rd_round_fn=round_channels)
    return TimmMobileNetV3(decode_arch_def(arch), num_classes=10, num_features=128, act_layer=nn.Hardswish, se_layer=se_layer)


def tiny_efficientnet():
    """timm's EfficientNet class with a short architecture (SiLU, SE gated by a sigmoid, head conv + BN)."""
    from timm.models._efficientnet_builder import decode_arch_def
    from timm.models.efficientnet import EfficientNet as TimmEfficientNet

    arch = [["ds_r1_k3_s1_e1_c16_se0.25"], ["ir_r2_k3_s2_e6_c24_se0.25"], ["ir_r1_k5_s2_e6_c40_se0.25"]]
    return TimmEfficientNet(decode_arch_def(arch), num_classes=10, num_features=128, stem_size=16, act_layer=nn.SiLU)


def tiny_resnet_d(attention):
    """timm's ResNet-D (deep stem, avg_down) with one BasicBlock per stage."""
    from timm.models.resnet import BasicBlock, ResNet

    return ResNet(BasicBlock, (1, 1, 1, 1), num_classes=10, stem_type="deep", stem_width=32, avg_down=True,
                  block_args=dict(attn_layer=attention_layer(attention)))  # fmt: skip


def tiny_torchvision(attention, block="BasicBlock"):
    """torchvision's ResNet with one block per stage, the attention wrapped into each block's last norm."""
    from torchvision.models import resnet

    model = resnet.ResNet(getattr(resnet, block), [1, 1, 1, 1], num_classes=10)
    if attention != "none":
        for stage in (model.layer1, model.layer2, model.layer3, model.layer4):
            last = "bn3" if block == "Bottleneck" else "bn2"
            norm = getattr(stage[0], last)
            setattr(stage[0], last, nn.Sequential(norm, prcm.CATALOG[attention].torch(norm.num_features)))
    return model


TINY = {
    "mobilenetv3": lambda a: _with_se_slots(tiny_mobilenetv3(), a),
    "efficientnet": lambda a: _with_se_slots(tiny_efficientnet(), a),
    "resnet_d": tiny_resnet_d,
    "torchvision": tiny_torchvision,
    "torchvision_bottleneck": lambda a: tiny_torchvision(a, "Bottleneck"),
}


def _randomized(family, attention, seed=1):
    torch.manual_seed(seed)
    model = TINY[family](attention)
    calib = torch.from_numpy(np.random.default_rng(seed).standard_normal((2, 3, IMAGE, IMAGE)).astype(np.float32))
    return randomize(model, calib, seed=seed)


def _image(seed=2):
    return np.random.default_rng(seed).standard_normal((2, IMAGE, IMAGE, 3)).astype(np.float32)


#: (family, attention, train-mode checks too). MobileNetV3 takes each kind of block (the new slot for
#: PRCM, ReLU and hard-swish kinks, the hard-sigmoid SE); each other family its SE-like block and
#: AffinePRCM (the PRCM family's dropout path), one of them with every check. `python -m parity`
#: runs every network x block.
CASES = [
    *(("mobilenetv3", a, a in ("se", "AffinePRCM")) for a in ATTENTIONS if not a.endswith("NoDropout")),
    ("efficientnet", "se", True), ("efficientnet", "AffinePRCM", False),
    ("resnet_d", "se", False), ("resnet_d", "AffinePRCM", True),
    ("torchvision", "AffinePRCM", True), ("torchvision_bottleneck", "PRCM", False),
]  # fmt: skip


@pytest.mark.parametrize(("family", "attention", "train"), CASES, ids=lambda v: str(v) if not isinstance(v, bool) else ("train" if v else "eval"))
def test_small_networks_match_torch(family, attention, train):
    """Eval logits, and in train mode logits, running statistics and every gradient, against a
    float64 copy of the torch model, within the network-parity limit; round trips bit-exact."""
    model = _randomized(family, attention)
    twin = from_timm(model)
    errors, crossed = compare(model, twin, _image(), train=train)
    assert set(errors) == ({"eval", "train", "stats", "grad"} if train else {"eval"})
    for check, tensors in errors.items():
        summary = summarize(tensors)
        assert summary.ok, (f"{check}: typical {summary.typical:.2f} (limit {TYPICAL_LIMIT}), worst {summary.ratio[0]:.2f} at "
                            f"{summary.ratio[1]} (limit {WORST_LIMIT}), crossed {crossed}")
    if train:
        names = {k.removeprefix("grad ") for k in errors["grad"]} - {"x"}
        assert names == {k for k, _ in model.named_parameters()}  # every parameter's gradient was compared
    assert round_trips(model, twin) == {"timm -> nnx -> timm": True, "nnx -> timm -> nnx": True}


@pytest.mark.parametrize("family", ["mobilenetv3", "resnet_d", "torchvision_bottleneck"])
def test_relu_kinks_pair_between_torch_and_the_twin(family):
    """The train-mode check makes float64 take the side of each ReLU kink that float32 took: every
    ReLU call of the torch model (torchvision's one ``relu`` per block is called 3 times: ``relu``,
    ``relu#1``, ``relu#2``) is named from a twin output, with the same signs."""
    model = _randomized(family, "se" if family != "torchvision_bottleneck" else "PRCMNoDropout").train()
    twin = from_timm(model)
    seen = {}
    with _relu_kinks(model, None, seen), torch.no_grad():
        model(torch.from_numpy(np.moveaxis(_image(), -1, 1).copy()))
    captured = nnx.jit(lambda m, x: nnx.capture(m, nnx.Intermediate, method_outputs=nnx.Intermediate)(x)[1])(twin, _image())
    namer = _relu_namer(model)
    jax_sides = {namer(path, twin): np.moveaxis(np.asarray(v.get_value()[0]) > 0, -1, 1)
                 for path, v in nnx.to_flat_state(captured)}  # fmt: skip
    assert set(seen) <= set(jax_sides), sorted(set(seen) - set(jax_sides))
    for name, side in seen.items():
        assert side.shape == jax_sides[name].shape and (side.numpy() != jax_sides[name]).mean() < 1e-3, name


# -- the checks catch a twin that differs in anything but rounding -------------------------------


def _each(twin, cls, **attributes):
    for _, m in nnx.iter_modules(twin):
        if isinstance(m, cls):
            for name, value in attributes.items():
                setattr(m, name, value)


def _sigmoid_gate(twin):
    _each(twin, SqueezeExcite, gate="sigmoid")  # MobileNetV3's SE is gated by a hard sigmoid


def _se_act_of_block(twin):
    _each(twin, SqueezeExcite, act="hard_swish")  # MobileNetV3's SE has ReLU whatever the block's act


def _same_padding_depthwise(twin):
    twin.blocks[1][0].conv_dw.padding = "SAME"  # the stride-2 3x3 depthwise pads (0, 1) where torch pads (1, 1)


def _no_act_in_norm(twin):
    _each(twin, BatchNormAct, act=None)


def _head_without_act(twin):
    twin.act = "relu"  # the head's hard-swish


def _avg_pool_counting_padding(twin):
    def pool(x):
        pad = ((0, x.shape[1] % 2), (0, x.shape[2] % 2))
        return nnx.avg_pool(x, (2, 2), strides=(2, 2), padding=pad, count_include_pad=True)

    for stage in (twin.layer2, twin.layer3, twin.layer4):
        stage[0].downsample.layers[0] = pool


def _no_relu_in_stem(twin):
    twin.conv1.layers[5] = models.resnet._identity  # the deep stem's second ReLU left out


@pytest.mark.parametrize(("family", "breakage", "check"), [
    ("mobilenetv3", _sigmoid_gate, "eval"), ("mobilenetv3", _se_act_of_block, "eval"),
    ("mobilenetv3", _same_padding_depthwise, "eval"), ("mobilenetv3", _no_act_in_norm, "eval"),
    ("mobilenetv3", _head_without_act, "eval"), ("resnet_d", _avg_pool_counting_padding, "eval"),
    ("resnet_d", _no_relu_in_stem, "eval"),
])  # fmt: skip
def test_a_broken_twin_fails_the_checks(family, breakage, check):
    model = _randomized(family, "se")
    twin = from_timm(model)
    breakage(twin)
    errors, _ = compare(model, twin, _image(), train=check != "eval")
    summary = summarize(errors[check])
    assert summary.ratio[0] > 100 * WORST_LIMIT, summary  # not a near miss: orders of magnitude


# -- from_timm against timm's and torchvision's own models -----------------------------------------


def _meta(build, **kwargs):
    with torch.device("meta"):
        return build(**kwargs)


def _zeros(model):
    return {k: torch.zeros(v.shape, dtype=v.dtype) for k, v in model.state_dict().items()}


def _shapes(model):
    return jax.tree.map(lambda v: (v.shape, v.dtype), nnx.to_pure_dict(nnx.state(model, (nnx.Param, nnx.BatchStat))))


def _assign_se(model, attention):
    """PRCM blocks assigned by hand into the se slots (MobileNetV3's entry points fix se_layer)."""
    return _with_se_slots(model, attention) if attention != "se" else model


FACTORY_BLOCKS = {
    "efficientnet_b0": lambda rate: models.efficientnet_block_args(1.0, 1.0, rate),
    "efficientnet_b1": lambda rate: models.efficientnet_block_args(1.0, 1.1, rate),
    "efficientnet_b2": lambda rate: models.efficientnet_block_args(1.1, 1.2, rate),
    "efficientnet_b3": lambda rate: models.efficientnet_block_args(1.2, 1.4, rate),
    "mobilenetv3_small_100": lambda rate: models.mobilenetv3_block_args("small", drop_path_rate=rate),
    "mobilenetv3_large_100": lambda rate: models.mobilenetv3_block_args("large", drop_path_rate=rate),
}


@pytest.mark.parametrize("name", list(FACTORY_BLOCKS))
def test_from_timm_reads_the_blocks_the_factories_resolve(name):
    """Every block of timm's model read back (type, widths, kernel, stride, act, skip, SE width,
    drop-path rate) is the one the factory resolves from timm's architecture strings."""
    config = twin_config(_meta(timm.create_model, model_name=name, drop_path_rate=0.2))
    assert config["block_args"] == FACTORY_BLOCKS[name](0.2)


@pytest.mark.parametrize(("name", "attention"), [("efficientnet_b0", "se"), ("mobilenetv3_small_100", "AffinePRCM"),
                                                 ("mobilenetv3_large_100", "se")])  # fmt: skip
def test_from_timm_builds_the_factories_twin(name, attention):
    """from_timm fills exactly what the factory builds: every key, shape and dtype, the same modules and options."""
    skeleton = _assign_se(_meta(timm.create_model, model_name=name), attention)
    twin = from_timm(skeleton, weights=_zeros(skeleton))  # strict: every key, shape and dtype
    se_layer = "se" if attention == "se" else getattr(prcm_jax, attention)
    built = nnx.eval_shape(lambda: getattr(models, name)(se_layer=se_layer, rngs=nnx.Rngs(0)))
    assert _shapes(twin) == _shapes(built)
    assert nnx.graphdef(twin) == nnx.graphdef(built)


@pytest.mark.parametrize(("name", "layers", "block"), [("resnet18d", (2, 2, 2, 2), "basic"), ("resnet34d", (3, 4, 6, 3), "basic"),
                                                       ("resnet50d", (3, 4, 6, 3), "bottleneck"),
                                                       ("resnet101d", (3, 4, 23, 3), "bottleneck"),
                                                       ("resnet152d", (3, 8, 36, 3), "bottleneck")])  # fmt: skip
def test_from_timm_reads_resnet_d(name, layers, block):
    config = twin_config(_meta(timm.create_model, model_name=name, block_args=dict(attn_layer=prcm_torch.AffinePRCM)))
    assert (config["block"], config["layers"], config["stem_type"], config["stem_width"], config["avg_down"]) == (
        block, layers, "deep", 32, True)
    assert config["attn_layer"].func is prcm_jax.AffinePRCM


@pytest.mark.parametrize("name", ["resnet18d", "resnet50d"])
def test_from_timm_builds_resnet_d(name):
    skeleton = _meta(timm.create_model, model_name=name, block_args=dict(attn_layer=prcm_torch.AffinePRCM))
    twin = from_timm(skeleton, weights=_zeros(skeleton))
    built = nnx.eval_shape(lambda: getattr(models, name)(attn_layer=prcm_jax.AffinePRCM, rngs=nnx.Rngs(0)))
    assert _shapes(twin) == _shapes(built) and nnx.graphdef(twin) == nnx.graphdef(built)


def _torchvision(name, attention):
    model = _meta(getattr(torchvision.models, name))
    if attention:
        for block in (b for stage in (model.layer1, model.layer2, model.layer3, model.layer4) for b in stage):
            last = "bn3" if hasattr(block, "bn3") else "bn2"
            norm = getattr(block, last)
            setattr(block, last, nn.Sequential(norm, prcm_torch.PRCM(norm.num_features, device="meta")))
    return model


@pytest.mark.parametrize(("name", "layers"), [("resnet18", (2, 2, 2, 2)), ("resnet34", (3, 4, 6, 3)), ("resnet50", (3, 4, 6, 3)),
                                              ("resnet101", (3, 4, 23, 3)), ("resnet152", (3, 8, 36, 3))])  # fmt: skip
@pytest.mark.parametrize("attention", [None, "PRCM"])
def test_from_timm_reads_torchvision_resnets(name, layers, attention):
    config = twin_config(_torchvision(name, attention))
    assert config["layers"] == layers and config.get("attn_slot", "se") == ("norm" if attention else "se")
    assert (config["attn_layer"] is None) == (attention is None)


@pytest.mark.parametrize(("name", "attention"), [("resnet18", "PRCM"), ("resnet50", None), ("resnet50", "PRCM")])
def test_from_timm_ports_torchvision_resnets(name, attention):
    model = _torchvision(name, attention)
    twin = from_timm(model, weights=_zeros(model))  # strict: every key, shape and dtype
    slot = dict(attn_slot="norm") if attention else {}
    built = nnx.eval_shape(lambda: getattr(models, name)(attn_layer=attention and prcm_jax.PRCM, rngs=nnx.Rngs(0), **slot))
    assert _shapes(twin) == _shapes(built)
    assert set(parity.torch_state_dict(twin, model)) == set(model.state_dict())  # and back, by the same names


def test_from_timm_reads_dropout_drop_path_and_the_block_config():
    model = timm.create_model("mobilenetv3_small_100", num_classes=10, drop_rate=0.3, drop_path_rate=0.2)
    model = _with_se_slots(model, "PRCM")
    for module in model.modules():
        if isinstance(module, prcm_torch.PRCM):
            module.coeff_dropout.p = 0.25  # how torch users change dropout: the layer's p
    twin = from_timm(model)
    blocks = [b for stage in twin.blocks for b in stage]
    rates = [b.drop_path.rate for b in blocks if b.drop_path is not None]
    want = [b.drop_path.drop_prob for stage in model.blocks for b in stage if b.has_skip]  # timm applies no other
    assert rates == pytest.approx(want) and twin.head_drop.rate == 0.3
    assert {(type(b.se), b.se.dropout_rate) for b in blocks if b.se is not None} == {(prcm_jax.PRCM, 0.25)}


@pytest.mark.parametrize(("build", "expected"), [
    (lambda: timm.create_model("tf_efficientnet_b0"), r"Conv2dSame \(a tf_ variant's 'same' padding\)"),
    (lambda: timm.create_model("tf_efficientnet_b0"), r"eps, momentum.*= \(0.001"),
    (lambda: timm.create_model("efficientnet_b0", act_layer="gelu"), "activation timm.layers.activations.GELU"),
    (lambda: timm.create_model("mobilenetv3_large_100", bn_eps=1e-3), r"= \(0.001, 0.1, True, True\)"),
    (lambda: timm.create_model("mobilenetv3_large_100", head_norm=True), "head_norm=True"),
    (lambda: timm.create_model("efficientnet_b0", global_pool="max"), "global_pool"),
    (lambda: timm.create_model("efficientnet_el"), "EdgeResidual"),
    (lambda: timm.create_model("efficientnet_cc_b0_4e"), "CondConvResidual"),
    (lambda: timm.create_model("mixnet_s"), "MixedConv2d"),
    (lambda: timm.create_model("mobilenetv4_conv_small"), "UniversalInvertedResidual"),
    (lambda: timm.create_model("efficientnet_b0", output_stride=16), r"dilation \(2, 2\)"),
    (lambda: timm.create_model("efficientnet_b0", aa_layer="avg"), "anti-aliasing"),
    (lambda: timm.create_model("resnet50d", block_args=dict(attn_layer="eca")), "EcaModule has no NNX twin"),
    (lambda: torchvision.models.resnext50_32x4d(), "cardinality=32"),
    (lambda: torchvision.models.wide_resnet50_2(), "convolution widths"),
    (lambda: torchvision.models.resnet50(replace_stride_with_dilation=[False, True, True]), "dilated"),
])  # fmt: skip
def test_from_timm_names_what_the_twins_do_not_cover(build, expected):
    with torch.device("meta"):
        model = build()
    with pytest.raises(parity.ConversionError, match=expected) as info:
        twin_config(model)
    assert "nothing was converted" in str(info.value)


def test_from_timm_refuses_attention_torchvision_never_calls():
    model = _meta(torchvision.models.resnet18)
    model.layer1[0].se = prcm_torch.PRCM(64, device="meta")  # torchvision's forward has no se: it would be dead weight
    with pytest.raises(parity.ConversionError, match=r"layer1.0: modules \['se'\], which torchvision's BasicBlock.forward "
                                                     r"never calls; .*block.bn2 = nn.Sequential\(block.bn2, attention\)"):  # fmt: skip
        from_timm(model, weights=_zeros(model))


def test_from_timm_refuses_mixed_attention():
    model = _with_se_slots(_meta(timm.create_model, model_name="mobilenetv3_small_100"), "PRCM")
    model.blocks[3][0].se = prcm_torch.AffinePRCM(model.blocks[3][0].se.basis.shape[1], device="meta")
    with pytest.raises(parity.ConversionError, match=r"blocks \['blocks.3.0'\] differ from blocks.0.0's"):
        twin_config(model)


def test_from_timm_bad_arguments():
    with pytest.raises(TypeError, match=r"expected one of timm.models.resnet.ResNet, torchvision.models.resnet.ResNet, "
                                        r"timm.models.efficientnet.EfficientNet, .*got torch.nn.modules.linear.Linear"):  # fmt: skip
        from_timm(torch.nn.Linear(2, 3))


# -- Flax modes: nnx.view, train/eval, dropout and drop-path streams --------------------------------


def _flags(model):
    return {(type(m).__name__, k, getattr(m, k)) for _, m in nnx.iter_modules(model)
            for k in ("deterministic", "use_running_average") if hasattr(m, k)}  # fmt: skip


@pytest.mark.parametrize("factory", [models.efficientnet_b0, models.mobilenetv3_small_100])
def test_modes_follow_nnx_view_and_train_eval(factory):
    model = nnx.eval_shape(lambda: factory(se_layer=prcm_jax.PRCM, drop_rate=0.2, drop_path_rate=0.1, rngs=nnx.Rngs(0)))
    kinds = {kind for kind, _, _ in _flags(model)}
    assert {"Dropout", "PRCM", "BatchNormAct"} <= kinds  # head dropout and drop-path are nnx.Dropout
    view = nnx.view(model, deterministic=True, use_running_average=True)
    assert all(v for _, _, v in _flags(view)) and not any(v for _, _, v in _flags(model))
    with pytest.raises(ValueError, match="Unused keys"):
        nnx.view(model, determinstic=True)
    model.eval()
    assert all(v for _, _, v in _flags(model))
    model.train()
    assert not any(v for _, _, v in _flags(model))


def test_drop_path_and_head_dropout_follow_the_mode():
    """In train mode each sample's residual branch is dropped or scaled by 1 / keep (timm's DropPath)
    and the classifier's input dropped out, from the model's own streams; eval mode is deterministic."""
    builder = models.efficientnet_builder
    blocks = builder.resolve_block_args(builder.decode_arch_def([["ds_r1_k3_s1_e1_c16"], ["ir_r3_k3_s2_e2_c24"]]),
                                        stem_size=16, act="silu", drop_path_rate=0.5)  # fmt: skip
    model = EfficientNet(blocks, num_classes=4, num_features=32, stem_size=16, drop_rate=0.5, se_layer=None, rngs=nnx.Rngs(0))
    run = nnx.jit(lambda m, x: m(x))
    x = jnp.asarray(np.random.default_rng(0).standard_normal((8, 16, 16, 3)), jnp.float32)
    model.eval()
    np.testing.assert_array_equal(run(model, x), run(model, x))
    block = model.blocks[1][2]  # a block with a skip: drop_path = 0.5 * 3 / 4
    assert block.has_skip and block.drop_path.rate == 0.375
    h = jnp.asarray(np.random.default_rng(1).standard_normal((64, 4, 4, 24)), jnp.float32)
    out = np.asarray(block.drop_path(h, deterministic=False)).reshape(64, -1)
    kept = np.all(out != 0, axis=1)
    assert 0 < kept.sum() < 64 and np.all(out[~kept] == 0)  # per sample: dropped, or ...
    np.testing.assert_allclose(out[kept], np.asarray(h).reshape(64, -1)[kept] / 0.625, rtol=1e-6)  # ... scaled by 1 / keep
    model.train()
    a, b = run(model, x), run(model, x)
    assert not np.array_equal(np.asarray(a), np.asarray(b))  # fresh masks from the model's streams


def test_each_dropout_draws_from_its_own_stream():
    twin = from_timm(timm.create_model("mobilenetv3_small_100", drop_path_rate=0.1, drop_rate=0.2), seed=3)
    keys = [np.asarray(jax.random.key_data(k)) for k in jax.tree.leaves(nnx.state(twin, nnx.RngKey))]
    assert len(keys) == 1 + sum(b.drop_path is not None for s in twin.blocks for b in s) and len({k.tobytes() for k in keys}) == len(keys)


# -- bad input -----------------------------------------------------------------------------------


def test_bad_arguments_and_input_are_named_before_any_work():
    model = nnx.eval_shape(lambda: models.mobilenetv3_small_100(num_classes=2, rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match=r"MobileNetV3: expected an input \(B, H, W, 3\).*got shape \(2, 3, 32, 32\)"):
        model(jnp.ones((2, 3, 32, 32)))
    with pytest.raises(TypeError, match="EfficientNet: expected a floating-point input, got dtype int32"):
        nnx.eval_shape(lambda: models.efficientnet_b0(rngs=nnx.Rngs(0)))(jnp.ones((1, 32, 32, 3), jnp.int32))
    with pytest.raises(TypeError, match="se_layer must be None, 'se' or a module class"):
        models.efficientnet_b0(se_layer="eca", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="act must be one of relu, relu6, silu"):
        MobileNetV3(models.mobilenetv3_block_args("small"), act="gelu", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"drop_rate must be in \[0, 1\)"):
        models.mobilenetv3_large_100(drop_rate=1.0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="stem_type must be one of"):
        models.ResNet("basic", (1, 1, 1, 1), stem_type="tiered", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="attn_slot must be one of"):
        models.resnet18(attn_slot="bn", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="option 'x3' in 'ir_r1_k3_s1_x3_c8' is not one the twins build"):
        models.efficientnet_builder.decode_arch_def([["ir_r1_k3_s1_x3_c8"]])


# -- the command line ----------------------------------------------------------------------------


def test_parity_cli_quick_runs_the_smallest_of_each_family():
    from parity import __main__ as cli
    from parity.proof.networks import NETWORKS, QUICK_NETWORKS, network_cases

    assert cli.parse_args(["--quick"]).networks == QUICK_NETWORKS
    assert QUICK_NETWORKS == ("resnet18", "mobilenetv3_small_100", "efficientnet_b0")  # one of each family, its smallest
    assert cli.parse_args(["--parts", "networks"]).networks == NETWORKS
    assert cli.parse_args(["--quick", "--networks", "resnet18d"]).networks == ("resnet18d",)
    cases = {(c.network, c.attention) for c in network_cases(("torchvision_resnet18",), ATTENTIONS)}
    assert cases == {("torchvision_resnet18", a) for a in ATTENTIONS if a != "se"}  # timm's SEModule is timm's
