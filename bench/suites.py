"""The seed's study, suite by suite, as points measured on every backend.

A :class:`Point` is one configuration (module or operation, shape, variant); the harness
prepares it on each backend, checks the output against torch-eager with the parity
tolerance (a wrong kernel is never timed), times it and emits one flat :class:`Record`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as TF
from flax import nnx

import prcm
from prcm.catalog import CATALOG
from bench.backends import Device, Runnable, prepare, unavailable
from bench.timing import Timed, measure_many
from parity.arrays import to_numpy
from parity.convert import torch_to_nnx
from parity.reference import error_in_eps

__all__ = ["SUITES", "Point", "Lane", "Record", "Settings", "points", "lanes", "Runner", "param_records", "COMPONENTS", "LOOP"]

SUITES: tuple[str, ...] = (
    "params", "latency", "components", "channels", "resolution", "num_basis", "batch", "fusion", "roofline", "dispatch",
)  # fmt: skip
#: The seed's point: (batch, channels, resolution, num_basis).
SEED_POINT = (1, 64, 64, 8)
#: The seed's eight operations, timed alone in the components suite.
COMPONENTS: tuple[str, ...] = (
    "Global Avg Pool", "Basis Projection", "Linear", "Sigmoid", "Unsqueeze x2", "Scale (x*alpha)",
    "Shift (x+beta)", "Affine (x*alpha+beta)",
)  # fmt: skip
#: Applications of the module inside one call for the roofline's ``loop`` variant.
LOOP = 4
#: Parity tolerance for the check against torch-eager, in float32 eps x max|y| (twice the
#: forward limit of :mod:`parity.check`: each side may be that far from the reference).
CHECK_EPS = 16.0
SWEEP_MODULES = ("PRCM", "AffinePRCM")


@dataclass
class Record:
    """One flat row of ``results.json``; fields that do not apply are ``None``."""

    suite: str
    backend: str | None
    device: str
    module: str | None = None
    op: str | None = None
    variant: str | None = None
    path: str | None = None
    parameter: str | None = None
    batch: int | None = None
    channels: int | None = None
    resolution: int | None = None
    num_basis: int | None = None
    median_ms: float | None = None
    p10_ms: float | None = None
    p90_ms: float | None = None
    repeat: int | None = None
    params: int | None = None
    kernels: int | None = None
    kernel_detail: str | None = None
    bytes: int | None = None
    gbps: float | None = None
    copy_fraction: float | None = None
    compile_s: float | None = None
    check_eps: float | None = None
    status: str = "ok"
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Point:
    """One configuration; every lane of it (item x variant x backend x path) is timed together.

    Attributes:
      items: module class names, operations of :data:`COMPONENTS`, or ``"copy"``.
      variants: roofline variants: ``fresh`` (a new output each call), ``donated`` (jax-jit:
        the input's buffer becomes the output, no allocation), ``loop`` (the module applied
        :data:`LOOP` times in one call, timed per application; jax-jit donates the input so
        the loop carry needs neither a copy nor an allocation, as inside a jitted model).
    """

    suite: str
    batch: int
    channels: int
    resolution: int
    num_basis: int = 8
    items: tuple[str, ...] = ()
    variants: tuple[str, ...] = ("fresh",)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.channels, self.resolution, self.resolution)


@dataclass(frozen=True)
class Lane:
    """One thing timed within a point: an item in a variant on a backend (and dispatch path)."""

    item: str
    backend: str
    variant: str = "fresh"
    path: str | None = None


@dataclass(frozen=True)
class Settings:
    """What to run and how long."""

    quick: bool = False
    warmup: int | None = None
    repeat: int | None = None

    @property
    def sizes(self) -> dict[str, tuple[int, ...]]:
        if self.quick:
            return {"channels": (24, 64, 192), "resolution": (16, 64, 256), "num_basis": (4, 32),
                    "batch": (1, 16), "roofline": (4, 16)}  # fmt: skip
        return {"channels": (24, 48, 64, 96, 128, 192), "resolution": (16, 32, 64, 128, 256),
                "num_basis": (4, 8, 16, 32), "batch": (1, 2, 4, 8, 16), "roofline": (1, 4, 16)}  # fmt: skip

    @property
    def timing(self) -> dict[str, float | int]:
        """Warm-up calls, the most timed calls, and the time budget per point."""
        warmup, repeat, budget = (3, 30, 0.25) if self.quick else (20, 300, 2.0)
        return {"warmup": self.warmup if self.warmup is not None else warmup,
                "repeat": self.repeat if self.repeat is not None else repeat,
                "budget_s": budget if self.repeat is None else None}  # fmt: skip


def points(suite: str, settings: Settings) -> list[Point]:
    """The points of one suite, in report order (``params`` has none: it is counted)."""
    b, c, r, k = SEED_POINT
    sizes = settings.sizes
    if suite in ("latency", "fusion"):
        return [Point(suite, b, c, r, k, items=prcm.MODULES)]
    if suite == "components":
        return [Point(suite, b, c, r, k, items=(*COMPONENTS, *SWEEP_MODULES))]
    if suite == "channels":
        return [Point(suite, b, ch, r, k, items=(*SWEEP_MODULES, "SEModule")) for ch in sizes["channels"]]
    if suite == "resolution":
        return [Point(suite, b, c, res, k, items=SWEEP_MODULES) for res in sizes["resolution"]]
    if suite == "num_basis":
        return [Point(suite, b, c, r, nb, items=SWEEP_MODULES) for nb in sizes["num_basis"]]
    if suite == "batch":
        return [Point(suite, bs, c, r, k, items=SWEEP_MODULES) for bs in sizes["batch"]]
    if suite == "roofline":  # the seed point, then large tensors
        shapes = [(b, r)] + [(bs, 256) for bs in sizes["roofline"]]
        return [Point(suite, bs, c, res, k, items=("copy", *SWEEP_MODULES), variants=("fresh", "loop", "donated"))
                for bs, res in shapes]  # fmt: skip
    if suite == "dispatch":
        return [Point(suite, b, c, res, k, items=SWEEP_MODULES) for res in (8, r)]
    if suite == "params":
        return []
    raise ValueError(f"unknown suite {suite!r}; choose from {', '.join(SUITES)}")


DISPATCH_PATHS = ("compiled", "jax.jit", "jax.jit(nnx.State)", "nnx.jit", "nnx.cached_partial")


def lanes(point: Point, backends: tuple[str, ...]) -> list[Lane]:
    """Every lane of a point for the selected backends; one record each."""
    out = []
    for item in point.items:
        variants = ("copy",) if item == "copy" else point.variants
        for variant in variants:
            for backend in backends:
                if point.suite == "dispatch":
                    out += [Lane(item, backend, variant, p) for p in DISPATCH_PATHS if backend == "jax-jit"]
                elif variant == "donated" and backend != "jax-jit" or variant == "copy" and backend == "torch-compile":
                    continue
                else:
                    out.append(Lane(item, backend, variant))
    return out


# -- workloads ------------------------------------------------------------------------------


def _inputs(point: Point) -> dict[str, np.ndarray]:
    """Random inputs, channels-first, shared by every lane of a point."""
    rng = np.random.default_rng(0)
    b, c, r, k = point.batch, point.channels, point.resolution, point.num_basis
    return {
        "x": rng.standard_normal((b, c, r, r), dtype=np.float32),
        "ctx": rng.standard_normal((b, c), dtype=np.float32),
        "coeff": rng.standard_normal((b, k), dtype=np.float32),
        "alpha": rng.standard_normal((b, c), dtype=np.float32),
        "beta": rng.standard_normal((b, c), dtype=np.float32),
        "basis": rng.standard_normal((k, c), dtype=np.float32),
        "weight": rng.standard_normal((c, k), dtype=np.float32) / math.sqrt(k),
    }


def _op_functions(op: str) -> tuple[Callable, Callable, tuple[str, ...]]:
    """(torch fn, jax fn, argument names) of one of the seed's eight operations."""
    table: dict[str, tuple[Callable, Callable, tuple[str, ...]]] = {
        "Global Avg Pool": (lambda x: x.mean(dim=[2, 3]), lambda x: jnp.mean(x, axis=(1, 2)), ("x",)),
        "Basis Projection": (lambda ctx, basis: ctx @ basis.t(), lambda ctx, basis: ctx @ basis.T, ("ctx", "basis")),
        "Linear": (lambda coeff, w: TF.linear(coeff, w), lambda coeff, kernel: coeff @ kernel, ("coeff", "weight")),
        "Sigmoid": (lambda coeff: coeff.sigmoid(), jax.nn.sigmoid, ("coeff",)),
        "Unsqueeze x2": (lambda coeff: coeff.unsqueeze(-1).unsqueeze(-1), lambda coeff: coeff[:, None, None, :], ("coeff",)),
        "Scale (x*alpha)": (lambda x, a: x * a, lambda x, a: x * a, ("x", "alpha")),
        "Shift (x+beta)": (lambda x, b: x + b, lambda x, b: x + b, ("x", "beta")),
        "Affine (x*alpha+beta)": (lambda x, a, b: x * a + b, lambda x, a, b: x * a + b, ("x", "alpha", "beta")),
    }
    return table[op]


