"""The parity sweep: every module x options x conversion direction x mode x dtype x shape.

The options are each module's variants in the catalog (:attr:`prcm.catalog.Entry.variants`):
the PRCM variants with each gate (sigmoid, hard_sigmoid), SE with the gate and hidden
activation of each network family. One case builds a module in the source framework with
random weights (and those options), converts it into
the other framework with the public converters, runs both on the same input and compares
each against an independent float64 reference:

* ``eval``: outputs, deterministic, against :func:`parity.proof.reference.forward`;
* ``train``: outputs in train mode, the same dropout mask on both sides (JAX draws it
  with ``keep_mask``; torch applies it through :func:`parity.shared_dropout_mask`);
* ``grad``: gradients of ``sum(y * cotangent)`` in train mode with respect to the input
  and every parameter, the JAX gradients mapped back to torch names and layouts through
  the converter, against float64 autograd. The cotangent is zero on the last half of the
  spatial positions, where the input gradient is the part through the spatial mean alone:
  it is compared on its own as ``x (mean path)``.
* ``mean-path``: ``grad`` on a positive input, positive weights (:func:`_positive`, which
  replaces ``weight_scale``) and a positive cotangent (zero on the last half of the positions). Nothing cancels, so the error bound is as
  tight as the values and the gradient through the spatial mean, which ``grad`` cannot
  resolve in bfloat16 where sums cancel (its size is then below the bound of one
  rounding), is checked to a few eps in every dtype.

Errors are in units of the dtype's eps, measured two ways (per tensor, worst kept):

* against ``max|reference|`` — the design's float32 contract: 8 eps for outputs and 64 eps
  for gradients, at the modules' default initialisation;
* against ``max(bound)``, the running error bound of :mod:`parity.proof.reference`, with a limit
  derived from the dtype and the reduction lengths (:func:`bound_limit`). This one holds for
  any weights and shapes, badly conditioned ones included, and applies to every case. A value
  within that limit of a kink (hard_sigmoid's and hard_swish's at ±3) counts as on either side:
  the bound carries the jump of the slope there (``kink = eps x limit``, see the reference).

Used by the tests (fixed sweeps and hypothesis) and by ``python -m parity``.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import torch
from flax import nnx

import prcm
from parity.arrays import to_numpy, to_torch
from parity.convert import linen_to_torch, nnx_to_torch, torch_state_dict, torch_to_linen, torch_to_nnx
from parity.proof.dropout import shared_dropout_mask
from prcm.catalog import CATALOG, Entry
from parity.proof.precision import pinned_precision
from parity.proof.reference import backward, error_in_eps, forward
from prcm_jax.functional import keep_mask

__all__ = ["Case", "Result", "DIRECTIONS", "MODES", "GRAD_MODES", "DTYPES", "DEFAULT_DTYPES", "SHAPES", "REF_LIMITS", "STAGES", "bound_limit",
           "cases", "run_case"]

DIRECTIONS: tuple[str, ...] = ("torch->nnx", "nnx->torch", "torch->linen", "linen->torch")
MODES: tuple[str, ...] = ("eval", "train", "grad", "mean-path")
#: Modes that compare gradients.
GRAD_MODES: tuple[str, ...] = ("grad", "mean-path")
#: dtype name -> (torch dtype, NumPy dtype)
DTYPES: dict[str, tuple[torch.dtype, np.dtype]] = {
    "float32": (torch.float32, np.dtype(np.float32)),
    "bfloat16": (torch.bfloat16, np.dtype(ml_dtypes.bfloat16)),
    "float16": (torch.float16, np.dtype(np.float16)),
    "float64": (torch.float64, np.dtype(np.float64)),  # needs JAX's x64 mode
}
#: What the sweep runs unless asked: float64 needs ``JAX_ENABLE_X64=1``.
DEFAULT_DTYPES: tuple[str, ...] = ("float32", "bfloat16", "float16")
#: (input shape (B, C, *spatial), num_basis): batch 1, 1x1 spatial, odd sizes, 1-D, 3-D, K=1, K > C.
SHAPES: tuple[tuple[tuple[int, ...], int], ...] = (
    ((1, 64, 64, 64), 8),
    ((2, 64, 16, 16), 8),
    ((1, 32, 1, 1), 1),
    ((3, 24, 7, 5), 4),
    ((2, 16, 33), 8),
    ((1, 12, 3, 4, 5), 2),
    ((5, 6, 9, 11), 16),
    ((4, 96, 13, 13), 8),
)
#: float32 contract at the default initialisation, in eps * max|reference|: (forward, gradient).
REF_LIMITS: dict[str, tuple[float, float]] = {"float32": (8.0, 64.0)}
#: Rounding stages in sequence: the forward pass (mean, basis projection, dropout, scale or
#: shift projection, sigmoid, product, sum) and, for gradients, the backward pass again.
STAGES: tuple[int, int] = (7, 14)
#: dtypes whose sums accumulate in the dtype itself; bfloat16 and float16 accumulate in float32.
SELF_ACCUMULATING = ("float32", "float64")


def bound_limit(dtype: str, shape: tuple[int, ...], num_basis: int, grad: bool) -> float:
    """The tolerance, in eps x max(bound), derived from the dtype and the reduction lengths.

    Every intermediate is rounded once, by at most eps/2 of its bound (the bound of
    :mod:`parity.proof.reference` carries the sensitivities downstream: sigmoid' <= 1/4, relu' <= 1).
    That gives eps/2 per stage of :data:`STAGES`. A sum of ``n`` terms accumulated in the dtype
    adds at most ``log2(n)`` roundings more (the blocked / pairwise summation both frameworks
    use). The forward pass sums over the spatial size ``N``, the channels ``C`` and the basis
    ``K``; the backward pass over ``N``, ``C`` and ``K`` again and over the batch ``B`` for the
    weight gradients. bfloat16 and float16 accumulate in float32, where those roundings are
    2^-16 / 2^-13 of the dtype's eps, so only the stages count. Both the value under test and
    the float64 reference can err by that much (for float64 they are of the same precision),
    hence a factor 2:

        limit = 2 * (stages + [accumulating in the dtype] * sum(log2(n) for n in reductions)) / 2

    >>> round(bound_limit("float32", (1, 64, 64, 64), 8, grad=False), 1)
    28.0
    >>> bound_limit("bfloat16", (1, 64, 64, 64), 8, grad=True)
    14.0
    """
    batch, channels, spatial = shape[0], shape[1], int(np.prod(shape[2:]))
    reductions = [spatial, channels, num_basis] + ([spatial, channels, num_basis, batch] if grad else [])
    accumulation = sum(np.log2(n) for n in reductions if n > 1) if dtype in SELF_ACCUMULATING else 0.0
    return float(STAGES[grad] + accumulation)


@dataclass(frozen=True)
class Case:
    """One parity check."""

    module: str
    direction: str
    mode: str
    dtype: str
    shape: tuple[int, ...]
    num_basis: int
    seed: int = 0
    weight_scale: float = 1.0  # every source weight is multiplied by this before converting
    options: tuple[tuple[str, str], ...] = ()  # the module's options (gate, act_layer), as (name, value)

    def __str__(self) -> str:
        options = "".join(f"[{v}]" for _, v in self.options)
        return (f"{self.module}{options} {self.direction} {self.mode} {self.dtype} {self.shape} K={self.num_basis}"
                + (f" seed={self.seed}" if self.seed else "") + (f" x{self.weight_scale:g}" if self.weight_scale != 1 else ""))


@dataclass(frozen=True)
class Result:
    """The worst errors of a case in eps units, and their limits.

    Attributes:
      error: ``max|got - ref| / (eps * max|ref|)``, worst over compared tensors.
      bound_error: ``max|got - ref| / (eps * max bound)``, the bound from
        :mod:`parity.proof.reference` (``bound=True``), worst over compared tensors.
      limit: the limit on ``error`` (float32 at the default weight scale: the design's
        contract), or ``None``.
      bound_limit: the limit on ``bound_error`` (:func:`bound_limit`), every case.
      detail: which framework and tensor gave the worst error.
    """

    case: Case
    error: float
    bound_error: float
    limit: float | None
    bound_limit: float
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.bound_error <= self.bound_limit and (self.limit is None or self.error <= self.limit)


def cases(
    modules: tuple[str, ...] = prcm.MODULES,
    directions: tuple[str, ...] = DIRECTIONS,
    modes: tuple[str, ...] = MODES,
    dtypes: tuple[str, ...] = DEFAULT_DTYPES,
    shapes: tuple[tuple[tuple[int, ...], int], ...] = SHAPES,
    per_row: int | None = None,
    options: Mapping[str, tuple[str, ...]] | None = None,
) -> Iterator[Case]:
    """Every combination, in table order (a row is module x variant x mode x dtype).

    Args:
      modules, directions, modes, dtypes, shapes: what to sweep.
      per_row: take only this many shapes per row, rotating through ``shapes`` from one
        row to the next so that a short sweep still covers every shape.
      options: keep only the variants whose options take these values (``{"gate":
        ("sigmoid",)}``); default every variant of each module (:attr:`prcm.catalog.Entry.variants`).

    ``mean-path`` rows leave out shapes with one spatial position, where the gradient has no
    part through the mean to compare.

    >>> {c.shape for c in cases(modules=("PRCM",), directions=("torch->nnx",), modes=("mean-path",))} & {(1, 32, 1, 1)}
    set()
    >>> list(cases(modules=("PRCM",), modes=("mean-path",), shapes=(((1, 32, 1, 1), 1),)))
    []
    >>> sorted({c.options for c in cases(modules=("PRCM", "ShiftOnlyPRCM"), directions=("torch->nnx",))})
    [(), (('gate', 'hard_sigmoid'),), (('gate', 'sigmoid'),)]
    """
    options = options or {}
    variants = [(module, tuple(v.items())) for module in modules for v in CATALOG[module].variants
                if all(k not in v or v[k] in values for k, values in options.items())]  # fmt: skip
    for r, ((module, variant), mode, dtype) in enumerate(itertools.product(variants, modes, dtypes)):
        row = tuple(s for s in shapes if mode != "mean-path" or math.prod(s[0][2:]) > 1)
        if not row:
            continue
        picked = row if per_row is None else dict.fromkeys(row[(r * per_row + j) % len(row)] for j in range(per_row))
        for direction in directions:  # the same shapes in every direction: they share compiled programs
            for shape, num_basis in picked:
                yield Case(module, direction, mode, dtype, shape, num_basis, options=variant)


@functools.partial(jax.jit, static_argnums=0)
def _nnx_apply(graphdef: nnx.GraphDef, params, rest, x, key):
    return nnx.merge(graphdef, params, rest)(x, deterministic=key is None, rngs=key)


@functools.partial(jax.jit, static_argnums=0)
def _linen_apply(model, variables, x, key):
    return model.apply(variables, x, deterministic=key is None, rng=key)


def _loss(apply, *args):
    *args, cot = args
    y = apply(*args)
    return jnp.sum(y.astype(jnp.promote_types(y.dtype, jnp.float32)) * cot)


@functools.partial(jax.jit, static_argnums=0)
def _nnx_grads(graphdef: nnx.GraphDef, params, rest, x, key, cot):
    loss = lambda params, x: _loss(_nnx_apply.__wrapped__, graphdef, params, rest, x, key, cot)  # noqa: E731
    return jax.grad(loss, argnums=(0, 1))(params, x)


@functools.partial(jax.jit, static_argnums=0)
def _linen_grads(model, variables, x, key, cot):
    loss = lambda params, x: _loss(_linen_apply.__wrapped__, model, {**variables, "params": params}, x, key, cot)  # noqa: E731
    return jax.grad(loss, argnums=(0, 1))(variables["params"], x)


class _Jax:
    """The JAX side of a case, jit-compiled with the module structure as a static argument.

    The NNX module runs through ``nnx.split`` / ``nnx.merge``, the linen module through
    ``apply``; conversions in opposite directions share one compiled program. Parameter
    gradients come back as linen-style variables ``{'params': ...}``, which the converter
    maps to torch names.
    """

    def __init__(self, model: nnx.Module | None = None, linen_model=None, variables=None) -> None:
        if model is not None:
            graphdef, params, rest = nnx.split(model, nnx.Param, ...)
            self.static, self.args = graphdef, (params, rest)
            self._apply, self._grads = _nnx_apply, _nnx_grads
        else:
            self.static, self.args = linen_model, (variables,)
            self._apply, self._grads = _linen_apply, _linen_grads

    def __call__(self, x: jax.Array, key: jax.Array | None) -> jax.Array:
        return self._apply(self.static, *self.args, x, key)

    def grads(self, x: jax.Array, key: jax.Array | None, cot: jax.Array) -> tuple[jax.Array, dict]:
        """Gradients w.r.t. the input and the parameters (as ``{'params': ...}``)."""
        g_params, g_x = self._grads(self.static, *self.args, x, key, cot)
        if isinstance(g_params, nnx.State):
            g_params = nnx.to_pure_dict(g_params)
        return g_x, {"params": g_params}


def _scaled(tree, scale: float):
    return jax.tree.map(lambda v: (v * scale).astype(v.dtype), tree)


def _positive(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``mean-path`` weights: ``|w|`` rescaled to a mean of ``1 / sqrt(size)`` (size: the number
    of entries, ``fan_in * fan_out`` for a matrix), whatever ``weight_scale`` was, so that no sum
    cancels, the sigmoids stay away from saturation and the gradient through the mean stays far
    above the dtype's underflow threshold, forward and backward alike."""
    out = {}
    for k, v in state.items():
        a = v.double().abs()
        out[k] = (a / max(float(a.mean()), 1e-30) / np.sqrt(a.numel())).to(v.dtype)
    return out


