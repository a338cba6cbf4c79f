"""The suites as data: each is a list of points; a point is one configuration whose lanes
(item x variant x backend x dispatch path) are timed together, at each thread setting.

A suite names its workload kind (``forward``, ``train``; the seed's component operations and
the copy reference are ``op`` items); :mod:`bench.runner` runs every suite the same way. The
rows it produces are :class:`Record` (one per lane) and :class:`Comparison` (one per ratio).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from bench.timing import Schedule
from bench.workloads import COMPONENTS
from prcm.catalog import MODULES

__all__ = ["SUITES", "TIMED", "HEADLINE", "QUICK_ONE_SETTING", "Point", "Lane", "Record", "Comparison", "Settings", "points", "lanes", "run_order", "SEED_POINT",
           "DISPATCH_PATHS", "SWEEP_MODULES", "NETWORKS"]  # fmt: skip

SUITES: tuple[str, ...] = (
    "params", "latency", "components", "channels", "resolution", "num_basis", "batch", "train", "backward", "fusion",
    "roofline", "dispatch", "network",
)  # fmt: skip
#: Suites that time (and so run at every thread setting); the others count.
TIMED = frozenset(SUITES) - {"params", "fusion"}
#: Suites a quick run times at one thread setting only ("most": bandwidth and dispatch
#: overhead; "fewest": whole networks, whose many-threaded steps stall longest on a shared
#: machine, and the ``backward`` step beside ``train``); a full run times them at every setting.
QUICK_ONE_SETTING = {"roofline": "most", "dispatch": "most", "network": "fewest", "backward": "fewest"}
#: Suites whose points get the longer time cap: the answers the bench is run for.
HEADLINE = frozenset({"latency", "train", "backward"})
#: The full run's networks: attention blocks and backends (eager JAX takes about a second per
#: ResNet-18 call at 224 x 224; torch.compile of a ResNet-50 takes 30 s forward and 65 s for a
#: training step on 2 cores with a cold cache, 11-16 s and 34-58 s in a run, so resnet50 times the
#: plain network and AffinePRCM, the seed's question).
NETWORKS = (
    ("resnet18", ("none", "se", "PRCM", "AffinePRCM"), ("torch-eager", "torch-compile", "jax-jit")),
    ("resnet50", ("none", "AffinePRCM"), ("torch-eager", "torch-compile", "jax-jit")),
)
#: The seed's point: (batch, channels, resolution, num_basis).
SEED_POINT = (1, 64, 64, 8)
SWEEP_MODULES = ("PRCM", "AffinePRCM")
DISPATCH_PATHS = ("compiled", "jax.jit", "jax.jit(nnx.State)", "nnx.jit", "nnx.cached_partial")


@dataclass
class Record:
    """One flat row of ``results.json``; fields that do not apply are ``None``."""

    suite: str
    backend: str | None
    device: str
    module: str | None = None
    network: str | None = None
    op: str | None = None
    workload: str | None = None
    variant: str | None = None
    path: str | None = None
    parameter: str | None = None
    threads: int | None = None
    batch: int | None = None
    channels: int | None = None
    resolution: int | None = None
    num_basis: int | None = None
    median_ms: float | None = None
    p10_ms: float | None = None
    p90_ms: float | None = None
    repeat: int | None = None
    rounds: int | None = None
    spread: float | None = None
    load: float | None = None
    flag: str | None = None
    params: int | None = None
    kernels: int | None = None
    kernel_detail: str | None = None
    passes: float | None = None
    bytes: int | None = None
    gbps: float | None = None
    copy_fraction: float | None = None
    saved_bytes: int | None = None
    saved_input_bytes: int | None = None
    faults_per_call: float | None = None
    compile_s: float | None = None
    check_eps: float | None = None
    status: str = "ok"
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Comparison:
    """One ratio, numerator time / denominator time, with its 95% interval.

    ``kind`` is ``backend`` (two backends, one module: ``module`` set), ``module`` (a module
    against PRCM on one backend: ``backend`` set; in the ``network`` suite an attention block
    against the same network without one, ``none``), ``parts`` (a module against the sum of its
    component operations), ``path`` (a JAX dispatch path against the compiled call) or
    ``threads`` (one lane at a thread setting against the same lane at all threads; timed
    apart, so unpaired, and ``threads`` is ``None``).
    """

    suite: str
    kind: str
    module: str | None
    backend: str | None
    numerator: str
    denominator: str
    batch: int
    channels: int
    resolution: int
    num_basis: int | None
    threads: int | None
    ratio: float
    ci95: list[float]
    significant: bool
    workload: str | None = None
    variant: str | None = None
    network: str | None = None
    paired: bool = True

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Point:
    """One configuration; every lane of it is timed together.

    Attributes:
      suite: the suite it belongs to.
      batch, channels, resolution, num_basis: the input ``(batch, channels, resolution,
        resolution)`` and the modules' ``K``.
      items: module class names, operations of :data:`~bench.workloads.COMPONENTS`, or ``"copy"``.
      variants: ``fresh`` (a new output each call), ``donated`` (jax-jit: the input's buffer
        becomes the output), ``loop`` (:data:`~bench.workloads.LOOP` blocks in one call).
      workload: ``forward`` or ``train`` for the modules.
      timed: ``False`` for a point that only counts kernels.
      network: a timm ResNet (``resnet18``, ``resnet50``) whose blocks hold the items as
        attention (``none``, ``se`` or a module); ``channels`` is then the image's 3.
      baseline: the item every other is compared with on the same backend.
      backends: the backends this point runs on (``None``: every selected one).
    """

    suite: str
    batch: int
    channels: int
    resolution: int
    num_basis: int = 8
    items: tuple[str, ...] = ()
    variants: tuple[str, ...] = ("fresh",)
    workload: str = "forward"
    timed: bool = True
    network: str | None = None
    baseline: str = "PRCM"
    backends: tuple[str, ...] | None = None

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
    """What to run and how long.

    Attributes:
      quick: fewer points, shorter timing.
      warmup: untimed calls per lane (``None``: 3 quick, 20 full).
      repeat: timed calls per lane, fixed (``None``: adaptive, see :attr:`schedule`).
      headline_sessions: processes per thread setting for the headline suites (:meth:`sessions`).
    """

    quick: bool = False
    warmup: int | None = None
    repeat: int | None = None
    headline_sessions: int = 3

    @property
    def sizes(self) -> dict[str, tuple]:
        if self.quick:
            return {"channels": (24, 64, 192), "resolution": (16, 64, 256), "num_basis": (4, 32), "batch": (1, 16),
                    "roofline": (2,), "train_batch": (8,), "train_channels": (),
                    "network": (("resnet18", 1, 64, ("none", "AffinePRCM"), ("torch-eager", "jax-jit")),)}  # fmt: skip
        return {"channels": (24, 48, 64, 96, 128, 192), "resolution": (16, 32, 64, 128, 256), "num_basis": (4, 8, 16, 32),
                "batch": (1, 2, 4, 8, 16), "roofline": (1, 4, 16), "train_batch": (1, 2, 4, 8, 16, 32),
                "train_channels": ((16, 256, 28),),
                "network": tuple((net, b, 224, items, backends) for net, items, backends in NETWORKS for b in (1, 8))}  # fmt: skip

    def thread_settings(self, suite: str, requested: tuple[int, ...]) -> tuple[int, ...]:
        """The thread settings ``suite`` runs at: every requested one for a timing suite (in a
        quick run, only the most for :data:`QUICK_ONE_SETTING`), the most for a counting one.

        >>> quick = Settings(quick=True)
        >>> quick.thread_settings("roofline", (1, 2)), quick.thread_settings("network", (1, 2)), Settings().thread_settings("network", (1, 2))
        ((2,), (1,), (1, 2))
        """
        if suite not in TIMED:
            return requested[-1:]
        if self.quick and suite in QUICK_ONE_SETTING:
            return requested[-1:] if QUICK_ONE_SETTING[suite] == "most" else requested[:1]
        return requested

    def sessions(self, suite: str) -> int:
        """Processes each point of ``suite`` is timed in, per thread setting:
        :attr:`headline_sessions` (3) for the headline suites (``latency``, ``train``, ``backward``), whose
        intervals must hold from run to run, one for the others.

        >>> Settings().sessions("latency"), Settings().sessions("channels")
        (3, 1)
        """
        return self.headline_sessions if suite in HEADLINE else 1

    @property
    def target(self) -> float:
        """The relative width of every interval at which a point stops being timed."""
        return 0.06 if self.quick else 0.04

    @property
    def schedule(self) -> Schedule:
        """Fixed ``repeat`` calls when given; otherwise adaptive: at least ``rounds`` rounds, then
        until every interval of the point is narrower than :attr:`target` or the time cap."""
        return self.schedule_for(None)

    def schedule_for(self, point: Point | None) -> Schedule:
        """The schedule of one point: the headline suites (``latency``, ``train``, ``backward``) get twice the
        time cap of the others, shared by the point's sessions."""
        warmup = self.warmup if self.warmup is not None else (3 if self.quick else 20)
        if self.repeat is not None:
            return Schedule.fixed(warmup, self.repeat)
        headline = point is None or point.suite in HEADLINE
        share = 1 / self.sessions(point.suite) if point is not None else 1  # the cap is shared by the sessions
        if point is not None and point.network:  # whole networks: few, long calls
            return Schedule(min(warmup, 2), rounds=6 if self.quick else 10, calls=1, max_rounds=30 if self.quick else 60,
                            time_cap_s=10.0 if self.quick else 30.0, check_every=3)  # fmt: skip
        if self.quick:
            return Schedule(warmup, rounds=10, round_s=0.003, max_calls=10, max_rounds=80,
                            time_cap_s=(6.0 if headline else 2.5) * share, check_every=5)  # fmt: skip
        return Schedule(warmup, rounds=20, round_s=0.006, max_calls=20, max_rounds=300,
                        time_cap_s=(25.0 if headline else 12.0) * share, check_every=10)  # fmt: skip

    @property
    def timing(self) -> dict[str, Any]:
        """The schedule, for ``results.json``'s ``meta``."""
        return {**dataclasses.asdict(self.schedule), "target_width": None if self.repeat else self.target}