class _Arrays:
    """The point's inputs on the device, in each framework's layout, converted once."""

    def __init__(self, inputs: dict[str, np.ndarray], device: Device) -> None:
        self.inputs, self.device = inputs, device
        self._torch: dict[str, torch.Tensor] = {}
        self._jax: dict[str, jax.Array] = {}

    def torch(self, name: str) -> torch.Tensor:
        if name not in self._torch:
            value = self.inputs[name]
            value = value[:, :, None, None] if name in ("alpha", "beta") else value
            self._torch[name] = torch.from_numpy(value).to(self.device.torch)
        return self._torch[name]

    def jax(self, name: str) -> jax.Array:
        if name not in self._jax:
            value = self.inputs[name]
            if name == "x":
                value = np.moveaxis(value, 1, -1)
            elif name in ("alpha", "beta"):
                value = value[:, None, None, :]
            elif name == "weight":
                value = value.T  # torch (out, in) -> Flax kernel (in, out)
            self._jax[name] = jax.device_put(np.ascontiguousarray(value), self.device.jax)
        return self._jax[name]


@dataclass
class _Workload:
    """A point turned into per-backend functions."""

    torch_fn: Callable
    torch_args: tuple
    jax_fn: Callable
    jax_args: tuple
    per_call: int = 1  # applications per call (loop variant)
    donate: int | None = None
    nnx_model: nnx.Module | None = None
    bytes: int | None = None


