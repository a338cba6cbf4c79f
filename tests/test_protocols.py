"""The frameworks' own protocols: nnx.view / eval / train, interchangeable constructors,
inference-only models, class relations, validated helpers; torch factory keywords (timm,
meta device), torch.export with a dynamic batch, torch.fx and TorchScript."""

import itertools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from torch.export import Dim, export

import prcm_jax
import prcm_jax.functional as JF
import prcm_torch
import prcm_torch.functional as TF
from prcm import CATALOG, MODULES

DROPOUT = [name for name, entry in CATALOG.items() if entry.dropout]
X = jnp.asarray(np.random.default_rng(0).standard_normal((4, 5, 5, 16)), jnp.float32)


class _Net(nnx.Module):
    """nnx.Dropout -> a block -> another block, the issue's network."""

    def __init__(self, first: str, second: str, rngs: nnx.Rngs, dropout: bool = True) -> None:
        self.drop = nnx.Dropout(0.5, rngs=rngs) if dropout else None
        self.first = CATALOG[first].build_nnx(16, 4, rngs=rngs)
        self.second = CATALOG[second].build_nnx(16, 4, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.second(self.first(x if self.drop is None else self.drop(x)))


# -- Flax NNX: modes --------------------------------------------------------------------------


@pytest.mark.parametrize("first,second", [("PRCM", "AffinePRCM"), ("AffinePRCM", "SEModule"), ("PRCM", "ShiftOnlyPRCM")])
def test_nnx_view_switches_every_block_both_ways(first, second):
    net = _Net(first, second, nnx.Rngs(0))
    frozen = nnx.view(net, deterministic=True)
    assert frozen.drop.deterministic and frozen.first.deterministic and frozen.second.deterministic
    assert not net.first.deterministic  # a view, not a change of the original
    np.testing.assert_array_equal(frozen(X), frozen(X))
    live = nnx.view(frozen, deterministic=False)
    assert not (live.first.deterministic or live.second.deterministic)
    assert not np.array_equal(live(X), live(X))  # each call draws new masks


@pytest.mark.parametrize("name", MODULES)
def test_nnx_view_needs_no_other_layer_and_gives_the_eval_output(name):
    net = _Net(name, name, nnx.Rngs(0), dropout=False)  # no nnx.Dropout to consume the key
    frozen = nnx.view(net, deterministic=True)
    expected = net.second(net.first(X, deterministic=True), deterministic=True)
    np.testing.assert_array_equal(frozen(X), expected)
    net.eval()
    assert net.first.deterministic and net.second.deterministic
    np.testing.assert_array_equal(net(X), expected)
    net.train()
    assert not (net.first.deterministic or net.second.deterministic)


def test_view_info_documents_the_mode():
    assert "deterministic: bool | None = None" in nnx.view_info(CATALOG["AffinePRCM"].build_nnx(16))


@pytest.mark.parametrize("name", DROPOUT)
def test_train_mode_under_view_uses_the_stream(name):
    live = nnx.view(CATALOG[name].build_nnx(16, 4), deterministic=False)
    assert not np.array_equal(live(X), live(X, deterministic=True))


# -- Flax: constructors, classes, inference-only models ---------------------------------------


@pytest.mark.parametrize("name", MODULES)
@pytest.mark.parametrize("deterministic", [True, False])
def test_every_constructor_takes_deterministic_and_rngs(name, deterministic):
    entry = CATALOG[name]
    model = entry.nnx(16, deterministic=deterministic, keep_rngs=True, rngs=nnx.Rngs(0))
    assert model.deterministic is deterministic
    layer = entry.linen(deterministic=deterministic)
    assert layer.deterministic is deterministic
    variables = layer.init(jax.random.key(0), X, rng=jax.random.key(1))
    y = layer.apply(variables, X, rng=jax.random.key(1))
    assert y.shape == X.shape


@pytest.mark.parametrize("a,b", list(itertools.product(MODULES, repeat=2)))
def test_class_relations_are_the_same_in_all_three_apis(a, b):
    relation = issubclass(CATALOG[a].torch, CATALOG[b].torch)
    assert issubclass(CATALOG[a].nnx, CATALOG[b].nnx) == relation
    assert issubclass(CATALOG[a].linen, CATALOG[b].linen) == relation


@pytest.mark.parametrize("name", ["PRCMNoDropout", "AffinePRCMNoDropout", "ShiftOnlyPRCM"])
def test_variants_without_dropout_refuse_a_dropout_rate_by_their_own_name(name):
    entry = CATALOG[name]
    for build in (lambda: entry.torch(16, dropout_rate=0.3), lambda: entry.nnx(16, dropout_rate=0.3, rngs=nnx.Rngs(0)),
                  lambda: entry.linen(dropout_rate=0.3)):  # fmt: skip
        with pytest.raises(TypeError, match=f"{name}.__init__\\(\\) got an unexpected keyword argument 'dropout_rate'"):
            build()
    assert entry.linen().dropout_rate == 0.0


def test_a_train_call_with_rngs_lacking_a_dropout_stream_says_so():
    model = CATALOG["PRCM"].build_nnx(16)
    with pytest.raises(TypeError, match="with neither a 'dropout' nor a 'default' stream"):
        model(X, rngs=nnx.Rngs(params=1))


def test_jax_export_with_symbolic_batch_and_spatial_sizes():
    from jax import export

    for name, entry in CATALOG.items():
        model = entry.build_nnx(16, 4)
        graphdef, state = nnx.split(model)
        forward = jax.jit(lambda state, x: nnx.merge(graphdef, state)(x, deterministic=True))
        program = export.export(forward)(state, jax.ShapeDtypeStruct(export.symbolic_shape("b, h, 4, 16"), jnp.float32))
        x = jnp.ones((3, 5, 4, 16))
        np.testing.assert_allclose(program.call(state, x), model(x, deterministic=True), rtol=1e-6, err_msg=name)


@pytest.mark.parametrize("name", MODULES)
def test_inference_only_model_needs_no_dropout_stream(name):
    model = CATALOG[name].nnx(16, deterministic=True, rngs=nnx.Rngs(params=0))
    assert model(X).shape == X.shape
    assert all(not isinstance(v, nnx.RngState) for _, v in nnx.to_flat_state(nnx.state(model)))


@pytest.mark.parametrize("name", DROPOUT)
@pytest.mark.parametrize("how", ["no dropout stream", "keep_rngs=False"])
def test_train_call_without_a_stream_says_what_to_do(name, how):
    kwargs = {"rngs": nnx.Rngs(params=0)} if how == "no dropout stream" else {"keep_rngs": False, "rngs": nnx.Rngs(0)}
    model = CATALOG[name].nnx(16, **kwargs)
    with pytest.raises(TypeError, match="keeps no dropout stream.*pass rngs="):
        model(X)
    key = jax.random.key(3)
    np.testing.assert_array_equal(model(X, rngs=key), model(X, rngs=key))


@pytest.mark.parametrize("name", DROPOUT)
def test_an_abstract_stream_is_named(name):
    model = nnx.eval_shape(lambda: CATALOG[name].nnx(16, rngs=nnx.Rngs(0)))
    nnx.update(model, jax.tree.map(jnp.zeros_like, nnx.state(model, nnx.Param)))
    with pytest.raises(TypeError, match="dropout stream is abstract"):
        model(X)
    assert model(X, rngs=jax.random.key(0)).shape == X.shape


@pytest.mark.parametrize("name", MODULES)
def test_parameter_holders_carry_no_configuration(name):
    """dtype and precision live on the block only: no submodule has a setting that could be ignored."""
    model = CATALOG[name].build_nnx(16)
    for path, sub in nnx.iter_modules(model):
        if path:
            assert not {"dtype", "param_dtype", "precision"} & set(vars(sub)), path
            assert not callable(sub)
    model.precision = jax.lax.Precision.HIGHEST
    seen = []
    original = jnp.matmul

    def spy(a, b, precision=None, **kw):
        seen.append(precision)
        return original(a, b, precision=precision, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(jnp, "matmul", spy)
        model(X, deterministic=True)
    assert seen and all(p == jax.lax.Precision.HIGHEST for p in seen)


# -- the functional helpers, identically in both frameworks --------------------------------------


@pytest.mark.parametrize("shape", [(2, 3), (4,), (2, 0, 0)])
def test_spatial_mean_refuses_what_the_modules_refuse(shape):
    with pytest.raises(ValueError, match="spatial_mean: ") as jax_error:
        JF.spatial_mean(jnp.ones(shape))
    with pytest.raises(ValueError, match="spatial_mean: ") as torch_error:
        TF.spatial_mean(torch.ones(shape))
    layouts = ("(B, *spatial, C)", "(B, C, *spatial)")
    assert str(jax_error.value).replace(*layouts) == str(torch_error.value)


@pytest.mark.parametrize("scale,shift", [((2, 4), None), (None, (4,)), ((1, 3), (2, 3))])
def test_recalibrate_refuses_factors_that_would_broadcast(scale, shift):
    x_first, x_last = torch.ones(2, 3, 5), jnp.ones((2, 5, 3))
    t = {k: None if s is None else torch.ones(s) for k, s in (("scale", scale), ("shift", shift))}
    j = {k: None if s is None else jnp.ones(s) for k, s in (("scale", scale), ("shift", shift))}
    with pytest.raises(ValueError, match=r"expected \(B, C\) = \(2, 3\) factors"):
        TF.recalibrate(x_first, **t)
    with pytest.raises(ValueError, match=r"expected \(B, C\) = \(2, 3\) factors"):
        JF.recalibrate(x_last, **j)


@pytest.mark.parametrize("rate", [1.5, 1.0, -0.1, True, "0.5"])
def test_keep_mask_and_dropout_refuse_bad_rates(rate):
    error = TypeError if isinstance(rate, (bool, str)) else ValueError
    with pytest.raises(error, match="keep_mask: dropout rate must be"):
        JF.keep_mask(jax.random.key(0), rate, (2, 4))
    with pytest.raises(error, match="dropout: dropout rate must be"):
        JF.dropout(jnp.ones((2, 4)), rate, jax.random.key(0))


# -- PyTorch: factory keywords, timm, export, FX, TorchScript ------------------------------------


@pytest.mark.parametrize("name", MODULES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_factory_keywords(name, dtype):
    module = CATALOG[name].build_torch(16, 4, dtype=dtype)
    assert {p.dtype for p in module.parameters()} == {dtype}
    skeleton = CATALOG[name].build_torch(16, 4, device="meta")
    assert {p.device.type for p in skeleton.parameters()} == {"meta"}
    with torch.device("meta"):
        assert {p.device.type for p in CATALOG[name].build_torch(16, 4).parameters()} == {"meta"}


@pytest.mark.parametrize("name", MODULES)
def test_plugs_into_timm_as_attn_layer(name):
    timm = pytest.importorskip("timm")
    model = timm.create_model("resnet18", num_classes=3, block_args=dict(attn_layer=CATALOG[name].torch)).eval()
    block = model.layer2[0].se
    assert type(block) is CATALOG[name].torch and block.channels == 128
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 3)
    with torch.device("meta"):
        skeleton = timm.create_model("resnet18", block_args=dict(attn_layer=CATALOG[name].torch))
    assert all(p.is_meta for p in skeleton.layer1[0].se.parameters())


VARIANTS = [(name, options) for name in MODULES for options in CATALOG[name].variants]
VARIANT_IDS = [name + "".join(f"[{v}]" for v in options.values()) for name, options in VARIANTS]


@pytest.mark.parametrize("name,options", VARIANTS, ids=VARIANT_IDS)
def test_export_with_a_dynamic_batch_runs_at_another_batch(name, options):
    torch.manual_seed(0)
    module = CATALOG[name].build_torch(16, 4, **options).eval()
    program = export(module, (torch.randn(2, 16, 6, 6),), dynamic_shapes=({0: Dim("batch")},))
    for batch in (1, 5):
        x = torch.randn(batch, 16, 6, 6)
        torch.testing.assert_close(program.module()(x), module(x), rtol=0, atol=0)


@pytest.mark.parametrize("name,options", VARIANTS, ids=VARIANT_IDS)
def test_fx_symbolic_trace_and_torchscript(name, options):
    torch.manual_seed(0)
    module = CATALOG[name].build_torch(16, 4, **options).eval()
    x = torch.randn(3, 16, 5, 7)
    traced = torch.fx.symbolic_trace(module)
    torch.testing.assert_close(traced(x), module(x), rtol=0, atol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(module)
    torch.testing.assert_close(scripted(x), module(x))
    torch.testing.assert_close(scripted(x[..., 0]), module(x[..., 0]))  # any rank, scripted too


@pytest.mark.parametrize("name", MODULES)
def test_eager_calls_keep_the_clear_errors(name):
    module = CATALOG[name].build_torch(16, 4)
    with pytest.raises(ValueError, match=f"{name}: expected 16 channels on axis 1"):
        module(torch.randn(2, 8, 4, 4))
    with pytest.raises(ValueError, match=f"{name}: expected an input"):
        module(torch.randn(2, 16))


def test_compiled_module_skips_the_python_checks():
    """Under torch.compile the checks would guard on every size; they run in eager mode only."""
    module = CATALOG["AffinePRCM"].build_torch(16, 4).eval()
    calls = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(prcm_torch.prcm, "validate_input", lambda *a: calls.append(a))
        compiled = torch.compile(module, fullgraph=True, dynamic=True)
        compiled(torch.randn(2, 16, 4, 4))
        assert not calls
        module(torch.randn(2, 16, 4, 4))
        assert len(calls) == 1
