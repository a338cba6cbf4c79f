"""The suites, as declarations: each is one :class:`Suite` (its points, the comparisons they
report, its tables, figures and findings), registered in :data:`SUITES`.

The runner (:mod:`bench.study`, :mod:`bench.runner`) runs every suite the same way; the
analysis and the renderers (:mod:`bench.analysis`, :mod:`bench.report`) read each suite's
tables, figures and findings from here. Adding a suite is one :func:`register` call with its
points (made of the workloads :mod:`bench.workloads` builds: a module's ``forward``,
``train`` or ``backward`` step, an operation, a copy, a network) and its test. Imports neither
torch nor jax.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import findings, plots, tables
from bench.plan import COMPONENTS, DISPATCH_PATHS, LAYOUTS, SUM_OF_PARTS, Point, Settings
from bench.schema import Comparison, Record
from prcm.catalog import CATALOG

__all__ = ["Suite", "Network", "SUITES", "NETWORKS", "QUICK_NETWORKS", "SEED_POINT", "SWEEP_MODULES", "register"]

Tables = Callable[[list[Record], list[Comparison], Sequence[str]], list[tables.Table]]
Figures = Callable[[Path, list[Record], list[Comparison], dict[str, Any]], list[Path]]
Finder = Callable[[list[Record], list[Comparison], dict[str, Any]], list[str]]

#: The seed's point: (batch, channels, resolution, num_basis).
SEED_POINT = (1, 64, 64, 8)
SWEEP_MODULES = ("PRCM", "AffinePRCM")


@dataclass(frozen=True)
class Suite:
    """One suite of the study.

    Attributes:
      name: what ``--suites`` calls it.
      doc: one line: what it measures.
      points: its points for a run's settings (``suite``, ``compare`` and ``headline`` are
        filled in from here, see :meth:`plan`).
      compare: the ratios each point reports (:data:`bench.plan.KINDS`).
      timed: ``False`` for a suite that only counts (one process, the most threads).
      headline: the answers the bench is run for: the longer time cap.
      quick_threads: in a quick run, time only at the ``most`` or the ``fewest`` threads.
      tables, figures, findings: how the report shows it (:mod:`bench.tables`, :mod:`bench.plots`, :mod:`bench.findings`).
      counter: ``module:function`` giving its records without points (``params``), called as
        ``function(device, backends)`` in the runner's process.
    """

    name: str
    doc: str
    points: Callable[[Settings], list[Point]]
    compare: tuple[str, ...] = ("backend", "module")
    timed: bool = True
    headline: bool = False
    quick_threads: str | None = None
    tables: Tables = tables.generic
    figures: Figures = plots.generic
    findings: Finder | None = None
    counter: str | None = None

    def plan(self, settings: Settings) -> list[Point]:
        """The points of one run, each carrying this suite's name, comparisons and time cap."""
        return [dataclasses.replace(p, suite=self.name, compare=self.compare, headline=self.headline, timed=self.timed and p.timed)
                for p in self.points(settings)]  # fmt: skip

    def thread_settings(self, settings: Settings, requested: tuple[int, ...]) -> tuple[int, ...]:
        """The thread settings it runs at: every requested one for a timing suite (in a quick
        run, only the most or the fewest where :attr:`quick_threads` says), the most for a counting one.

        Examples:
            >>> SUITES["roofline"].thread_settings(Settings(quick=True), (1, 2)), SUITES["network"].thread_settings(Settings(), (1, 2))
            ((2,), (1, 2))
        """
        if not self.timed:
            return requested[-1:]
        if settings.quick and self.quick_threads:
            return requested[-1:] if self.quick_threads == "most" else requested[:1]
        return requested


#: Every suite, in report order; :func:`register` adds one.
SUITES: dict[str, Suite] = {}


def register(suite: Suite) -> Suite:
    """Add ``suite`` to :data:`SUITES` (a name already taken is an error)."""
    if suite.name in SUITES:
        raise ValueError(f"a suite named {suite.name!r} is already registered")
    SUITES[suite.name] = suite
    return suite


