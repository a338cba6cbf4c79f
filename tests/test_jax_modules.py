"""prcm_jax: NNX and linen twins, modes, dtypes, initializers, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import prcm_jax
import prcm_jax.linen
from parity import torch_state_dict, torch_to_linen, torch_to_nnx
from prcm.catalog import CATALOG
from prcm import CATALOG as _C, MODULES
DROPOUT_MODULES = [n for n, e in _C.items() if e.dropout]
from prcm_jax import functional as F

EPS32 = float(jnp.finfo(jnp.float32).eps)


def _twins(name, channels=16, num_basis=4, **options):
    """A torch module and its NNX and linen twins holding the same weights (and options)."""
    torch.manual_seed(0)
    twin = CATALOG[name]
    source = twin.build_torch(channels, num_basis, **options)
    model = torch_to_nnx(source, twin.build_nnx(channels, num_basis, **options))
    return source, model, twin.build_linen(channels, num_basis, **options), torch_to_linen(source)


#: Every module with each of its option variants (gate, SE's activation).
VARIANTS = [(name, options) for name in MODULES for options in CATALOG[name].variants]
VARIANT_IDS = [name + "".join(f"[{v}]" for v in options.values()) for name, options in VARIANTS]


@pytest.mark.parametrize("name", MODULES)
def test_linen_param_tree_equals_nnx_state(name):
    twin = CATALOG[name]
    nnx_tree = jax.tree.map(jnp.shape, nnx.to_pure_dict(nnx.state(twin.build_nnx(24, 4), nnx.Param)))
    variables = twin.build_linen(24, 4).init(jax.random.key(0), jnp.ones((1, 3, 3, 24)), deterministic=True)
    assert jax.tree.map(jnp.shape, variables) == {"params": nnx_tree}


@pytest.mark.parametrize("name,options", VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("shape", [(2, 7, 5, 16), (1, 1, 1, 16), (3, 11, 16)])
def test_nnx_and_linen_are_bit_identical(name, options, train, shape):
    _, model, linen_model, variables = _twins(name, **options)
    x = 4 * jax.random.normal(jax.random.key(1), shape)  # logits beyond hard_sigmoid's kinks too
    key = jax.random.key(2) if train else None
    a = model(x, deterministic=not train, rngs=key)
    b = linen_model.apply(variables, x, deterministic=not train, rng=key)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("name", MODULES)
@pytest.mark.parametrize("shape", [(2, 16, 16, 64), (3, 7, 5, 64), (1, 40, 64)])
def test_jit_and_eager_agree(name, shape):
    model = CATALOG[name].build_nnx(64)
    x = jax.random.normal(jax.random.key(1), shape)
    eager = model(x, deterministic=True)
    jitted = nnx.jit(lambda m, x: m(x, deterministic=True))(model, x)
    split = jax.jit(lambda s, x: nnx.merge(*s)(x, deterministic=True))(nnx.split(model), x)
    for y in (jitted, split):
        assert float(jnp.max(jnp.abs(y - eager))) <= 8 * EPS32 * float(jnp.max(jnp.abs(eager)))


@pytest.mark.parametrize("name", DROPOUT_MODULES)
def test_eval_and_train_switch_dropout(name):
    model = CATALOG[name].build_nnx(16, 4)
    x = jax.random.normal(jax.random.key(1), (4, 5, 5, 16))
    model.eval()
    np.testing.assert_array_equal(model(x), model(x, deterministic=True))
    model.train()
    first, second = model(x), model(x)  # the module's stream advances
    assert not np.array_equal(first, second)
    assert not np.array_equal(first, model(x, deterministic=True))


@pytest.mark.parametrize("name", DROPOUT_MODULES)
def test_key_gives_keep_mask(name):
    _, model, _, _ = _twins(name)
    x = jax.random.normal(jax.random.key(1), (4, 5, 5, 16))
    key = jax.random.key(7)
    scale = getattr(model, model.scale_name).kernel[...] if model.scale_name else None  # read from the module, not its name
    shift = model.shift_proj.kernel[...] if model.has_shift else None
    expected = F.basis_recalibration(x, model.basis[...], scale, shift, dropout_rate=0.5, dropout_key=key)
    np.testing.assert_array_equal(model(x, deterministic=False, rngs=key), expected)
    keep = np.asarray(F.keep_mask(key, 0.5, (4, 4)))
    assert 0 < keep.sum() < keep.size


def test_dropout_statistics_and_scaling():
    x = jnp.ones((2000, 8))
    y = np.asarray(F.dropout(x, 0.3, jax.random.key(0)))
    np.testing.assert_array_equal(np.unique(y), np.array([0.0, 1 / 0.7], np.float32))
    assert abs((y == 0).mean() - 0.3) < 0.01
    assert np.isnan(F.dropout(jnp.full((64,), jnp.nan), 0.5, jax.random.key(0))).all()  # NaN * 0 stays NaN


@pytest.mark.parametrize("name", MODULES)
@pytest.mark.parametrize(
    "param_dtype,dtype,x_dtype,out_dtype",
    [
        (jnp.float32, None, jnp.float32, jnp.float32),
        (jnp.float32, None, jnp.bfloat16, jnp.float32),  # promoted, as Flax layers
        (jnp.float32, jnp.bfloat16, jnp.float32, jnp.bfloat16),
        (jnp.bfloat16, None, jnp.bfloat16, jnp.bfloat16),
        (jnp.bfloat16, jnp.float32, jnp.bfloat16, jnp.float32),
        (jnp.float16, None, jnp.float16, jnp.float16),
    ],
)
def test_dtype_and_param_dtype_behave_as_flax_layers(name, param_dtype, dtype, x_dtype, out_dtype):
    twin = CATALOG[name]
    model = twin.build_nnx(16, 4, param_dtype=param_dtype, dtype=dtype)
    x = jnp.ones((2, 3, 3, 16), x_dtype)
    assert all(leaf.dtype == param_dtype for leaf in jax.tree.leaves(nnx.state(model, nnx.Param)))
    assert model(x, deterministic=True).dtype == out_dtype
    linen_model = twin.build_linen(16, 4, param_dtype=param_dtype, dtype=dtype)
    y, variables = linen_model.init_with_output(jax.random.key(0), x, deterministic=True)
    assert y.dtype == out_dtype
    assert all(leaf.dtype == param_dtype for leaf in jax.tree.leaves(variables))


def test_spatial_mean_accumulates_in_float32():
    # 4096 ones summed in bfloat16 stall at 256; accumulated in float32 the mean is exactly 1.
    x = jnp.ones((1, 4096, 1, 2), jnp.bfloat16)
    assert F.spatial_mean(x).dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(F.spatial_mean(x), np.float32), 1.0)
    from prcm_torch.functional import spatial_mean

    assert spatial_mean(torch.ones(1, 2, 4096, 1, dtype=torch.bfloat16)).float().eq(1).all()


@pytest.mark.parametrize("name", MODULES)
def test_precision_reaches_every_dot(name):
    model = CATALOG[name].build_nnx(16, 4, precision=jax.lax.Precision.HIGHEST)
    hlo = jax.jit(lambda s, x: nnx.merge(*s)(x, deterministic=True)).lower(
        nnx.split(model), jnp.ones((1, 3, 3, 16))
    ).as_text()
    dots = [line for line in hlo.splitlines() if "dot_general" in line]
    assert dots and all("HIGHEST" in line for line in dots)


def _init_samples(framework, name, channels, num_basis):
    """Parameters of a freshly initialised module, by torch name and layout, as NumPy."""
    torch.manual_seed(0)
    module = CATALOG[name].build_torch(channels, num_basis)
    if framework == "nnx":
        state = torch_state_dict(CATALOG[name].build_nnx(channels, num_basis), module)
    else:
        state = module.state_dict()
    return {k: v.detach().numpy() for k, v in state.items()}


@pytest.mark.parametrize("framework", ["torch", "nnx"])
@pytest.mark.parametrize("name", ["AffinePRCM", "SEModule"])
def test_initializers_draw_from_torch_distributions(framework, name):
    channels, num_basis = 2048, 16
    params = _init_samples(framework, name, channels, num_basis)
    for key, value in params.items():
        if key == "basis":  # N(0, 1)
            assert abs(value.mean()) < 0.02 and abs(value.std() - 1) < 0.02
            continue
        fan_in = value.shape[1] if value.ndim == 2 else {"fc1.bias": channels, "fc2.bias": channels // 4}[key]
        bound = fan_in**-0.5  # uniform(-bound, bound)
        assert np.abs(value).max() <= bound
        assert abs(value.std() - bound / 3**0.5) < 0.05 * bound / 3**0.5, key


# -- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODULES)
@pytest.mark.parametrize(
    "x,error,match",
    [
        (jnp.ones((2, 16)), ValueError, r"at least one spatial axis.*got shape \(2, 16\)"),
        (jnp.ones((2, 4, 4, 8)), ValueError, r"expected 16 channels on axis 3 of the input \(B, \*spatial, C\), got 8"),
        (jnp.ones((2, 4, 4, 16), jnp.int32), TypeError, "floating-point input, got dtype int32"),
        (jnp.ones((2, 0, 4, 16)), ValueError, "spatial axis must be non-empty"),
    ],
)
def test_bad_input_is_named_nnx_and_linen(name, x, error, match):
    twin = CATALOG[name]
    with pytest.raises(error, match=match):
        twin.build_nnx(16, 4)(x, deterministic=True)
    linen_model = twin.build_linen(16, 4)
    variables = linen_model.init(jax.random.key(0), jnp.ones((1, 2, 2, 16)), deterministic=True)
    with pytest.raises(error, match=match):
        linen_model.apply(variables, x, deterministic=True)


@pytest.mark.parametrize(
    "build,error,match",
    [
        (lambda: prcm_jax.PRCM(0, rngs=nnx.Rngs(0)), ValueError, "channels must be >= 1, got 0"),
        (lambda: prcm_jax.AffinePRCM(16, 0, rngs=nnx.Rngs(0)), ValueError, "num_basis must be >= 1"),
        (lambda: prcm_jax.PRCM(16, 8, 1.0, rngs=nnx.Rngs(0)), ValueError, r"dropout_rate must be in \[0, 1\)"),
        (lambda: prcm_jax.SEModule(3, 4, rngs=nnx.Rngs(0)), ValueError, "channels // reduction must be >= 1"),
        (lambda: prcm_jax.linen.PRCM(num_basis=0), ValueError, "num_basis must be >= 1"),
        (lambda: prcm_jax.linen.AffinePRCM(dropout_rate=1.5), ValueError, r"dropout_rate must be in \[0, 1\)"),
        (lambda: prcm_jax.linen.SEModule(reduction=0), ValueError, "reduction must be >= 1"),
        (lambda: prcm_jax.linen.SEModule(reduction=8).init(jax.random.key(0), jnp.ones((1, 2, 4))), ValueError,
         r"channels // reduction must be >= 1, got 4 // 8"),
        (lambda: prcm_jax.PRCM(16, gate="tanh", rngs=nnx.Rngs(0)), ValueError,
         "PRCM: gate must be one of 'sigmoid', 'hard_sigmoid', got 'tanh'"),
        (lambda: prcm_jax.ShiftOnlyPRCM(16, gate=None, rngs=nnx.Rngs(0)), TypeError, "gate must be one of"),
        (lambda: prcm_jax.linen.AffinePRCM(gate="hard_swish"), ValueError, "AffinePRCM: gate must be one of"),
        (lambda: prcm_jax.SEModule(16, act_layer="gelu", rngs=nnx.Rngs(0)), ValueError,
         "SEModule: act_layer must be one of 'relu', 'silu', 'hard_swish', got 'gelu'"),
        (lambda: prcm_jax.linen.SEModule(act_layer="gelu"), ValueError, "act_layer must be one of"),
        (lambda: prcm_jax.SEModule(16, 4, rd_ratio=0.25, rngs=nnx.Rngs(0)), ValueError, "reduction, or timm's rd_ratio"),
        (lambda: prcm_jax.linen.SEModule(rd_divisor=8), ValueError, "pass rd_ratio too"),
        (lambda: prcm_jax.SEModule(16, rd_ratio=0.01, rngs=nnx.Rngs(0)), ValueError, r"hidden width round\(16 \* 0.01\) must be an int >= 1, got 0"),
        (lambda: prcm_jax.linen.SEModule(rd_ratio=0.01).init(jax.random.key(0), jnp.ones((1, 2, 16))), ValueError,
         r"hidden width round\(16 \* 0.01\)"),
    ],
)  # fmt: skip
def test_bad_constructor_arguments(build, error, match):
    with pytest.raises(error, match=match):
        build()


def test_train_mode_needs_usable_rngs():
    model = prcm_jax.PRCM(16, rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match="needs rngs"):
        model(jnp.ones((1, 2, 2, 16)), rngs=123)
    linen_model = prcm_jax.linen.PRCM()
    with pytest.raises(Exception, match="deterministic"):
        linen_model.init(jax.random.key(0), jnp.ones((1, 2, 2, 16)))


@pytest.mark.parametrize("act_layer", ["relu", "silu", "hard_swish"])
@pytest.mark.parametrize("gate", ["sigmoid", "hard_sigmoid"])
def test_se_options_are_the_named_functions(act_layer, gate):
    """NNX and linen SE compute gate(fc2(act(fc1(mean)))) with jax.nn's functions of those names."""
    model = prcm_jax.SEModule(16, rd_channels=5, act_layer=act_layer, gate=gate, rngs=nnx.Rngs(0))
    x = 3 * jax.random.normal(jax.random.key(1), (2, 3, 3, 16))
    (w1, b1), (w2, b2) = model.fc1.value(), model.fc2.value()
    act, gate_fn = {"relu": jax.nn.relu, "silu": jax.nn.silu, "hard_swish": jax.nn.hard_swish}[act_layer], getattr(jax.nn, gate)
    expected = x * gate_fn(act(x.mean(axis=(1, 2)) @ w1 + b1) @ w2 + b2)[:, None, None, :]
    np.testing.assert_allclose(np.asarray(model(x)), np.asarray(expected), rtol=1e-6, atol=1e-6)
    linen_model = prcm_jax.linen.SEModule(rd_channels=5, act_layer=act_layer, gate=gate)
    variables = {"params": nnx.to_pure_dict(nnx.state(model, nnx.Param))}
    np.testing.assert_array_equal(np.asarray(linen_model.apply(variables, x)), np.asarray(model(x)))
