"""An independent float64 NumPy reference of all six modules: outputs, gradients, bounds.

The reference reads torch state_dict names and layouts and channels-first inputs, and
writes its forward and backward passes out by hand (no autograd).

Run with ``bound=True`` it evaluates the same formulas as a first-order running error bound:
every linear step on absolute values (so each intermediate bounds the sum of the absolute
terms that produced it), ``relu'`` by 1, and each sigmoid by its value plus its slope times
the bound of its argument, ``sigma(s) + sigma'(s) * B(s)``, taken at the exact ``s``: an
error in the logits reaches the output only as far as the sigmoid lets it. ``sigma'`` is
computed by both frameworks from the rounded output as ``s(1 - s)``, so its bound adds
``|1 - 2 sigma|`` times the sigmoid's bound. ``eps * bound`` is then the size of one rounding anywhere
upstream, carried to that point. Tolerances are set in those units, which keeps them honest
for badly conditioned cases (cancellation in ``mean(x) @ basis.T`` with few channels, large
weight scales, logits that cancel) where ``eps * max|y|`` would be far too tight.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

__all__ = ["forward", "backward", "error_in_eps", "normwise_error_in_eps", "HEADS"]

Params = Mapping[str, np.ndarray]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    """Accurate in both tails (no 1 - tanh cancellation) and free of overflow."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


Head = Callable[..., tuple[np.ndarray | None, np.ndarray | None, Callable]]


def _basis_head(ctx: np.ndarray, p: Params, keep: np.ndarray | None, rate: float, bound: bool):
    """The PRCM variants from ``ctx``: (logits, shift, backward(d_logits, d_shift) -> (grads, d_ctx))."""
    scale_name = next((k for k in ("fuser.weight", "scale_proj.weight") if k in p), None)
    drop = 1.0 if keep is None else np.asarray(keep, np.float64) / (1.0 - rate)
    coeff = (ctx @ p["basis"].T) * drop
    logits = None if scale_name is None else coeff @ p[scale_name].T
    shift = coeff @ p["shift_proj.weight"].T if "shift_proj.weight" in p else None

    def backward(d_logits: np.ndarray | None, d_shift: np.ndarray | None) -> tuple[dict[str, np.ndarray], np.ndarray]:
        grads, d_coeff = {}, np.zeros_like(coeff)
        if d_logits is not None:
            grads[scale_name] = d_logits.T @ coeff
            d_coeff = d_coeff + d_logits @ p[scale_name]
        if d_shift is not None:
            grads["shift_proj.weight"] = d_shift.T @ coeff
            d_coeff = d_coeff + d_shift @ p["shift_proj.weight"]
        d_coeff = d_coeff * drop
        grads["basis"] = d_coeff.T @ ctx
        return grads, d_coeff @ p["basis"]

    return logits, shift, backward


def _se_head(ctx: np.ndarray, p: Params, keep: np.ndarray | None, rate: float, bound: bool):
    """Squeeze-and-excitation from ``ctx``: (logits, no shift, backward)."""
    pre = ctx @ p["fc1.weight"].T + p["fc1.bias"]
    hidden = np.abs(pre) if bound else np.maximum(pre, 0.0)  # relu' bounded by 1

    def backward(d_logits: np.ndarray, d_shift: None) -> tuple[dict[str, np.ndarray], np.ndarray]:
        grads = {"fc2.weight": d_logits.T @ hidden, "fc2.bias": d_logits.sum(axis=0)}
        d_pre = d_logits @ p["fc2.weight"]
        d_pre = d_pre if bound else d_pre * (pre > 0)
        grads["fc1.weight"], grads["fc1.bias"] = d_pre.T @ ctx, d_pre.sum(axis=0)
        return grads, d_pre @ p["fc1.weight"]

    return hidden @ p["fc2.weight"].T + p["fc2.bias"], None, backward


#: The reference of each kind of the catalog (:mod:`prcm.catalog`).
HEADS: dict[str, Head] = {"basis": _basis_head, "se": _se_head}


def _run(
    x: np.ndarray, params: Params, kind: str, cot: np.ndarray | None, keep: np.ndarray | None, rate: float, bound: bool
) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray | None]:
    """(output, gradients, logits), or their bounds."""
    if kind not in HEADS:
        raise ValueError(f"unknown module kind {kind!r}; expected one of {', '.join(HEADS)}")
    exact_logits = _run(x, params, kind, None, keep, rate, False)[2] if bound else None
    f64 = (lambda a: np.abs(np.asarray(a, np.float64))) if bound else (lambda a: np.asarray(a, np.float64))
    p = {k: f64(v) for k, v in params.items()}
    x = f64(x)
    spatial = tuple(range(2, x.ndim))
    expand = (...,) + (None,) * len(spatial)
    n = int(np.prod([x.shape[i] for i in spatial]))
    ctx = x.mean(axis=spatial)
    logits, shift, head_backward = HEADS[kind](ctx, p, keep, rate, bound)
    scale = slope = None
    if logits is not None and bound:  # at the exact point: value + slope x the logits' bound
        sig = _sigmoid(exact_logits)
        d1 = sig * (1.0 - sig)
        scale = sig + d1 * logits
        # both frameworks differentiate through the rounded output: sigma' = s(1 - s), so an
        # error in s (its own rounding and the logits' error) reaches it times |1 - 2s|
        slope = d1 + np.abs(1.0 - 2.0 * sig) * scale
    elif logits is not None:
        scale = _sigmoid(logits)
        slope = scale * (1.0 - scale)
    y = x if scale is None else x * scale[expand]
    y = y if shift is None else y + shift[expand]
    if cot is None:
        return y, {}, logits

    g = f64(cot)
    dx = g if scale is None else g * scale[expand]
    d_logits = None if scale is None else (g * x).sum(axis=spatial) * slope
    grads, d_ctx = head_backward(d_logits, None if shift is None else g.sum(axis=spatial))
    grads["x"] = dx + (d_ctx / n)[expand]
    return y, grads, logits