@dataclass(frozen=True)
class Network:
    """A timm network timed against its NNX twin (:func:`prcm_jax.models.from_timm`).

    Attributes:
      name: timm's model name; the attention block goes where timm's constructor takes one
        for that family (:data:`bench.workloads.ATTENTION_ARGS`).
      attention: the blocks it is built with (``none``, timm's ``se`` or a module of the catalog).
      backends: the backends it runs on.
      layouts: torch's memory layouts (JAX runs channels-last).
    """

    name: str
    attention: tuple[str, ...] = ("none", "AffinePRCM")
    backends: tuple[str, ...] = ("torch-eager", "torch-compile", "jax-jit")
    layouts: tuple[str, ...] = LAYOUTS


#: The blocks a network is timed with: none, timm's own SE, and the two PRCM variants the seed compares.
BLOCKS = ("none", "se", "PRCM", "AffinePRCM")
#: The full run's networks. Eager JAX takes about a second per ResNet-18 call at 224 x 224, so
#: no network runs on jax-eager; torch.compile of a ResNet-50 takes 30 s forward and 65 s for a
#: training step on 2 cores with a cold cache, so resnet50 times the plain network and AffinePRCM.
#: The mobile networks are where an SE-like block is a real share of the work.
NETWORKS = (Network("resnet18", BLOCKS), Network("resnet50"), Network("mobilenetv3_large_100", BLOCKS),
            Network("efficientnet_b0", BLOCKS))
#: A quick run's: mobilenetv3_large_100 at 64 x 64 (a network where an SE-like block is a real share of the
#: work), eager torch in both layouts against the twin. Each session builds, converts, traces and checks every
#: lane again, which costs far more than timing it, so the quick run keeps one network; the full run has four.
QUICK_NETWORKS = (Network("mobilenetv3_large_100", ("none", "se", "AffinePRCM"), backends=("torch-eager", "jax-jit")),)


def _latency(s: Settings) -> list[Point]:
    return [Point("latency", *SEED_POINT, items=tuple(CATALOG))]  # read when run: a module registered at run time is in it


def _fusion(s: Settings) -> list[Point]:
    return [Point("fusion", *SEED_POINT, items=tuple(CATALOG), timed=False)]


def _components(s: Settings) -> list[Point]:
    return [Point("components", *SEED_POINT, items=(*COMPONENTS, *SUM_OF_PARTS))]


def _sweep(key: str, quick: tuple[int, ...], full: tuple[int, ...], items: tuple[str, ...] = SWEEP_MODULES) -> Callable[[Settings], list[Point]]:
    """The points of a seed sweep: the seed point with ``key`` set to each value."""
    b, c, r, k = SEED_POINT

    def points(s: Settings) -> list[Point]:
        base = Point(key, b, c, r, k, items=items)
        return [dataclasses.replace(base, **{key: v}) for v in (quick if s.quick else full)]

    return points


def _train(s: Settings) -> list[Point]:
    """The seed point (full run), a batch sweep at 64 x 56 x 56, a wide point (full run)."""
    b, c, r, k = SEED_POINT
    items = (*SWEEP_MODULES, "SEModule", "copy")
    seed = [] if s.quick else [Point("train", b, c, r, k, items=tuple(CATALOG), workload="train")]
    batches = (8,) if s.quick else (1, 2, 4, 8, 16, 32)
    wide = [] if s.quick else [Point("train", 16, 256, 28, k, items=items, workload="train")]
    return [*seed, *(Point("train", bs, c, 56, k, items=items, workload="train") for bs in batches), *wide]


def _backward(s: Settings) -> list[Point]:
    """The training step's point, as a block inside a network runs it: y and the backward pass for cot."""
    return [Point("backward", 8, SEED_POINT[1], 56, SEED_POINT[3], items=(*SWEEP_MODULES, "SEModule", "copy"), workload="backward")]