def _module_workload(name: str, variant: str, point: Point, arrays: _Arrays) -> _Workload:
    entry = CATALOG[name]
    torch.manual_seed(0)
    module = entry.build_torch(point.channels, point.num_basis).eval()
    model = torch_to_nnx(module, entry.build_nnx(point.channels, point.num_basis))
    model.eval()
    module = module.to(arrays.device.torch)
    # One nnx.split; the parameters travel as a flat tuple of arrays (cheap to dispatch), the
    # rest (dropout RNG state, unused in eval) is closed over.
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    leaves, treedef = jax.tree.flatten(params)
    leaves = tuple(jax.device_put(leaves, arrays.device.jax))

    def apply(leaves, x):
        return nnx.merge(graphdef, jax.tree.unflatten(treedef, leaves), rest)(x, deterministic=True)

    torch_fn, jax_fn, per_call = module, apply, 1
    if variant == "loop":
        per_call = LOOP

        def torch_fn(x):
            for _ in range(LOOP):
                x = module(x)
            return x

        def jax_fn(leaves, x):
            return jax.lax.fori_loop(0, LOOP, lambda i, y: apply(leaves, y), x)

    donate = 1 if variant in ("donated", "loop") else None  # the loop carry reuses the donated input, no copy
    return _Workload(torch_fn, (arrays.torch("x"),), jax_fn, (leaves, arrays.jax("x")), per_call, donate, model,
                     3 * arrays.inputs["x"].nbytes)  # fmt: skip


