"""Both frameworks agree: every module x direction x mode over many shapes, and low precision.

Each case is judged against the float64 NumPy reference (parity.proof.check.run_case); the tests
below it show that the reference and the checker would catch a real mistake.
"""

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import parity
import prcm_torch
from parity import shared_dropout_mask
from prcm.catalog import CATALOG, OPTIONS
from parity.proof.check import DIRECTIONS, MODES, REF_LIMITS, SHAPES, Case, cases, run_case
from parity.proof.reference import backward, error_in_eps, forward
from prcm import MODULES
from seed_modules import SEED
from fresh import run_module_fresh

import parity.proof.check


#: The seed's options (sigmoid gate, ReLU in SE): the first variant of every module.
SEED_OPTIONS = {"gate": ("sigmoid",), "act_layer": ("relu",)}
#: Every other variant (hard_sigmoid; SE's EfficientNet and MobileNetV3 variants), one shape a
#: row, in one direction into each Flax API: the converters do not see options, the modules do.
VARIANT_CASES = [c for c in cases(directions=("torch->nnx", "linen->torch"), dtypes=("float32", "bfloat16"), per_row=1)
                 if dict(c.options) != CATALOG[c.module].variants[0]]  # fmt: skip


# Every module x direction x mode, three of the fixed shapes each, rotating so that every
# shape (batch 1, 1x1, odd sizes, 1-D, 3-D, K=1, K > C) meets every module and direction;
# `python -m parity` runs all of them, every variant, and tests/test_properties.py random ones.
@pytest.mark.parametrize("case", list(cases(dtypes=("float32",), per_row=3, options=SEED_OPTIONS)), ids=str)
def test_float32(case):
    result = run_case(case)
    assert result.ok, result


def test_float32_sweep_covers_every_shape_for_every_module_and_direction():
    seen = {(c.module, c.direction, c.shape) for c in cases(dtypes=("float32",), per_row=3, options=SEED_OPTIONS)}
    assert seen == {(m, d, s) for m in MODULES for d in DIRECTIONS for s, _ in SHAPES}


@pytest.mark.parametrize("case", list(cases(dtypes=("bfloat16", "float16"), per_row=1, options=SEED_OPTIONS)), ids=str)
def test_low_precision(case):
    result = run_case(case)
    assert result.ok, result


@pytest.mark.parametrize("case", VARIANT_CASES, ids=str)
def test_every_gate_and_activation(case):
    result = run_case(case)
    assert result.ok, result


def test_the_variant_sweep_covers_every_option_value_and_mode():
    seen = {(k, v, c.mode) for c in VARIANT_CASES for k, v in c.options}
    assert seen >= {(k, v, m) for k, values in OPTIONS.items() for v in values for m in MODES} - {
        ("gate", "sigmoid", m) for m in MODES} - {("act_layer", "relu", m) for m in MODES}  # fmt: skip


# -- the reference and the checker ---------------------------------------------------------


@pytest.mark.parametrize("name", SEED)
@pytest.mark.parametrize("shape", [(2, 12, 5, 7), (1, 8, 1, 1), (3, 16, 4, 4)])
def test_reference_matches_the_seed_classes_in_float64(name, shape):
    torch.manual_seed(0)
    kw = CATALOG[name].config(shape[1], 3)
    seed_module = SEED[name](shape[1], **kw).double().eval()
    x = torch.randn(shape, dtype=torch.float64)
    params = {k: v.numpy() for k, v in seed_module.state_dict().items()}
    np.testing.assert_allclose(forward(x.numpy(), params, kind=CATALOG[name].kind), seed_module(x).detach().numpy(), rtol=1e-13, atol=1e-13)


VARIANTS = [(name, options) for name in MODULES for options in CATALOG[name].variants]