def points(suite: str, settings: Settings) -> list[Point]:
    """The points of one suite, in report order (``params`` has none: it is counted).

    >>> [p.shape for p in points("batch", Settings(quick=True))]
    [(1, 64, 64, 64), (16, 64, 64, 64)]
    """
    b, c, r, k = SEED_POINT
    sizes = settings.sizes
    if suite == "latency":
        return [Point(suite, b, c, r, k, items=MODULES)]
    if suite == "fusion":
        return [Point(suite, b, c, r, k, items=MODULES, timed=False)]
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
    if suite == "train":  # the seed point, a batch sweep at 64 x 56 x 56, a wide point
        seed = [] if settings.quick else [Point(suite, b, c, r, k, items=MODULES, workload="train")]
        sweep = [Point(suite, bs, c, 56, k, items=(*SWEEP_MODULES, "SEModule", "copy"), workload="train")
                 for bs in sizes["train_batch"]]  # fmt: skip
        wide = [Point(suite, bs, ch, res, k, items=(*SWEEP_MODULES, "SEModule", "copy"), workload="train")
                for bs, ch, res in sizes["train_channels"]]  # fmt: skip
        return [*seed, *sweep, *wide]
    if suite == "backward":  # the training step's point, as a block inside a network runs it: y and the backward pass for cot
        return [Point(suite, 8, c, 56, k, items=(*SWEEP_MODULES, "SEModule"), workload="backward")]
    if suite == "roofline":  # the seed point (full run), then tensors beyond the caches (x + y > 32 MB L3 here)
        shapes = ([] if settings.quick else [(b, r)]) + [(bs, 256) for bs in sizes["roofline"]]
        return [Point(suite, bs, c, res, k, items=("copy", *SWEEP_MODULES), variants=("fresh", "loop", "donated"))
                for bs, res in shapes]  # fmt: skip
    if suite == "dispatch":
        return [Point(suite, b, c, res, k, items=SWEEP_MODULES) for res in (8, r)]
    if suite == "network":
        return [Point(suite, bs, 3, res, k, items=items, workload=workload, network=net, baseline="none", backends=backends)
                for net, bs, res, items, backends in sizes["network"] for workload in ("forward", "train")]  # fmt: skip
    if suite == "params":
        return []
    raise ValueError(f"unknown suite {suite!r}; choose from {', '.join(SUITES)}")


