"""The vocabulary of a run, without torch or jax: backends, what can be timed, a :class:`Point`
(one configuration whose :class:`Lane` s are timed together), which lanes a point has
(:func:`lanes`), which ratios it reports (:func:`pairs`) and how long it is timed
(:class:`Settings`).

Suites (:mod:`bench.suites`) declare points; the runner (:mod:`bench.runner`) times them; a
point carries everything a worker process needs to run it, so a suite declared anywhere (a
test's throwaway one included) runs in every process.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from bench.timing import Schedule
from prcm.catalog import CATALOG

__all__ = ["BACKENDS", "FRAMEWORK", "COMPONENTS", "SUM_OF_PARTS", "COPIES", "LOOP", "MIN_TRAFFIC", "DISPATCH_PATHS",
           "LAYOUTS", "BACKEND_PAIRS", "KINDS", "Point", "Lane", "Settings", "lanes", "pairs", "buffers", "reference"]  # fmt: skip

BACKENDS: tuple[str, ...] = ("torch-eager", "torch-compile", "jax-jit", "jax-eager")
#: The framework each backend runs, which decides the layout and the reference it is checked against.
FRAMEWORK = {"torch-eager": "torch", "torch-compile": "torch", "jax-jit": "jax", "jax-eager": "jax"}
#: torch's memory layouts a point may time (JAX runs channels-last, XLA's natural layout).
LAYOUTS = ("channels_first", "channels_last")
#: The seed's eight operations, timed alone in the components suite.
COMPONENTS: tuple[str, ...] = (
    "Global Avg Pool", "Basis Projection", "Linear", "Sigmoid", "Unsqueeze x2", "Scale (x*alpha)",
    "Shift (x+beta)", "Affine (x*alpha+beta)",
)  # fmt: skip
#: The seed's components each module is built from (the components suite).
SUM_OF_PARTS = {
    "PRCM": ("Global Avg Pool", "Basis Projection", "Linear", "Sigmoid", "Unsqueeze x2", "Scale (x*alpha)"),
    "AffinePRCM": ("Global Avg Pool", "Basis Projection", "Linear", "Linear", "Sigmoid", "Unsqueeze x2",
                   "Unsqueeze x2", "Affine (x*alpha+beta)"),
}  # fmt: skip
#: The bandwidth references, by the buffers they touch: ``copy`` reads x and writes a second,
#: preallocated buffer (torch ``out=``, JAX a donated output buffer); ``copy in-place`` reads
#: and writes one buffer, made afresh before each call outside the timed span, as a donated input is.
COPIES = {"copy": 2, "copy in-place": 1}
#: Blocks applied one after another in one call in the roofline's ``loop`` variant.
LOOP = 4
#: The fewest passes over the input tensor one application needs (minimum bytes = passes x
#: its size). A block alone reads x for the mean, then reads x and writes y (3). In a chain of
#: n blocks each block's mean is one more read, which a compiler can compute from x on the fly
#: (x times the gates so far, as Inductor does), and only the last output is written: n + 2
#: passes, (n + 2) / n per block (``loop``). A training step reads x and cot once for the mean
#: and the gate's gradient, then reads cot and writes the input gradient (4). A ``backward``
#: step also writes y: read x and cot for the mean and the gate's gradient, then read both
#: again and write y and the input gradient (6). A copy reads and writes (2).
MIN_TRAFFIC = {"fresh": 3.0, "donated": 3.0, "loop": (LOOP + 2) / LOOP, "train": 4.0, "backward": 6.0, "copy": 2.0}
DISPATCH_PATHS = ("compiled", "jax.jit", "jax.jit(nnx.State)", "nnx.jit", "nnx.cached_partial")
#: Backend comparisons, numerator / denominator: what each backend costs against jax-jit,
#: what Inductor buys over eager torch, and what the framework costs eagerly.
BACKEND_PAIRS = (
    ("torch-eager", "jax-jit"), ("torch-compile", "jax-jit"), ("jax-eager", "jax-jit"), ("torch-eager", "torch-compile"),
    ("jax-eager", "torch-eager"),
)  # fmt: skip
#: The kinds of ratio a point may ask for (:func:`pairs`); ``threads`` and ``run`` are formed
#: across points and runs (:mod:`bench.study`, :mod:`bench.compare`).
KINDS = ("backend", "module", "parts", "path", "layout")


@dataclass(frozen=True)
class Point:
    """One configuration; every lane of it is timed together.

    Attributes:
      suite: the suite it belongs to.
      batch, channels, resolution, num_basis: the input ``(batch, channels, resolution,
        resolution)`` and the modules' ``K``.
      items: module class names, operations of :data:`COMPONENTS`, or a copy of :data:`COPIES`.
      variants: ``fresh`` (a new output each call), ``donated`` (jax-jit: the input's buffer
        becomes the output), ``loop`` (:data:`LOOP` blocks in one call).
      workload: ``forward``, ``train`` or ``backward`` for the modules.
      timed: ``False`` for a point that only counts kernels.
      network: a timm network (see :mod:`bench.suites`' ``NETWORKS``) whose blocks hold the items as
        attention (``none``, ``se`` or a module); ``channels`` is then the image's 3.
      baseline: the item every other is compared with on the same backend.
      backends: the backends this point runs on (``None``: every selected one).
      compare: the kinds of ratio it reports (:data:`KINDS`).
      paths: JAX dispatch paths timed instead of the backends (:data:`DISPATCH_PATHS`).
      layouts: torch's memory layouts it times (:data:`LAYOUTS`; ``None``: the default only).
      headline: the answers the bench is run for: the longer time cap.
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
    compare: tuple[str, ...] = ("backend", "module")
    paths: tuple[str, ...] = ()
    layouts: tuple[str | None, ...] = (None,)
    headline: bool = False

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.channels, self.resolution, self.resolution)

    def __post_init__(self) -> None:
        if unknown := [k for k in self.compare if k not in KINDS]:
            raise ValueError(f"unknown comparison kind {unknown[0]!r}; choose from {', '.join(KINDS)}")
        if unknown := [x for x in self.layouts if x is not None and x not in LAYOUTS]:
            raise ValueError(f"unknown layout {unknown[0]!r}; choose from {', '.join(LAYOUTS)}")