def forward(
    x: np.ndarray,
    params: Params,
    *,
    kind: str,
    keep: np.ndarray | None = None,
    rate: float = 0.0,
    bound: bool = False,
) -> np.ndarray:
    """Any PRCM-family module in float64, from its torch parameters.

    Args:
      x: ``(B, C, *spatial)``.
      params: the torch state_dict as NumPy arrays (``basis``, ``fuser.weight``, ...).
      kind: the module's kind in :mod:`prcm.catalog` (``"basis"`` or ``"se"``).
      keep: dropout keep-mask ``(B, num_basis)``; ``None`` for eval mode.
      rate: dropout rate the mask was drawn with.
      bound: return the running error bound instead of the value (see the module doc).

    >>> p = {"basis": np.ones((2, 3)), "shift_proj.weight": np.ones((3, 2))}
    >>> forward(np.zeros((1, 3, 4)), p, kind="basis").shape
    (1, 3, 4)
    """
    with np.errstate(invalid="ignore", over="ignore"):  # NaN and Inf propagate, as in both frameworks
        return _run(x, params, kind, None, keep, rate, bound)[0]


def backward(
    x: np.ndarray,
    params: Params,
    cot: np.ndarray,
    *,
    kind: str,
    keep: np.ndarray | None = None,
    rate: float = 0.0,
    bound: bool = False,
) -> dict[str, np.ndarray]:
    """Gradients of ``sum(y * cot)`` w.r.t. the input (``'x'``) and every parameter, float64.

    Args:
      x: ``(B, C, *spatial)``.
      params: the torch state_dict as NumPy arrays.
      cot: the cotangent, shaped like ``x``.
      kind: the module's kind in :mod:`prcm.catalog` (``"basis"`` or ``"se"``).
      keep: dropout keep-mask ``(B, num_basis)``; ``None`` for eval mode.
      rate: dropout rate the mask was drawn with.
      bound: return running error bounds instead of the gradients.

    >>> p = {"basis": np.ones((2, 3)), "fuser.weight": np.ones((3, 2))}
    >>> sorted(backward(np.ones((1, 3, 4)), p, np.ones((1, 3, 4)), kind="basis"))
    ['basis', 'fuser.weight', 'x']
    """
    with np.errstate(invalid="ignore", over="ignore"):
        return _run(x, params, kind, cot, keep, rate, bound)[1]


def error_in_eps(y: np.ndarray, ref: np.ndarray, eps: float, scale: float | None = None) -> float:
    """``max|y - ref| / (eps * scale)`` over finite entries; ``scale`` defaults to ``max|ref|``.

    NaN and ±Inf must sit in the same places in both (never zeroed before comparing); if
    they do not, the error is infinite.

    Args:
      y: the value under test.
      ref: the reference.
      eps: machine epsilon of the dtype under test.
      scale: the magnitude errors are measured against (for example ``max`` of a bound).

    >>> error_in_eps(np.array([1.0, np.nan]), np.array([1.0, np.nan]), 1e-7)
    0.0
    >>> error_in_eps(np.array([1.0, 0.0]), np.array([1.0, np.nan]), 1e-7)
    inf
    """
    y, ref = np.asarray(y, np.float64), np.asarray(ref, np.float64)
    if y.shape != ref.shape:
        raise ValueError(f"shapes differ: {y.shape} vs {ref.shape}")
    if not (np.array_equal(np.isnan(y), np.isnan(ref)) and np.array_equal(np.isposinf(y), np.isposinf(ref))
            and np.array_equal(np.isneginf(y), np.isneginf(ref))):  # fmt: skip
        return float("inf")
    finite = np.isfinite(ref)
    diff = float(np.max(np.abs(y[finite] - ref[finite]), initial=0.0))
    if scale is None:
        scale = float(np.max(np.abs(ref[finite]), initial=0.0))
    if diff == 0.0:
        return 0.0
    return diff / (eps * scale) if scale > 0 else float("inf")


def normwise_error_in_eps(y: np.ndarray, ref: np.ndarray, eps: float) -> float:
    """``||y - ref||_2 / (eps * ||ref||_2)``: the relative error of the tensor as a whole.

    A few entries far off (a ReLU unit on the other side of zero) weigh by their share of the
    norm, where :func:`error_in_eps` takes the worst entry.

    >>> round(normwise_error_in_eps(np.array([3.0, 4.0 + 5e-7]), np.array([3.0, 4.0]), 1e-7), 6)
    1.0
    >>> normwise_error_in_eps(np.zeros(2), np.zeros(2), 1e-7)
    0.0
    >>> normwise_error_in_eps(np.array([1.0, np.nan]), np.array([1.0, 2.0]), 1e-7)
    inf
    """
    y, ref = np.asarray(y, np.float64), np.asarray(ref, np.float64)
    if y.shape != ref.shape:
        raise ValueError(f"shapes differ: {y.shape} vs {ref.shape}")
    if not (np.isfinite(y).all() and np.isfinite(ref).all()):
        return 0.0 if np.array_equal(y, ref, equal_nan=True) else float("inf")
    diff, scale = float(np.linalg.norm(y - ref)), float(np.linalg.norm(ref))
    if diff == 0.0:
        return 0.0
    return diff / (eps * scale) if scale > 0 else float("inf")