def _build(case: Case, twin: Entry, torch_dtype: torch.dtype, np_dtype: np.dtype) -> tuple[torch.nn.Module, _Jax]:
    """Source module with random weights (times ``weight_scale``; :func:`_positive` in
    ``mean-path`` mode), converted into the other framework."""
    channels, options = case.shape[1], dict(case.options)
    positive = case.mode == "mean-path"
    torch.manual_seed(case.seed)
    torch_model = twin.build_torch(channels, case.num_basis, dtype=torch_dtype, **options)
    source, target = case.direction.split("->")
    if source == "torch":
        with torch.no_grad():
            for p in torch_model.parameters():
                p.mul_(case.weight_scale)
        if positive:
            torch_model.load_state_dict(_positive(torch_model.state_dict()))
    if "nnx" in (source, target):
        model = twin.build_nnx(channels, case.num_basis, seed=case.seed + 1, param_dtype=np_dtype, **options)
        if source == "torch":
            torch_to_nnx(torch_model, model)
        else:
            nnx.update(model, _scaled(nnx.state(model, nnx.Param), case.weight_scale))
            if positive:  # the NNX model's own weights, made positive (the converters are exact both ways)
                torch_to_nnx(_positive(torch_state_dict(model, torch_model)), model)
            nnx_to_torch(model, torch_model)
        return torch_model, _Jax(model=model)
    linen_model = twin.build_linen(channels, case.num_basis, param_dtype=np_dtype, **options)
    if source == "torch":
        variables = torch_to_linen(torch_model)
    else:
        x = jnp.zeros((1, *case.shape[2:], channels), np_dtype)
        variables = _scaled(linen_model.init(jax.random.key(case.seed + 1), x, deterministic=True), case.weight_scale)
        if positive:
            variables = torch_to_linen(_positive(torch_state_dict(variables, torch_model)), variables)
        linen_to_torch(variables, torch_model)
    return torch_model, _Jax(linen_model=linen_model, variables=variables)


