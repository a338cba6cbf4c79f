"""An independent float64 NumPy reference of all six modules: outputs, gradients, bounds.

The reference reads torch state_dict names and layouts and channels-first inputs, and
writes its forward and backward passes out by hand (no autograd), for every gate
(``sigmoid``, ``hard_sigmoid``) and SE hidden activation (``relu``, ``silu``, ``hard_swish``).

Run with ``bound=True`` it evaluates the same formulas as a first-order running error bound:
every linear step on absolute values (so each intermediate bounds the sum of the absolute
terms that produced it), each elementwise function by its Lipschitz constant times the bound
of its argument (``relu'``, ``silu'``, ``hard_swish'``: 1, 1.1, 1.5), and each gate by its
value plus its slope times the bound of its argument, taken at the exact logits ``s``: an
error in the logits reaches the output only as far as the gate lets it. The sigmoid's slope
is computed by both frameworks from the rounded output as ``s(1 - s)``, so its bound adds
``|1 - 2 sigma|`` times the sigmoid's bound; hard_sigmoid's intermediates (``z / 6 + 1/2``
in torch, ``(z + 3) / 6`` in JAX) are bounded by ``|z| / 6 + 1/2``. ``eps * bound`` is then the
size of one rounding anywhere upstream, carried to that point. Tolerances are set in those
units, which keeps them honest for badly conditioned cases (cancellation in
``mean(x) @ basis.T`` with few channels, large weight scales, logits that cancel) where
``eps * max|y|`` would be far too tight.

Kinks: hard_sigmoid's slope jumps by 1/6 at ``z = -3`` and ``z = 3``, hard_swish's by 1/2 at the
same points, and one rounding can put a value next to a kink on its other side (bfloat16's
spacing at 3 is 1/64). Both frameworks take the slope of the side the rounded value lies on,
and exactly at ±3 the outer side's (0 for hard_sigmoid; 0 and 1 for hard_swish), as here. A bound run with ``kink > 0`` (the relative error its caller allows, ``eps x
limit``) treats a value within ``kink`` times its bound of a kink as on either side: its slope
is bounded by the larger one and its gradient may be off by the whole jump, which the bound
carries as ``jump / kink`` (that error, in units the caller multiplies by ``kink``). Away from
kinks this adds nothing; near one it is what an honest check can promise. ReLU's kink at 0
is not widened: rounding keeps a sign, so only a sum's accumulated error (in float32 for every
dtype, or less) can carry a value across it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NamedTuple

import numpy as np

__all__ = ["forward", "backward", "error_in_eps", "normwise_error_in_eps", "HEADS", "GATES", "ACTIVATIONS"]

Params = Mapping[str, np.ndarray]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    """Accurate in both tails (no 1 - tanh cancellation) and free of overflow."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


class Unit(NamedTuple):
    """An elementwise function: value, slope (at a kink the outer side's, as both frameworks),
    Lipschitz constant, and kinks ``(position, jump of the slope)`` that the bound widens."""

    value: Callable[[np.ndarray], np.ndarray]
    slope: Callable[[np.ndarray], np.ndarray]
    lipschitz: float
    kinks: tuple[tuple[float, float], ...] = ()


def _silu_slope(z: np.ndarray) -> np.ndarray:
    s = _sigmoid(z)
    return s * (1.0 + z * (1.0 - s))


#: The gates by name (:data:`prcm.validate.GATES`).
GATES: dict[str, Unit] = {
    "sigmoid": Unit(_sigmoid, lambda z: _sigmoid(z) * (1.0 - _sigmoid(z)), 0.25),
    "hard_sigmoid": Unit(lambda z: np.clip(z / 6.0 + 0.5, 0.0, 1.0), lambda z: np.where(np.abs(z) < 3.0, 1.0 / 6.0, 0.0),
                         1.0 / 6.0, ((-3.0, 1.0 / 6.0), (3.0, 1.0 / 6.0))),
}  # fmt: skip
#: SE's hidden activations by name (:data:`prcm.validate.ACTIVATIONS`). max|silu'| = 1.0998.
ACTIVATIONS: dict[str, Unit] = {
    "relu": Unit(lambda z: np.maximum(z, 0.0), lambda z: (z > 0).astype(np.float64), 1.0),
    "silu": Unit(lambda z: z * _sigmoid(z), _silu_slope, 1.1),
    "hard_swish": Unit(lambda z: z * np.clip(z + 3.0, 0.0, 6.0) / 6.0,  # at ±3 the outer slope, as both frameworks
                       lambda z: np.where(z <= -3.0, 0.0, np.where(z < 3.0, (2.0 * z + 3.0) / 6.0, 1.0)),
                       1.5, ((-3.0, 0.5), (3.0, 0.5))),
}  # fmt: skip


