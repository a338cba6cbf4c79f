"""The one runner every suite goes through: prepare each lane of a point on its backend,
check its output against torch-eager (a wrong kernel is never timed), time all lanes
interleaved until the point's intervals are narrow enough, and turn the timings into
records (with each round's median, for later comparisons of runs) and comparisons with
:mod:`bench.stats`. Several sessions of a point (one per process) merge into one record per
lane (:func:`merge_sessions`).
"""

from __future__ import annotations

import dataclasses
import gc
import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx

from bench import stats
from bench.backends import Device, Runnable, prepare, unavailable
from bench.fusion import hlo_full_size_passes, inductor_full_size_passes
from bench.plan import COPIES, FRAMEWORK, Lane, Point, Settings, buffers, lanes, pairs
from bench.schema import Comparison, Record
from bench.threads import release_memory
from bench.timing import OtherLoad, Timed, measure_many
from bench.workloads import Arrays, Workload, build, inputs, network_unavailable
from prcm.catalog import CATALOG
from prcm.cli import error_line

__all__ = ["Runner", "PointResult", "compare", "comparisons", "merge_sessions", "threads_comparisons", "param_records",
           "working_set"]  # fmt: skip


@dataclass
class PointResult:
    """What one point gave: a record per lane, its comparisons, and the timings behind them."""

    records: list[Record]
    comparisons: list[Comparison]
    samples: dict[Lane, np.ndarray] = field(default_factory=dict)
    lanes: list[Lane] = field(default_factory=list)  # the lane of each record
    sessions: dict[Lane, np.ndarray] = field(default_factory=dict)  # the process of each round, when several


def compare(kind: str, samples: dict[Lane, np.ndarray], num: Lane, den: tuple[Lane, ...], **kw) -> stats.Ratio:
    """The paired ratio of one entry of :func:`bench.plan.pairs`."""
    if len(den) == 1:
        return stats.paired_ratio(samples[num], samples[den[0]], **kw)
    total = sum(stats.round_medians(samples[d]) for d in den)[:, None]
    return stats.paired_ratio(samples[num], total, **kw)


def comparisons(point: Point, samples: dict[Lane, np.ndarray], threads: int | None,
                sessions: dict[Lane, np.ndarray] | None = None) -> list[Comparison]:
    """Every ratio :func:`bench.plan.pairs` names for a point's timings, with its interval.

    Args:
      point: the point the lanes were timed at.
      samples: each lane's ``(rounds, calls)`` timings, rounds aligned across lanes.
      threads: the thread setting, carried into each comparison.
      sessions: for a point timed in several processes, each lane's process per round.
    """
    sessions = sessions or {}
    return [_comparison(point, kind, num, den, compare(kind, samples, num, den, sessions=sessions.get(num)), threads)
            for kind, num, den in pairs(point, samples)]  # fmt: skip


def _comparison(point: Point, kind: str, num: Lane, den: tuple[Lane, ...], ratio: stats.Ratio, threads: int | None) -> Comparison:
    module = num.item if kind in ("backend", "path", "parts", "threads", "layout") else None
    backend = num.backend if kind in ("module", "parts", "path", "threads", "layout") else None
    numerator = {"backend": num.backend, "module": num.item, "parts": num.item, "path": num.path, "layout": num.layout}.get(kind, "")
    denominator = {"backend": den[0].backend, "module": den[0].item, "parts": "sum of parts", "path": "compiled",
                   "layout": den[0].layout}.get(kind, "")  # fmt: skip
    entry = CATALOG.get(num.item)
    workload = point.workload if num.item in CATALOG or point.network else "op"
    return Comparison.from_ratio(
        ratio, suite=point.suite, kind=kind, module=module, backend=backend, numerator=numerator, denominator=denominator,
        batch=point.batch, channels=point.channels, resolution=point.resolution,
        num_basis=point.num_basis if (entry is None or entry.has_basis) and not point.network else None, threads=threads,
        workload=workload, variant=num.variant if point.suite == "roofline" else None, network=point.network, layout=num.layout,
    )  # fmt: skip