def _op_workload(name: str, arrays: _Arrays) -> _Workload:
    if name == "copy":  # read + write, into a preallocated (torch) or donated (JAX) buffer
        out = torch.empty_like(arrays.torch("x"))
        return _Workload(lambda x: torch.neg(x, out=out), (arrays.torch("x"),), jnp.negative, (arrays.jax("x"),),
                         donate=0, bytes=2 * arrays.inputs["x"].nbytes)  # fmt: skip
    torch_fn, jax_fn, names = _op_functions(name)
    return _Workload(torch_fn, tuple(arrays.torch(n) for n in names), jax_fn, tuple(arrays.jax(n) for n in names))


def _workload(item: str, variant: str, point: Point, arrays: _Arrays) -> _Workload:
    if item in prcm.MODULES:
        return _module_workload(item, variant, point, arrays)
    return _op_workload(item, arrays)


# -- the harness ----------------------------------------------------------------------------


def _dispatch_runnable(path: str, work: _Workload, device: Device) -> Runnable:
    """The jax-jit module called through one of the dispatch paths users choose between."""
    model = work.nnx_model
    leaves, x = work.jax_args
    if path == "compiled":  # what the jax-jit backend uses
        compiled = jax.jit(work.jax_fn).lower(leaves, x).compile()
        run = lambda _=None: compiled(leaves, x)  # noqa: E731
    elif path == "jax.jit":
        jitted = jax.jit(work.jax_fn)
        run = lambda _=None: jitted(leaves, x)  # noqa: E731
    elif path == "jax.jit(nnx.State)":
        graphdef, state = nnx.split(model)
        state = jax.device_put(state, device.jax)
        jitted = jax.jit(lambda state, x: nnx.merge(graphdef, state)(x, deterministic=True))
        run = lambda _=None: jitted(state, x)  # noqa: E731
    elif path == "nnx.jit":
        call = nnx.jit(lambda m, x: m(x, deterministic=True))
        run = lambda _=None: call(model, x)  # noqa: E731
    else:
        call = nnx.cached_partial(nnx.jit(lambda m, x: m(x, deterministic=True)), model)
        run = lambda _=None: call(x)  # noqa: E731
    jax.block_until_ready(run())  # compile outside the timed loop
    return Runnable(run, jax.block_until_ready, lambda: np.moveaxis(np.asarray(run()), -1, 1), None, None, path)