def run_order(suites: tuple[str, ...], settings: Settings) -> list[str]:
    """The order suites run in: those timed in several sessions (the headline suites) first and
    back to back, so their extra processes start once and stop before the rest; otherwise as
    given. Reports list suites in :data:`SUITES` order whatever the run order.

    >>> run_order(("params", "latency", "channels", "train"), Settings())
    ['latency', 'train', 'params', 'channels']
    """
    return sorted(suites, key=lambda suite: -settings.sessions(suite))


def lanes(point: Point, backends: tuple[str, ...]) -> list[Lane]:
    """Every lane of a point for the selected backends; one record each.

    A copy runs on torch-eager (``out=``) and jax-jit (donated); ``donated`` is jax-jit's;
    ``loop`` (a chain of blocks in one compiled call) is not run eagerly in JAX; the dispatch
    suite times jax-jit's call paths.

    >>> [(l.item, l.backend) for l in lanes(Point("roofline", 1, 8, 8, items=("copy",)), ("torch-eager", "jax-eager"))]
    [('copy', 'torch-eager')]
    """
    out = []
    backends = tuple(b for b in backends if point.backends is None or b in point.backends)
    for item in point.items:
        for variant in ("copy",) if item == "copy" else point.variants:
            for backend in backends:
                if point.suite == "dispatch":
                    out += [Lane(item, backend, variant, p) for p in DISPATCH_PATHS if backend == "jax-jit"]
                elif variant == "donated" and backend != "jax-jit" or variant == "loop" and backend == "jax-eager":
                    continue
                elif variant == "copy" and backend not in ("torch-eager", "jax-jit"):
                    continue
                else:
                    out.append(Lane(item, backend, variant))
    return out