def _rounds(record: Record, rounds: np.ndarray, sessions: np.ndarray) -> None:
    """Keep each round's median (ms, five significant digits) and its session in the record."""
    record.round_ms = [float(f"{v:.5g}") for v in rounds]
    record.round_sessions = [int(s) for s in sessions]
    record.sessions = int(np.unique(sessions).size)


def merge_sessions(results: list[PointResult], point: Point, threads: int | None, *, compare: bool = True) -> PointResult:
    """One point timed in several processes (sessions) as one result: each lane's calls
    pooled (median, p10, p90, rounds), its timings kept per round with their session, and
    (``compare``) every ratio taken over the sessions (:func:`bench.stats.paired_ratio`). A
    lane that did not run in every session keeps the first failing session's record and is
    not compared.
    """
    if len(results) == 1:
        one = results[0]
        return PointResult(one.records, comparisons(point, one.samples, threads) if compare else [], one.samples, one.lanes)
    records, samples, sessions = [], {}, {}
    for lane, *records_of in zip(results[0].lanes, *(r.records for r in results), strict=True):
        runs = [r.samples.get(lane) for r in results]
        if any(run is None for run in runs):
            records.append(next((r for r in records_of if r.status != "ok"), records_of[0]))
            continue
        calls = np.concatenate([np.ravel(run) for run in runs])
        rounds = np.concatenate([stats.round_medians(run) for run in runs])
        loads = [r.load for r in records_of if r.load is not None]
        record = dataclasses.replace(records_of[0])
        record.median_ms, record.p10_ms, record.p90_ms = (float(np.percentile(calls, q)) for q in (50, 10, 90))
        record.rounds, record.repeat = int(rounds.size), sum(r.repeat or 0 for r in records_of)
        record.load = float(np.mean(loads)) if loads else None
        faults = [r.faults_per_call for r in records_of if r.faults_per_call is not None]
        record.faults_per_call = float(np.median(faults)) if faults else None
        record.spread = stats.spread(rounds)
        record.flag = stats.stability(rounds[:, None], load=record.load)
        if record.check_eps is not None:
            record.check_eps = max(r.check_eps for r in records_of)
        if compiled := [r.compile_s for r in records_of if r.compile_s is not None]:
            record.compile_s = max(compiled)  # the run's first compile: later processes load the compilers' caches
        if record.bytes:
            record.gbps = record.bytes / (record.median_ms * 1e-3) / 1e9
        samples[lane] = rounds[:, None]
        sessions[lane] = np.concatenate([np.full(run.shape[0], k) for k, run in enumerate(runs)])
        _rounds(record, rounds, sessions[lane])
        records.append(record)
    found = comparisons(point, samples, threads, sessions) if compare else []
    return PointResult(records, found, samples, results[0].lanes, sessions)


def threads_comparisons(results: dict[int, PointResult], point: Point) -> list[Comparison]:
    """Each lane at every thread setting against itself at the most threads (timed apart:
    unpaired; over sessions where the point had several). Dispatch paths are left out."""
    most = max(results)
    out = []
    for threads, result in sorted(results.items()):
        if threads == most:
            continue
        for lane, samples in result.samples.items():
            if lane in results[most].samples and lane.path is None:
                ratio = stats.unpaired_ratio(samples, results[most].samples[lane], sessions_a=result.sessions.get(lane),
                                             sessions_b=results[most].sessions.get(lane))  # fmt: skip
                c = _comparison(point, "threads", lane, (lane,), ratio, None)
                c.numerator, c.denominator, c.paired = _plural(threads), _plural(most), False
                out.append(c)
    return out


def _plural(threads: int) -> str:
    return f"{threads} thread" + ("s" if threads > 1 else "")


def working_set(point: Point, lane: Lane, x_bytes: int) -> int:
    """The bytes of the full-size buffers one call touches: a copy's (:data:`~bench.plan.COPIES`),
    a forward block's (:func:`~bench.plan.buffers`), a training step's x, cot and input
    gradient (and y for ``backward``)."""
    if lane.item in COPIES:
        return COPIES[lane.item] * x_bytes
    if point.workload in ("train", "backward"):
        return (3 if point.workload == "train" else 4) * x_bytes
    return buffers(lane.variant, lane.backend) * x_bytes