@pytest.mark.parametrize("name,options", VARIANTS, ids=[f"{n}{''.join(f'[{v}]' for v in o.values())}" for n, o in VARIANTS])
@pytest.mark.parametrize("shape", [(2, 12, 5, 7), (1, 6, 3), (3, 8, 2, 2, 2)])
@pytest.mark.parametrize("scale", [1.0, 8.0])
def test_reference_gradients_match_float64_autograd(name, options, shape, scale):
    """At weights x8 too: the logits then reach hard_sigmoid's and hard_swish's flat parts."""
    torch.manual_seed(0)
    entry = CATALOG[name]
    module = entry.build_torch(shape[1], 3, dtype=torch.float64, **options).train()
    with torch.no_grad():
        for p in module.parameters():
            p.mul_(scale)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    cot = torch.randn(shape, dtype=torch.float64)
    keep, rate = None, 0.0
    if entry.dropout:
        keep, rate = np.random.default_rng(0).random((shape[0], 3)) > 0.5, module.dropout_rate
        with shared_dropout_mask(module, keep):
            y = module(x)
    else:
        y = module(x)
    (y * cot).sum().backward()
    params = {k: v.detach().numpy() for k, v in module.state_dict().items()}
    reference = dict(kind=entry.kind, keep=keep, rate=rate, **options)
    np.testing.assert_allclose(forward(x.detach().numpy(), params, **reference), y.detach().numpy(), rtol=1e-13, atol=1e-13)
    grads = backward(x.detach().numpy(), params, cot.numpy(), **reference)
    bounds = backward(x.detach().numpy(), params, cot.numpy(), **reference, bound=True)
    expected = {"x": x.grad, **{k: p.grad for k, p in module.named_parameters()}}
    assert grads.keys() == expected.keys()
    for key, value in expected.items():
        np.testing.assert_allclose(grads[key], value.numpy(), rtol=1e-12, atol=1e-12)
        assert np.all(bounds[key] >= np.abs(grads[key]) - 1e-12)


@pytest.mark.parametrize("side", ["torch", "jax"])
def test_a_logit_rounded_onto_a_kink_is_judged_on_either_side(side):
    """The mean of (3, 3, 3 - 2^-22) is 3 - 8e-8, and 3 in float32: the logit lands on
    hard_sigmoid's kink, where both frameworks take the slope 0 and the exact point has 1/6.
    The bound that takes the exact side rejects that gradient; the band of
    :mod:`parity.proof.reference` (``kink = eps x limit``) accepts it, and only there."""
    from parity.proof.check import bound_limit

    module = prcm_torch.PRCMNoDropout(1, num_basis=1, gate="hard_sigmoid")
    with torch.no_grad():
        module.basis.fill_(1.0)
        module.fuser.weight.fill_(1.0)
    x = np.array([[[3.0, 3.0, 3.0 - 2**-22]]], np.float32)
    cot = np.ones_like(x)
    if side == "torch":
        got = parity.proof.check._torch_grads(module, torch.from_numpy(x), torch.from_numpy(cot), lambda m: contextlib.nullcontext())
    else:
        model = parity.torch_to_nnx(module, CATALOG["PRCMNoDropout"].build_nnx(1, 1, gate="hard_sigmoid"))
        jax_side = parity.proof.check._Jax(model=model)
        g_x, g_vars = jax_side.grads(jnp.asarray(np.moveaxis(x, 1, -1)), None, jnp.asarray(np.moveaxis(cot, 1, -1)))
        got = {**{k: v.numpy() for k, v in parity.torch_state_dict(g_vars, module).items()}, "x": np.moveaxis(np.asarray(g_x), -1, 1)}
    params = {k: v.numpy() for k, v in module.state_dict().items()}
    eps, limit = float(np.finfo(np.float32).eps), bound_limit("float32", x.shape, 1, grad=True)
    ref = backward(x, params, cot, kind="basis", gate="hard_sigmoid")
    assert ref["fuser.weight"].item() > 1.0 and got["fuser.weight"].item() == 0.0  # 9 / 6 x 3 against 0

    def worst(kink: float) -> float:
        bounds = backward(x, params, cot, kind="basis", gate="hard_sigmoid", bound=True, kink=kink)
        return max(error_in_eps(got[k], ref[k], eps, float(np.max(bounds[k]))) for k in ref)

    assert worst(0.0) > 1e5 * limit
    assert worst(eps * limit) <= limit
    x[..., -1] = 2.0  # far from the kink, the band adds nothing
    kinked = backward(x, params, cot, kind="basis", gate="hard_sigmoid", bound=True, kink=eps * limit)
    assert kinked["fuser.weight"].item() == backward(x, params, cot, kind="basis", gate="hard_sigmoid", bound=True)["fuser.weight"].item()


def test_error_metric_sees_nan_patterns_and_scale():
    ref = np.array([1.0, -2.0, np.nan, np.inf])
    assert error_in_eps(ref.copy(), ref, 1e-7) == 0.0
    assert error_in_eps(np.array([1.0, -2.0, 0.0, np.inf]), ref, 1e-7) == float("inf")
    assert error_in_eps(np.array([1.0, -2.0, np.nan, -np.inf]), ref, 1e-7) == float("inf")
    assert error_in_eps(np.array([1.0 + 2e-7, -2.0, np.nan, np.inf]), ref, 1e-7) == pytest.approx(1.0)