@dataclass(frozen=True)
class Lane:
    """One thing timed within a point: an item in a variant on a backend (a dispatch path, a torch layout)."""

    item: str
    backend: str
    variant: str = "fresh"
    path: str | None = None
    layout: str | None = None


@dataclass(frozen=True)
class Settings:
    """What to run and how long.

    Attributes:
      quick: fewer points, shorter timing.
      warmup: untimed calls per lane (``None``: 3 quick, 20 full).
      repeat: timed calls per lane per session, fixed (``None``: adaptive, see :meth:`schedule_for`).
      sessions: processes per thread setting that time each point of a timing suite (``None``:
        5 quick, 10 full); the time cap of a point is shared by its sessions.
    """

    quick: bool = False
    warmup: int | None = None
    repeat: int | None = None
    sessions: int | None = None

    def sessions_of(self, timed: bool) -> int:
        """Processes each point is timed in, per thread setting: :attr:`sessions` for a timing
        suite, one for a counting one.

        Examples:
            >>> Settings(quick=True).sessions_of(True), Settings().sessions_of(True), Settings().sessions_of(False)
            (5, 10, 1)
        """
        if not timed:
            return 1
        return self.sessions if self.sessions is not None else (5 if self.quick else 10)

    @property
    def target(self) -> float:
        """The relative width of every within-session interval at which a point stops being timed."""
        return 0.06 if self.quick else 0.04

    def schedule_for(self, point: Point | None) -> Schedule:
        """The schedule of one point in one session: fixed ``repeat`` calls when given; otherwise
        at least a few rounds, then until every interval of the point is narrower than
        :attr:`target` or the time cap, a headline point's cap twice the others', shared by the
        point's sessions; whole networks few long calls."""
        warmup = self.warmup if self.warmup is not None else (3 if self.quick else 20)
        if self.repeat is not None:
            return Schedule.fixed(warmup, self.repeat)
        share = 1 / self.sessions_of(True)
        if point is not None and point.network:
            return Schedule(min(warmup, 2), rounds=5 if self.quick else 6, calls=1, max_rounds=30 if self.quick else 60,
                            time_cap_s=(10.0 if self.quick else 30.0) * share, check_every=3)  # fmt: skip
        headline = point is None or point.headline
        if self.quick:
            return Schedule(warmup, rounds=6, round_s=0.003, max_calls=10, max_rounds=80,
                            time_cap_s=(6.0 if headline else 2.5) * share, check_every=5)  # fmt: skip
        return Schedule(warmup, rounds=10, round_s=0.006, max_calls=20, max_rounds=300,
                        time_cap_s=(25.0 if headline else 12.0) * share, check_every=10)  # fmt: skip

    @property
    def timing(self) -> dict[str, Any]:
        """The schedule, for ``results.json``'s ``meta``."""
        return {**dataclasses.asdict(self.schedule_for(None)), "target_width": None if self.repeat else self.target}


def _layouts(point: Point, backend: str) -> tuple[str | None, ...]:
    return point.layouts if FRAMEWORK[backend] == "torch" else (None,)