def _dispatch_runnable(path: str, work: Workload, device: Device) -> Runnable:
    """The jax-jit module called through one of the dispatch paths users choose between."""
    model = work.nnx_model
    call = work.call("jax-jit")
    leaves, x = call.args
    if path == "compiled":  # what the jax-jit backend uses
        compiled = jax.jit(call.fn).lower(leaves, x).compile()
        run = lambda _=None: compiled(leaves, x)  # noqa: E731
    elif path == "jax.jit":
        jitted = jax.jit(call.fn)
        run = lambda _=None: jitted(leaves, x)  # noqa: E731
    elif path == "jax.jit(nnx.State)":
        graphdef, state = nnx.split(model)
        state = jax.device_put(state, device.jax)
        jitted = jax.jit(lambda state, x: nnx.merge(graphdef, state)(x, deterministic=True))
        run = lambda _=None: jitted(state, x)  # noqa: E731
    elif path == "nnx.jit":
        step = nnx.jit(lambda m, x: m(x, deterministic=True))
        run = lambda _=None: step(model, x)  # noqa: E731
    else:
        step = nnx.cached_partial(nnx.jit(lambda m, x: m(x, deterministic=True)), model)
        run = lambda _=None: step(x)  # noqa: E731
    jax.block_until_ready(run())  # compile outside the timed loop
    return Runnable(run, jax.block_until_ready, lambda: call.out(run()), None, None, path)


def _refresher(calls: list, works: list[Workload]) -> Callable[[], None]:
    """Before each round, fresh copies of everything the lanes compute with: the floating
    arrays among the calls' arguments (one copy per array, shared by every lane that uses
    it), the torch modules' parameters and buffers and the NNX models' parameters, the
    previous round's kept alive so that the new ones land elsewhere. Where a buffer lies (its
    alignment, its neighbours) moves one implementation's time by several percent (an eager
    AffinePRCM call: 0.128 to 0.136 ms from one set of parameter copies to the next); that
    is fixed for a whole run unless it changes between rounds, so varying it is what lets a
    run's intervals cover the next run's answer."""
    kept: list = []

    def fresh(a: Any, copies: dict[int, Any]) -> Any:
        if type(a) in (tuple, list):
            return type(a)(fresh(v, copies) for v in a)
        if type(a) is dict:
            return {k: fresh(v, copies) for k, v in a.items()}
        floating = isinstance(a, torch.Tensor) and a.is_floating_point() or (
            isinstance(a, jax.Array) and jnp.issubdtype(a.dtype, jnp.floating))
        if not floating:
            return a
        if id(a) not in copies:
            copies[id(a)] = (a, a.detach().clone().requires_grad_(a.requires_grad) if isinstance(a, torch.Tensor)
                                else jnp.array(a, copy=True))  # fmt: skip
        return copies[id(a)][1]

    def refresh() -> None:
        copies: dict[int, Any] = {}
        for call in calls:
            call.args = fresh(call.args, copies)
        old = [a for a, _ in copies.values()]
        for work in works:
            for module in work.torch_modules:
                for t in (*module.parameters(), *module.buffers()):
                    old.append(t.data)
                    t.data = t.data.clone()
            if work.nnx_model is not None:
                params = nnx.state(work.nnx_model, nnx.Param)  # live Variables: keep their arrays
                old.extend(jax.tree.leaves(params))
                nnx.update(work.nnx_model, jax.tree.map(lambda a: jnp.array(a, copy=True), params))
        kept[:] = old  # the previous round's buffers live on while the next round's are made

    return refresh


def _release_compiled() -> None:
    """Drop what compiled the point just finished and hand its memory back: every workload is
    built afresh (new closures, new modules), so nothing compiled for one point serves the
    next, and torch.compile's and JAX's caches would otherwise keep every point's graphs,
    modules and buffers alive for the rest of the run; then the freed heap goes back to the
    OS (:func:`bench.threads.release_memory`). Without both, a full run ran out of 24 GiB with
    three sessions per setting."""
    torch._dynamo.reset()
    jax.clear_caches()
    gc.collect()
    release_memory()