def _near_kink(unit: Unit, exact: np.ndarray, bound: np.ndarray, kink: float) -> tuple[np.ndarray, np.ndarray]:
    """(whether each value may sit on either side of a kink, the largest jump there)."""
    jump = np.zeros_like(exact)
    for position, size in unit.kinks if kink > 0 else ():
        jump = np.where(np.abs(exact - position) <= kink * bound, np.maximum(jump, size), jump)
    return jump > 0, jump


def _slope_bound(unit: Unit, exact: np.ndarray, bound: np.ndarray, kink: float) -> np.ndarray:
    """The bound of a unit's slope: its Lipschitz constant, plus ``jump / kink`` near a kink."""
    _, jump = _near_kink(unit, exact, bound, kink)
    return unit.lipschitz + (jump / kink if kink > 0 else 0.0)


Head = Callable[..., tuple[np.ndarray | None, np.ndarray | None, Callable, dict[str, np.ndarray]]]


def _basis_head(ctx: np.ndarray, p: Params, keep: np.ndarray | None, rate: float, bound: bool, **_):
    """The PRCM variants from ``ctx``: (logits, shift, backward(d_logits, d_shift) -> (grads, d_ctx), exact values)."""
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

    return logits, shift, backward, {}


def _se_head(ctx: np.ndarray, p: Params, keep: np.ndarray | None, rate: float, bound: bool, *,
             act_layer: str = "relu", exact: Mapping[str, np.ndarray] | None = None, kink: float = 0.0):  # fmt: skip
    """Squeeze-and-excitation from ``ctx``: (logits, no shift, backward, exact values)."""
    act = ACTIVATIONS[act_layer]
    pre = ctx @ p["fc1.weight"].T + p["fc1.bias"]
    hidden = act.lipschitz * pre if bound else act.value(pre)
    slope = _slope_bound(act, exact["pre"], pre, kink) if bound else act.slope(pre)

    def backward(d_logits: np.ndarray, d_shift: None) -> tuple[dict[str, np.ndarray], np.ndarray]:
        grads = {"fc2.weight": d_logits.T @ hidden, "fc2.bias": d_logits.sum(axis=0)}
        d_pre = (d_logits @ p["fc2.weight"]) * slope
        grads["fc1.weight"], grads["fc1.bias"] = d_pre.T @ ctx, d_pre.sum(axis=0)
        return grads, d_pre @ p["fc1.weight"]

    return hidden @ p["fc2.weight"].T + p["fc2.bias"], None, backward, {"pre": pre}


#: The reference of each kind of the catalog (:mod:`prcm.catalog`).
HEADS: dict[str, Head] = {"basis": _basis_head, "se": _se_head}


def _gate_bound(unit: Unit, exact: np.ndarray, bound: np.ndarray, kink: float) -> tuple[np.ndarray, np.ndarray]:
    """(the gate's bound, its slope's bound) at the exact logits, from the logits' bound."""
    if unit is GATES["sigmoid"]:  # no kinks: value + slope x the logits' bound, as in the module doc
        sig = _sigmoid(exact)
        d1 = sig * (1.0 - sig)
        scale = sig + d1 * bound
        return scale, d1 + np.abs(1.0 - 2.0 * sig) * scale
    near, _ = _near_kink(unit, exact, bound, kink)
    live = (unit.slope(exact) > 0) | near  # where an error in the logits reaches the output
    terms = np.where(live, np.abs(exact) / 6.0 + 0.5, unit.value(exact))  # hard_sigmoid's intermediates
    return terms + np.where(live, unit.lipschitz, 0.0) * bound, np.where(live | near, _slope_bound(unit, exact, bound, kink), 0.0)