def lanes(point: Point, backends: tuple[str, ...]) -> list[Lane]:
    """Every lane of a point for the selected backends; one record each.

    A copy runs on torch-eager and jax-jit; ``donated`` is jax-jit's; ``loop`` (a chain of
    blocks in one compiled call) is not run eagerly in JAX; a point with ``paths`` times
    jax-jit's call paths; a torch lane runs in each of the point's ``layouts``.

    Examples:
        >>> [(l.item, l.backend) for l in lanes(Point("roofline", 1, 8, 8, items=("copy",)), ("torch-eager", "jax-eager"))]
        [('copy', 'torch-eager')]
        >>> [(l.backend, l.layout) for l in lanes(Point("n", 1, 3, 8, items=("none",), layouts=LAYOUTS), ("torch-eager", "jax-jit"))]
        [('torch-eager', 'channels_first'), ('torch-eager', 'channels_last'), ('jax-jit', None)]
    """
    out = []
    backends = tuple(b for b in backends if point.backends is None or b in point.backends)
    for item in point.items:
        for variant in ("copy",) if item in COPIES else point.variants:
            for backend in backends:
                if point.paths:
                    out += [Lane(item, backend, variant, p) for p in point.paths if backend == "jax-jit"]
                elif variant == "donated" and backend != "jax-jit" or variant == "loop" and backend == "jax-eager":
                    continue
                elif variant == "copy" and backend not in ("torch-eager", "jax-jit"):
                    continue
                else:
                    out += [Lane(item, backend, variant, None, layout) for layout in _layouts(point, backend)]
    return out


def _partner(lane: Lane, backend: str, point: Point) -> Lane:
    """``lane`` on ``backend``: a torch lane keeps its layout against torch, a JAX one meets torch's default."""
    if FRAMEWORK[backend] == "jax":
        return dataclasses.replace(lane, backend=backend, layout=None)
    layout = lane.layout if FRAMEWORK[lane.backend] == "torch" else point.layouts[0]
    return dataclasses.replace(lane, backend=backend, layout=layout)


def pairs(point: Point, timed: Iterable[Lane]) -> list[tuple[str, Lane, tuple[Lane, ...]]]:
    """The ratios a point reports (the kinds in ``point.compare``), as ``(kind, numerator lane,
    denominator lanes)``; a denominator of several lanes is their sum (a module against the sum of its parts).

    Examples:
        >>> ls = [Lane("PRCM", "torch-eager"), Lane("PRCM", "jax-jit"), Lane("AffinePRCM", "jax-jit")]
        >>> [(k, n.item, n.backend, d[0].item, d[0].backend) for k, n, d in pairs(Point("latency", 1, 8, 8), ls)]
        [('backend', 'PRCM', 'torch-eager', 'PRCM', 'jax-jit'), ('module', 'AffinePRCM', 'jax-jit', 'PRCM', 'jax-jit')]
    """
    timed = set(timed)
    kinds = set(point.compare)
    order = lambda l: (l.item, l.variant, l.backend, l.path or "", l.layout or "")  # noqa: E731
    out = []
    for lane in sorted(timed, key=order):
        if lane.path is not None:  # dispatch paths against the compiled call
            base = dataclasses.replace(lane, path="compiled")
            if "path" in kinds and lane.path != "compiled" and base in timed:
                out.append(("path", lane, (base,)))
            continue
        for num, den in BACKEND_PAIRS if "backend" in kinds else ():
            other = _partner(lane, den, point)
            if lane.backend == num and other in timed:
                out.append(("backend", lane, (other,)))
        default = dataclasses.replace(lane, layout=point.layouts[0])
        if "layout" in kinds and lane.layout is not None and lane != default and default in timed:
            out.append(("layout", lane, (default,)))
    modules = set(point.items) if point.network else set(CATALOG)
    for lane in sorted(timed, key=lambda l: (l.backend, l.layout or "", l.variant, l.item)):
        base = dataclasses.replace(lane, item=point.baseline)
        if "module" in kinds and lane.path is None and lane.item in modules and lane.item != point.baseline and base in timed:
            out.append(("module", lane, (base,)))
            se = dataclasses.replace(lane, item="se")  # in a network, a PRCM block against timm's own SE too
            if point.network and lane.item in CATALOG and se in timed:
                out.append(("module", lane, (se,)))
        parts = tuple(dataclasses.replace(lane, item=p) for p in SUM_OF_PARTS.get(lane.item, ()))
        if "parts" in kinds and parts and all(p in timed for p in parts):
            out.append(("parts", lane, parts))
    return out


def buffers(variant: str | None, backend: str | None) -> int:
    """Full-size buffers one call of a lane reads and writes: a copy's own (:data:`COPIES`),
    one where jax-jit donates its input (``donated``, and the chain of ``loop``), else two (x and a new y).

    Examples:
        >>> buffers("fresh", "torch-eager"), buffers("donated", "jax-jit"), buffers("loop", "torch-compile"), buffers("loop", "jax-jit")
        (2, 1, 2, 1)
    """
    if variant in ("donated", "loop") and backend == "jax-jit":
        return 1
    return 2


def reference(variant: str | None, backend: str | None) -> str:
    """The copy that bounds a lane's bandwidth: the one that touches as many buffers (:func:`buffers`).

    Examples:
        >>> reference("fresh", "jax-jit"), reference("donated", "jax-jit")
        ('copy', 'copy in-place')
    """
    return {n: name for name, n in COPIES.items()}[buffers(variant, backend)]