@dataclass
class Runner:
    """Prepares, checks and times points; lanes measured together before are not measured again.

    All lanes of a point are timed interleaved (:func:`bench.timing.measure_many`), so their
    ratios come from the same moments of a noisy machine; the timing of a point goes on (up
    to the schedule's cap) until every interval of :func:`pairs` is narrower than
    ``settings.target``.
    """

    device: Device
    backends: tuple[str, ...]
    settings: Settings
    threads: int | None = None
    _cache: dict[tuple, tuple[Record, np.ndarray | None, int]] = field(default_factory=dict)
    _measurements: itertools.count = field(default_factory=itertools.count)

    def _record(self, point: Point, lane: Lane) -> Record:
        entry = CATALOG.get(lane.item)
        module = entry is not None or point.network is not None
        if point.network:
            entry = None
        return Record(
            suite=point.suite, backend=lane.backend, device=self.device.name, module=lane.item if module else None,
            network=point.network, op=None if module else lane.item, workload=point.workload if module else "op",
            variant=lane.variant if point.suite == "roofline" or lane.variant == "copy" else None, layout=lane.layout,
            path=lane.path, threads=self.threads if point.timed else None, batch=point.batch, channels=point.channels,
            resolution=point.resolution, num_basis=point.num_basis if entry and entry.has_basis else None,
        )  # fmt: skip

    @staticmethod
    def _key(point: Point, lane: Lane) -> tuple:
        return (lane, point.shape, point.num_basis, point.workload, point.timed, point.network)

    def _cached(self, point: Point, todo: list[Lane], compare: bool) -> PointResult | None:
        hits = [self._cache.get(self._key(point, lane)) for lane in todo]
        if not all(hits) or len({h[2] for h in hits}) != 1:  # all measured together, or measure again
            return None
        records = [dataclasses.replace(h[0], suite=point.suite) for h in hits]
        samples = {lane: h[1] for lane, h in zip(todo, hits) if h[1] is not None}
        return PointResult(records, comparisons(point, samples, self.threads) if compare else [], samples, list(todo))

    def _stop(self, point: Point, timed: Iterable[Lane]) -> Callable[[dict[Lane, np.ndarray]], bool]:
        planned = pairs(point, timed)

        def stop(samples: dict[Lane, np.ndarray]) -> bool:
            return all(compare(kind, samples, num, den, resamples=400).width <= self.settings.target
                       for kind, num, den in planned)  # fmt: skip

        return stop

    def run(self, point: Point, *, compare: bool = True) -> PointResult:
        """One record per lane; unavailable, mismatching or failing lanes say why.

        Args:
          point: what to run.
          compare: compute the point's comparisons (off for one of several sessions, whose
            ratios :func:`merge_sessions` takes over all of them).
        """
        todo = lanes(point, self.backends)
        cached = self._cached(point, todo, compare)
        if cached is not None:
            return cached
        records = {lane: self._record(point, lane) for lane in todo}
        arrays = Arrays(inputs(point.batch, point.channels, point.resolution, point.num_basis), self.device)
        works: dict[tuple[str, str, str | None], Workload] = {}
        runnables: dict[Lane, Runnable] = {}
        for lane, record in records.items():
            reason = unavailable(lane.backend, self.device) or (network_unavailable() if point.network else None)
            if reason:
                record.status, record.reason = "unavailable", reason
                continue
            try:
                which = (lane.item, lane.variant, lane.layout)
                if which not in works:
                    works[which] = build(lane.item, lane.variant, point.workload, point, arrays, lane.layout)
                work = works[which]
                runnable = self._prepare(lane, work)
                record.compile_s, record.kernels, record.kernel_detail = runnable.compile_s, runnable.kernels, runnable.detail
                if runnable.saved_bytes is not None:
                    record.saved_bytes, record.saved_input_bytes = runnable.saved_bytes
                if work.params:
                    record.params = work.params[FRAMEWORK[lane.backend]]
                if work.bytes is not None and lane.item in CATALOG:
                    x = arrays.values["x"]
                    if runnable.hlo is not None:
                        record.passes = hlo_full_size_passes(runnable.hlo, x.nbytes) / work.per_call
                    elif runnable.inductor is not None:
                        record.passes = sum(inductor_full_size_passes(c, x.size) for c in runnable.inductor) / work.per_call
                record.check_eps = work.check(lane.backend, runnable.output())
            except Exception as err:  # one failing lane must not stop the study
                record.status, record.reason = "error", error_line(err, limit=300)
                continue
            if record.check_eps <= work.tolerance:
                runnables[lane] = runnable
            else:
                record.status = "mismatch"
                scale = "||y||" if work.normwise else "max|y|"
                record.reason = f"output differs from torch-eager by {record.check_eps:.3g} eps x {scale}; not timed"
        timings, load = {}, OtherLoad()
        if point.timed and runnables:
            timed = {lane: Timed(r.run, r.sync, r.setup) for lane, r in runnables.items()}
            calls = list({id(c): c for c in (works[(lane.item, lane.variant, lane.layout)].call(lane.backend) for lane in runnables
                                              if lane.path is None)}.values())  # fmt: skip
            # dispatch paths hold their state in different ways; their ratios are about per-call overhead,
            # so all of them keep one placement for the run rather than some moving and some not
            refresh = None if point.suite == "dispatch" else _refresher(calls, list(works.values()))
            with load:
                timings = measure_many(timed, self.settings.schedule_for(point), group=lambda lane: lane.backend,
                                       stop=self._stop(point, runnables), between_rounds=refresh)  # fmt: skip
        samples = {}
        for lane, timing in timings.items():
            record, work = records[lane], works[(lane.item, lane.variant, lane.layout)]
            samples[lane] = timing.samples_ms / work.per_call
            record.median_ms, record.p10_ms, record.p90_ms = (
                float(np.percentile(samples[lane], q)) for q in (50, 10, 90)
            )
            record.repeat, record.rounds, record.load = timing.repeat, timing.rounds, load.share
            record.faults_per_call = timing.faults_per_call  # per timed call (a chain of blocks counts once)
            record.spread = stats.spread(stats.round_medians(samples[lane]))
            record.flag = stats.stability(samples[lane], load=load.share)
            if work.bytes is not None:
                record.bytes = work.bytes
                record.gbps = work.bytes / (record.median_ms * 1e-3) / 1e9
                record.working_set = working_set(point, lane, arrays.values["x"].nbytes)
            rounds = stats.round_medians(samples[lane])
            _rounds(record, rounds, np.zeros(rounds.size, dtype=int))
        measurement = next(self._measurements)
        for lane, record in records.items():
            self._cache[self._key(point, lane)] = (record, samples.get(lane), measurement)
        works.clear()
        runnables.clear()
        _release_compiled()
        found = comparisons(point, samples, self.threads) if compare else []
        return PointResult(list(records.values()), found, samples, list(records))

    def _prepare(self, lane: Lane, work: Workload) -> Runnable:
        if lane.path is not None:
            return _dispatch_runnable(lane.path, work, self.device)
        donate = work.donate if lane.backend == "jax-jit" else None
        return prepare(lane.backend, work.call(lane.backend), self.device, donate=donate)


def param_records(device: Device, backends: tuple[str, ...]) -> list[Record]:
    """The seed's parameter table at C=64, K=8 with its breakdown, counted in each framework."""
    channels, num_basis = 64, 8
    records = []
    for name, entry in CATALOG.items():
        torch_module = entry.build_torch(channels, num_basis)
        counts = {"torch": {k: p.numel() for k, p in torch_module.named_parameters()}}
        flat = nnx.to_flat_state(nnx.state(entry.build_nnx(channels, num_basis), nnx.Param))
        counts["jax"] = {".".join(map(str, path)): int(np.prod(v[...].shape)) for path, v in flat}
        for backend in backends:
            side = counts["jax" if backend.startswith("jax") else "torch"]
            base = dict(suite="params", backend=backend, device=device.name, module=name, channels=channels,
                        num_basis=num_basis if entry.has_basis else None)  # fmt: skip
            records.append(Record(**base, params=sum(side.values())))
            records.extend(Record(**base, parameter=k, params=v) for k, v in side.items())
    return records