def _torch_grads(model: torch.nn.Module, x: torch.Tensor, cot: torch.Tensor, mask) -> dict[str, np.ndarray]:
    model.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_(True)
    with mask(model):
        y = model(x)
    (y.to(cot.dtype) * cot).sum().backward()
    grads = {"x": to_numpy(x.grad)}
    grads.update({name: to_numpy(p.grad) for name, p in model.named_parameters()})
    return grads


def _mean_path(a: np.ndarray) -> np.ndarray:
    """The last half of the spatial positions, where ``grad`` mode zeroes the cotangent: there
    the input gradient is the gradient through the spatial mean alone (``d_ctx / n``),
    checked on its own scale, since next to ``cot * scale`` it is too small to see in low
    precision. Empty for a single spatial position."""
    flat = a.reshape(*a.shape[:2], -1)
    return flat[:, :, flat.shape[-1] - flat.shape[-1] // 2 :]


def run_case(case: Case) -> Result:
    """Run one case; the errors are the worst of both frameworks over every compared tensor."""
    if case.dtype == "float64" and not jax.config.read("jax_enable_x64"):
        raise ValueError("float64 parity needs JAX's x64 mode: set JAX_ENABLE_X64=1 "
                         "(python -m parity --dtypes float64 turns it on itself)")  # fmt: skip
    twin = CATALOG[case.module]
    torch_dtype, np_dtype = DTYPES[case.dtype]
    eps = float(ml_dtypes.finfo(np_dtype).eps)
    rng = np.random.default_rng(case.seed)
    x = rng.standard_normal(case.shape)
    x = (np.abs(x) if case.mode == "mean-path" else x).astype(np_dtype)
    x_last = jnp.asarray(np.moveaxis(x, 1, -1))
    with pinned_precision():
        torch_model, jax_side = _build(case, twin, torch_dtype, np_dtype)
        params = {k: to_numpy(v) for k, v in torch_model.state_dict().items()}
        train = case.mode != "eval"
        torch_model.train(train)
        rate = torch_model.dropout_rate if twin.dropout else 0.0
        key = jax.random.key(case.seed + 2) if train else None
        keep = np.asarray(keep_mask(key, rate, (case.shape[0], case.num_basis))) if rate > 0 and train else None
        draws = 1  # a row whose mask drops every coefficient has no gradient through the mean: draw again
        while case.mode == "mean-path" and keep is not None and not keep.any(axis=1).all():
            if draws == 64:
                raise ValueError(f"mean-path: no dropout key of 64 keeps a coefficient in every row of a {keep.shape} "
                                 f"mask at rate {rate}; use a smaller batch or more basis functions")  # fmt: skip
            key, draws = jax.random.fold_in(key, 1), draws + 1
            keep = np.asarray(keep_mask(key, rate, keep.shape))

        grad = case.mode in GRAD_MODES
        limit = bound_limit(case.dtype, case.shape, case.num_basis, grad)
        reference = dict(kind=twin.kind, keep=keep, rate=rate, **dict(case.options))

        def mask(model: torch.nn.Module):
            return shared_dropout_mask(model, keep) if keep is not None else contextlib.nullcontext()

        if case.mode in ("eval", "train"):
            refs = {"y": forward(x, params, **reference)}
            bounds = {"y": forward(x, params, **reference, bound=True, kink=eps * limit)}
            with torch.no_grad(), mask(torch_model):
                got_torch = {"y": to_numpy(torch_model(to_torch(x)))}
            got_jax = {"y": np.moveaxis(np.asarray(jax_side(x_last, key)), -1, 1)}
        else:
            cot = rng.standard_normal(case.shape).astype(np.promote_types(np_dtype, np.float32))
            if case.mode == "mean-path":  # positive, and / sqrt(n) so that no sum of n positive terms overflows float16
                cot = (np.abs(cot) / np.sqrt(np.prod(case.shape[2:]))).astype(cot.dtype)
            _mean_path(cot)[...] = 0.0
            refs = backward(x, params, cot, **reference)
            bounds = backward(x, params, cot, **reference, bound=True, kink=eps * limit)
            got_torch = _torch_grads(torch_model, to_torch(x), torch.from_numpy(cot), mask)
            g_x, g_vars = jax_side.grads(x_last, key, jnp.asarray(np.moveaxis(cot, 1, -1)))
            got_jax = {k: to_numpy(v) for k, v in torch_state_dict(g_vars, torch_model).items()}
            got_jax["x"] = np.moveaxis(np.asarray(g_x), -1, 1)
            for grads in (refs, bounds, got_torch, got_jax):
                grads["x (mean path)"] = _mean_path(grads["x"])
    # Underflow: a result below the dtype's smallest normal number may be flushed to zero, an
    # absolute error of up to `tiny` per rounding, which relative bounds cannot see.
    floor = float(ml_dtypes.finfo(np_dtype).tiny) / eps
    errors = {}
    for side, got in (("torch", got_torch), ("jax", got_jax)):
        for name, ref in refs.items():
            scale = max(float(np.max(bounds[name][np.isfinite(bounds[name])], initial=0.0)), floor)
            errors[f"{side} {name}"] = (error_in_eps(got[name], ref, eps), error_in_eps(got[name], ref, eps, scale))
    which = max(errors, key=lambda k: (errors[k][1], errors[k][0]))
    return Result(
        case,
        error=max(e[0] for e in errors.values()),
        bound_error=errors[which][1],
        limit=REF_LIMITS[case.dtype][grad] if case.dtype in REF_LIMITS and case.weight_scale == 1 else None,
        bound_limit=limit,
        detail=which,
    )