@dataclass
class Runner:
    """Prepares, checks and times points; a point measured before is not measured again.

    All lanes of a point (modules or operations x variants x backends x dispatch paths) are
    timed interleaved, so their ratios, AffinePRCM / PRCM and jax-jit / torch-eager alike,
    come from the same moments of a noisy machine.
    """

    device: Device
    backends: tuple[str, ...]
    settings: Settings
    _cache: dict[tuple, Record] = field(default_factory=dict)

    def _record(self, point: Point, lane: Lane) -> Record:
        module = lane.item if lane.item in prcm.MODULES else None
        return Record(
            suite=point.suite, backend=lane.backend, device=self.device.name, module=module,
            op=None if module else lane.item, variant=lane.variant if point.suite == "roofline" else None,
            path=lane.path, batch=point.batch, channels=point.channels, resolution=point.resolution,
            num_basis=point.num_basis if module and CATALOG[module].has_basis else None,
        )  # fmt: skip

    @staticmethod
    def _key(point: Point, lane: Lane) -> tuple:
        return (lane, point.shape, point.num_basis, point.suite == "dispatch")

    def run(self, point: Point) -> list[Record]:
        """One record per lane; unavailable, mismatching or failing lanes say why."""
        todo = lanes(point, self.backends)
        if all(self._key(point, lane) in self._cache for lane in todo):
            return [dataclasses.replace(self._cache[self._key(point, lane)], suite=point.suite) for lane in todo]
        records = {lane: self._record(point, lane) for lane in todo}
        arrays = _Arrays(_inputs(point), self.device)
        works: dict[tuple[str, str], _Workload] = {}
        references: dict[tuple[str, str], np.ndarray] = {}
        runnables: dict[Lane, Runnable] = {}
        for lane, record in records.items():
            reason = unavailable(lane.backend, self.device)
            if reason:
                record.status, record.reason = "unavailable", reason
                continue
            try:
                which = (lane.item, lane.variant)
                if which not in works:
                    works[which] = _workload(lane.item, lane.variant, point, arrays)
                    work = works[which]
                    with torch.no_grad():  # the torch-eager output, computed once per workload
                        references[which] = to_numpy(work.torch_fn(*work.torch_args))
                runnable = self._prepare(lane, works[which])
                record.compile_s, record.kernels, record.kernel_detail = runnable.compile_s, runnable.kernels, runnable.detail
                record.check_eps = error_in_eps(runnable.output(), references[which], float(np.finfo(np.float32).eps))
            except Exception as err:  # one failing lane must not stop the study
                record.status, record.reason = "error", f"{type(err).__name__}: {(str(err).splitlines() or [''])[0][:300]}"
                continue
            if record.check_eps <= CHECK_EPS * works[which].per_call:
                runnables[lane] = runnable
            else:
                record.status = "mismatch"
                record.reason = f"output differs from torch-eager by {record.check_eps:.3g} eps x max|y|; not timed"
        timed = {lane: Timed(r.run, r.sync, r.setup) for lane, r in runnables.items()}
        timings = measure_many(timed, group=lambda lane: lane.backend, **self.settings.timing) if timed else {}
        for lane, timing in timings.items():
            record, work = records[lane], works[(lane.item, lane.variant)]
            record.median_ms, record.p10_ms, record.p90_ms = (
                v / work.per_call for v in (timing.median_ms, timing.p10_ms, timing.p90_ms)
            )
            record.repeat = timing.repeat
            if point.suite == "roofline":
                record.bytes = work.bytes
                record.gbps = work.bytes / (record.median_ms * 1e-3) / 1e9
        for lane, record in records.items():
            self._cache[self._key(point, lane)] = record
        return list(records.values())

    def _prepare(self, lane: Lane, work: _Workload) -> Runnable:
        if lane.path is not None:
            return _dispatch_runnable(lane.path, work, self.device)
        if lane.backend == "jax-jit":
            return prepare(lane.backend, work.jax_fn, work.jax_args, self.device, channels_last=True, donate=work.donate)
        return prepare(lane.backend, work.torch_fn, work.torch_args, self.device)


def param_records(device: Device, backends: tuple[str, ...]) -> list[Record]:
    """The seed's parameter table at C=64, K=8 with its breakdown, counted in each framework."""
    _, channels, _, num_basis = SEED_POINT
    records = []
    for name in prcm.MODULES:
        entry = CATALOG[name]
        torch_module = entry.build_torch(channels, num_basis)
        counts = {"torch": dict((k, p.numel()) for k, p in torch_module.named_parameters())}
        flat = nnx.to_flat_state(nnx.state(entry.build_nnx(channels, num_basis), nnx.Param))
        counts["jax"] = {".".join(map(str, path)): int(np.prod(v[...].shape)) for path, v in flat}
        for backend in backends:
            side = counts["jax" if backend == "jax-jit" else "torch"]
            base = dict(suite="params", backend=backend, device=device.name, module=name, channels=channels,
                        num_basis=num_basis if entry.has_basis else None)  # fmt: skip
            records.append(Record(**base, params=sum(side.values())))
            records.extend(Record(**base, parameter=k, params=v) for k, v in side.items())
    return records