@pytest.mark.parametrize("mode", MODES)
def test_checker_catches_a_wrong_conversion(monkeypatch, mode):
    """A converter that forgets to transpose square kernels must fail every mode."""
    original = parity.proof.check._build

    def broken(case, twin, torch_dtype, np_dtype):
        torch_model, jax_side = original(case, twin, torch_dtype, np_dtype)
        with torch.no_grad():
            torch_model.fuser.weight.copy_(torch_model.fuser.weight.t().clone())
        return torch_model, jax_side

    monkeypatch.setattr(parity.proof.check, "_build", broken)
    result = run_case(Case("PRCM", "torch->nnx", mode, "float32", (2, 8, 5, 5), 8))
    assert not result.ok and result.bound_error > 100 * result.bound_limit


MEAN_PATH_SHAPES = [((2, 64, 16, 16), 8), ((4, 96, 13, 13), 8), ((3, 16, 33), 4)]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
@pytest.mark.parametrize("module", ["PRCM", "SEModule"])
@pytest.mark.parametrize("shape,num_basis", MEAN_PATH_SHAPES)
def test_checker_sees_the_gradient_through_the_mean_in_every_dtype(monkeypatch, dtype, module, shape, num_basis):
    """Dropping JAX's gradient through the spatial mean must fail low precision too (in
    ``grad`` mode it is below one rounding of the rest in bfloat16; ``mean-path`` resolves it)."""
    import prcm_jax.functional as F

    original = F.spatial_mean
    monkeypatch.setattr(F, "spatial_mean", lambda x: jax.lax.stop_gradient(original(x)))
    jax.clear_caches()  # the sweep's jitted programs were traced with the real mean
    try:
        result = run_case(Case(module, "torch->nnx", "mean-path", dtype, shape, num_basis))
    finally:
        monkeypatch.undo()
        jax.clear_caches()
    assert not result.ok and result.detail == "jax x (mean path)", result


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("module", ["AffinePRCM", "SEModule"])
def test_checker_sees_torch_dropping_the_gradient_through_the_mean(monkeypatch, dtype, module):
    import prcm_torch.prcm
    import prcm_torch.se

    for owner in (prcm_torch.prcm, prcm_torch.se):
        original = owner.spatial_mean
        monkeypatch.setattr(owner, "spatial_mean", lambda x, original=original: original(x).detach())
    result = run_case(Case(module, "nnx->torch", "mean-path", dtype, (2, 64, 16, 16), 8))
    assert not result.ok and result.detail == "torch x (mean path)", result


@pytest.mark.parametrize("module", MODULES)
def test_bfloat16_gradients_sum_in_float32(module):
    """4,096 positive terms per sum: XLA:CPU rounds a bfloat16 reduction's accumulator at every
    step, so before `recalibrate` ran in float32 JAX's shift and scale gradients were 41 bound
    units off here (limit 14)."""
    result = run_case(Case(module, "torch->nnx", "mean-path", "bfloat16", (2, 4, 64, 64), 4))
    assert result.ok, result


def test_checker_catches_a_different_dropout_mask(monkeypatch):
    monkeypatch.setattr(parity.proof.check, "keep_mask", lambda key, rate, shape: np.ones(shape, bool))
    result = run_case(Case("AffinePRCM", "torch->nnx", "train", "float32", (4, 16, 5, 5), 8))
    assert not result.ok


def test_cli_quick_subset_passes_and_bad_arguments_fail():
    ok = run_module_fresh("parity", "--quick", "--modules", "ShiftOnlyPRCM", "--modes", "eval", "--dtypes", "float32")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "all 4 cases passed" in ok.stdout and "torch->linen" in ok.stdout
    bad = run_module_fresh("parity", "--dtypes", "float8")
    assert bad.returncode == 2 and "unknown dtype float8; choose from float32, bfloat16, float16" in bad.stderr


def test_cli_exits_1_on_failure(monkeypatch, capsys):
    from parity import __main__ as cli

    fail = lambda case: parity.proof.check.Result(case, 99.0, 99.0, 8.0, 8.0)  # noqa: E731
    monkeypatch.setattr(cli, "run_case", fail)
    assert cli.main(["--quick", "--modules", "PRCM", "--modes", "eval", "--dtypes", "float32"]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_mean_path_draws_a_mask_that_keeps_a_coefficient_per_row_or_says_it_cannot():
    """With one coefficient a row and a batch of 64, no key in 64 keeps every row (odds 2^-64 each)."""
    with pytest.raises(ValueError, match=r"no dropout key of 64 keeps a coefficient in every row of a \(64, 1\) mask"):
        run_case(Case("PRCM", "torch->nnx", "mean-path", "float32", (64, 16, 2, 2), 1))
    assert run_case(Case("PRCM", "torch->nnx", "mean-path", "float32", (4, 16, 2, 2), 1)).ok  # redraws until every row keeps one
