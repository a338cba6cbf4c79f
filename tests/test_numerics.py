"""Numerics at the edges: NaN and Inf propagate identically in both frameworks and both Flax
APIs (eval and train, where a dropped NaN stays NaN as in torch), and huge inputs that
saturate the gate (sigmoid or hard sigmoid) give the same finite values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from parity import shared_dropout_mask, torch_to_linen, torch_to_nnx
from prcm.catalog import CATALOG
from parity.proof.reference import error_in_eps, forward
from prcm import MODULES
from prcm_jax.functional import keep_mask

EPS32 = float(np.finfo(np.float32).eps)


def _inputs(kind: str) -> np.ndarray:
    x = np.random.default_rng(0).standard_normal((5, 8, 4, 3)).astype(np.float32)
    if kind == "nonfinite":
        x[0, 2, 1, 1] = np.nan  # batch 0: one NaN
        x[1, 3, 0, 2] = np.inf  # batch 1: +Inf in one channel
        x[2, 1, 2, 0], x[2, 1, 3, 0] = np.inf, -np.inf  # batch 2: Inf - Inf in one mean
        x[3, 5, 0, 0] = -np.inf  # batch 3: -Inf; batch 4 stays finite
    else:
        x *= 1e30  # saturates every sigmoid; no sum overflows float32
    return x


def _outputs(name: str, options: dict, x: np.ndarray, train: bool) -> dict[str, np.ndarray]:
    """torch, NNX and linen outputs for the same weights (and the same dropout mask)."""
    torch.manual_seed(0)
    twin = CATALOG[name]
    module = twin.build_torch(8, 4, **options).train(train)
    model = torch_to_nnx(module, twin.build_nnx(8, 4, **options))
    variables = torch_to_linen(module)
    key = jax.random.key(1) if train else None
    rate = module.dropout_rate if twin.dropout else 0.0
    keep = np.asarray(keep_mask(key, rate, (5, 4))) if train and rate else None
    with torch.no_grad(), shared_dropout_mask(module, keep) if keep is not None else torch.no_grad():
        y_torch = module(torch.from_numpy(x)).numpy()
    x_last = jnp.asarray(np.moveaxis(x, 1, -1))
    y_nnx = model(x_last, deterministic=not train, rngs=key)
    y_linen = twin.build_linen(8, 4, **options).apply(variables, x_last, deterministic=not train, rng=key)
    params = {k: v.detach().numpy() for k, v in module.state_dict().items()}
    return {
        "torch": y_torch,
        "nnx": np.moveaxis(np.asarray(y_nnx), -1, 1),
        "linen": np.moveaxis(np.asarray(y_linen), -1, 1),
        "reference": forward(x, params, kind=twin.kind, keep=keep, rate=rate, **options),
        "bound": forward(x, params, kind=twin.kind, keep=keep, rate=rate, bound=True, **options),
    }


VARIANTS = [(name, options) for name in MODULES for options in CATALOG[name].variants]
VARIANT_IDS = [name + "".join(f"[{v}]" for v in options.values()) for name, options in VARIANTS]


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("name,options", VARIANTS, ids=VARIANT_IDS)
def test_nan_and_inf_propagate_identically(name, options, train):
    out = _outputs(name, options, _inputs("nonfinite"), train)
    for kind in ("nnx", "linen", "reference"):
        np.testing.assert_array_equal(np.isnan(out[kind]), np.isnan(out["torch"]), err_msg=kind)
        np.testing.assert_array_equal(np.isposinf(out[kind]), np.isposinf(out["torch"]), err_msg=kind)
        np.testing.assert_array_equal(np.isneginf(out[kind]), np.isneginf(out["torch"]), err_msg=kind)
    assert np.isfinite(out["torch"][4]).all()  # the clean batch stays clean
    assert not np.isfinite(out["torch"][:4]).all(axis=(1, 2, 3)).any()  # every poisoned batch shows it
    finite = np.isfinite(out["reference"])
    for kind in ("torch", "nnx", "linen"):
        assert error_in_eps(out[kind][finite], out["reference"][finite], EPS32) <= 8


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("name,options", VARIANTS, ids=VARIANT_IDS)
def test_huge_inputs_saturate_the_same_way(name, options, train):
    out = _outputs(name, options, _inputs("huge"), train)
    scale = float(np.max(out["bound"]))
    for kind in ("torch", "nnx", "linen"):
        assert np.isfinite(out[kind]).all(), kind
        assert error_in_eps(out[kind], out["reference"], EPS32, scale) <= 8, kind