def _roofline(s: Settings) -> list[Point]:
    """The seed point, then tensors whose working sets reach DRAM (x of 16 MB to 268 MB; at
    least 4x the last-level cache from 134 MB on a 32 MiB L3). A quick run: PRCM alone and
    with its input donated, at 134 MB."""
    b, c, r, k = SEED_POINT
    if s.quick:
        return [Point("roofline", 8, c, 256, k, items=("copy", "copy in-place", "PRCM"), variants=("fresh", "donated"))]
    return [Point("roofline", bs, c, res, k, items=("copy", "copy in-place", *SWEEP_MODULES), variants=("fresh", "loop", "donated"))
            for bs, res in ((b, r), (1, 256), (4, 256), (16, 256))]  # fmt: skip


def _dispatch(s: Settings) -> list[Point]:
    b, c, r, k = SEED_POINT
    return [Point("dispatch", b, c, res, k, items=SWEEP_MODULES, paths=DISPATCH_PATHS) for res in (8, r)]


def _network(s: Settings) -> list[Point]:
    """Each network at each batch, inference and a training step (a quick run: 64 x 64)."""
    sizes = ((1, 64),) if s.quick else ((1, 224), (8, 224))
    return [Point("network", bs, 3, res, items=net.attention, workload=workload, network=net.name, baseline="none",
                  backends=net.backends, layouts=net.layouts)
            for net in (QUICK_NETWORKS if s.quick else NETWORKS) for bs, res in sizes for workload in ("forward", "train")]  # fmt: skip


for _suite in (
    Suite("params", "the seed's parameter table at C=64, K=8, counted in both frameworks", lambda s: [], timed=False,
          tables=tables.params, figures=lambda *a: [], counter="bench.runner:param_records"),
    Suite("latency", "the modules at the seed point (1, 64, 64, 64): every backend against jax-jit, every module against PRCM",
          _latency, headline=True, tables=tables.latency, figures=plots.latency, findings=findings.latency),
    Suite("components", "the seed's eight operations each alone, beside the whole module: whole / sum of parts",
          _components, compare=("backend", "module", "parts"), tables=tables.components, figures=lambda *a: [],
          findings=findings.components),
    *(Suite(key, f"the seed's {key} sweep: AffinePRCM / PRCM per backend and each backend / jax-jit", _sweep(key, quick, full, items),
            tables=tables.sweep, figures=plots.sweep, findings=findings.sweep)
      for key, quick, full, items in (("channels", (24, 64, 192), (24, 48, 64, 96, 128, 192), (*SWEEP_MODULES, "SEModule")),
                                      ("resolution", (16, 64, 256), (16, 32, 64, 128, 256), SWEEP_MODULES),
                                      ("num_basis", (4, 32), (4, 8, 16, 32), SWEEP_MODULES),
                                      ("batch", (1, 16), (1, 2, 4, 8, 16), SWEEP_MODULES))),
    Suite("train", "one training step (forward in train mode, loss sum(y * cot), gradients to the input and every parameter)",
          _train, headline=True, tables=tables.train, figures=plots.train, findings=findings.train),
    Suite("backward", "the training step as a block inside a network runs it: forward returning y, backward pass for cot",
          _backward, headline=True, quick_threads="fewest", tables=tables.train, figures=plots.backward, findings=findings.train),
    Suite("fusion", "kernels per call: XLA ENTRY kernels, JAX operations dispatched, ATen ops, Inductor kernels", _fusion,
          timed=False, tables=tables.fusion, figures=plots.fusion, findings=findings.fusion),
    Suite("roofline", "achieved bandwidth of each variant against a copy touching the same buffers, with the memory level",
          _roofline, quick_threads="most", tables=tables.roofline, figures=plots.roofline, findings=findings.roofline),
    Suite("dispatch", "jax-jit per call by call path: compiled split state, jax.jit, jax.jit(nnx.State), nnx.jit, nnx.cached_partial",
          _dispatch, compare=("path",), quick_threads="most", tables=tables.dispatch, figures=lambda *a: [],
          findings=findings.dispatch),
    Suite("network", "timm networks against their NNX twins, torch in both memory layouts: inference and a training step, "
          "each block's overhead", _network, compare=("backend", "module", "layout"), quick_threads="fewest",
          tables=tables.network, figures=plots.network, findings=findings.network),
):
    register(_suite)