def _run(
    x: np.ndarray, params: Params, kind: str, cot: np.ndarray | None, keep: np.ndarray | None, rate: float, bound: bool,
    gate: str, act_layer: str, kink: float,
) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(output, gradients, exact intermediates), or their bounds."""
    if kind not in HEADS:
        raise ValueError(f"unknown module kind {kind!r}; expected one of {', '.join(HEADS)}")
    if gate not in GATES or act_layer not in ACTIVATIONS:
        raise ValueError(f"gate must be one of {', '.join(GATES)} and act_layer one of {', '.join(ACTIVATIONS)}, "
                         f"got {gate!r}, {act_layer!r}")  # fmt: skip
    exact = _run(x, params, kind, None, keep, rate, False, gate, act_layer, 0.0)[2] if bound else None
    f64 = (lambda a: np.abs(np.asarray(a, np.float64))) if bound else (lambda a: np.asarray(a, np.float64))
    p = {k: f64(v) for k, v in params.items()}
    x = f64(x)
    spatial = tuple(range(2, x.ndim))
    expand = (...,) + (None,) * len(spatial)
    n = int(np.prod([x.shape[i] for i in spatial]))
    ctx = x.mean(axis=spatial)
    options = {"act_layer": act_layer, "exact": exact, "kink": kink} if kind == "se" else {}
    logits, shift, head_backward, values = HEADS[kind](ctx, p, keep, rate, bound, **options)
    values["logits"] = logits
    scale = slope = None
    if logits is not None and bound:  # at the exact point
        scale, slope = _gate_bound(GATES[gate], exact["logits"], logits, kink)
    elif logits is not None:
        scale, slope = GATES[gate].value(logits), GATES[gate].slope(logits)
    y = x if scale is None else x * scale[expand]
    y = y if shift is None else y + shift[expand]
    if cot is None:
        return y, {}, values

    g = f64(cot)
    dx = g if scale is None else g * scale[expand]
    d_logits = None if scale is None else (g * x).sum(axis=spatial) * slope
    grads, d_ctx = head_backward(d_logits, None if shift is None else g.sum(axis=spatial))
    grads["x"] = dx + (d_ctx / n)[expand]
    return y, grads, values


def forward(
    x: np.ndarray,
    params: Params,
    *,
    kind: str,
    gate: str = "sigmoid",
    act_layer: str = "relu",
    keep: np.ndarray | None = None,
    rate: float = 0.0,
    bound: bool = False,
    kink: float = 0.0,
) -> np.ndarray:
    """Any PRCM-family module in float64, from its torch parameters.

    Args:
      x: ``(B, C, *spatial)``.
      params: the torch state_dict as NumPy arrays (``basis``, ``fuser.weight``, ...).
      kind: the module's kind in :mod:`prcm.catalog` (``"basis"`` or ``"se"``).
      gate: the module's gate, a name of :data:`GATES`.
      act_layer: SE's hidden activation, a name of :data:`ACTIVATIONS`.
      keep: dropout keep-mask ``(B, num_basis)``; ``None`` for eval mode.
      rate: dropout rate the mask was drawn with.
      bound: return the running error bound instead of the value (see the module doc).
      kink: with ``bound``, the relative error (in units of a value's bound) within which a
        value may lie on either side of a kink (see the module doc); 0 takes the exact side.

    >>> p = {"basis": np.ones((2, 3)), "shift_proj.weight": np.ones((3, 2))}
    >>> forward(np.zeros((1, 3, 4)), p, kind="basis").shape
    (1, 3, 4)
    >>> p = {"basis": np.ones((1, 2)), "fuser.weight": np.full((2, 1), 4.0)}
    >>> forward(np.ones((1, 2, 1)), p, kind="basis", gate="hard_sigmoid").ravel().tolist()
    [1.0, 1.0]
    """
    with np.errstate(invalid="ignore", over="ignore"):  # NaN and Inf propagate, as in both frameworks
        return _run(x, params, kind, None, keep, rate, bound, gate, act_layer, kink)[0]


def backward(
    x: np.ndarray,
    params: Params,
    cot: np.ndarray,
    *,
    kind: str,
    gate: str = "sigmoid",
    act_layer: str = "relu",
    keep: np.ndarray | None = None,
    rate: float = 0.0,
    bound: bool = False,
    kink: float = 0.0,
) -> dict[str, np.ndarray]:
    """Gradients of ``sum(y * cot)`` w.r.t. the input (``'x'``) and every parameter, float64.

    Args:
      x: ``(B, C, *spatial)``.
      params: the torch state_dict as NumPy arrays.
      cot: the cotangent, shaped like ``x``.
      kind: the module's kind in :mod:`prcm.catalog` (``"basis"`` or ``"se"``).
      gate: the module's gate, a name of :data:`GATES`.
      act_layer: SE's hidden activation, a name of :data:`ACTIVATIONS`.
      keep: dropout keep-mask ``(B, num_basis)``; ``None`` for eval mode.
      rate: dropout rate the mask was drawn with.
      bound: return running error bounds instead of the gradients.
      kink: with ``bound``, as :func:`forward`'s.

    >>> p = {"basis": np.ones((2, 3)), "fuser.weight": np.ones((3, 2))}
    >>> sorted(backward(np.ones((1, 3, 4)), p, np.ones((1, 3, 4)), kind="basis"))
    ['basis', 'fuser.weight', 'x']
    """
    with np.errstate(invalid="ignore", over="ignore"):
        return _run(x, params, kind, cot, keep, rate, bound, gate, act_layer, kink)[1]


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
