"""One run of the study: every selected suite's points, at every thread setting, in several
sessions, into :class:`bench.schema.Results`.

Sessions run one after another: session ``k`` runs every point of every timing suite (the
settings taking turns point by point) in its own processes, which stop before session
``k + 1`` starts, so a run holds one process per thread setting at a time whatever the number
of sessions. The counting suites run once. After every point what finished is written
(records; the comparisons are formed at the end, or when the run is interrupted or a worker
fails, from the sessions that finished).
"""

from __future__ import annotations

import importlib
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.plan import Point, Settings, lanes
from bench.runner import PointResult, Runner, merge_sessions, threads_comparisons
from bench.schema import Comparison, Record, Results
from bench.suites import SUITES, Suite
from bench.workers import Options, Pools, WorkerError

__all__ = ["Study", "Progress", "JaxCache", "make_pools"]

#: Told what is about to run (``description``) and how many lanes finished (``advance``).
Progress = Callable[[str, int], None]


@dataclass
class Study:
    """The plan of a run and what it has measured so far.

    Attributes:
      suites: the selected suites, in report order.
      settings: timing and sessions.
      threads: the requested thread settings.
      backends: the selected backends.
    """

    suites: list[Suite]
    settings: Settings
    threads: tuple[int, ...]
    backends: tuple[str, ...]
    results: dict[tuple[int, int], list[PointResult]] = field(default_factory=dict)  # (point index, threads) -> sessions
    counted: list[Record] = field(default_factory=list)
    timeline: list[list[Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.points: list[Point] = [p for suite in self.suites for p in suite.plan(self.settings)]
        self._settings = {s.name: s.thread_settings(self.settings, self.threads) for s in self.suites}

    @property
    def sessions(self) -> int:
        return self.settings.sessions_of(True)

    def total(self) -> int:
        """Lanes to run in all (a counted suite counts one)."""
        lanes_of = sum(len(lanes(p, self.backends)) * len(self._settings[p.suite]) * self.settings.sessions_of(p.timed)
                       for p in self.points)  # fmt: skip
        return lanes_of + sum(s.counter is not None for s in self.suites)

    def run(self, pools: Pools, device: Any, progress: Progress, save: Callable[[bool], None]) -> None:
        """Count what is counted, then run every session; ``save(partial=True)`` after each point.
        Raises what the workers raise (:class:`~bench.workers.WorkerError`) and ``KeyboardInterrupt``."""
        for suite in (s for s in self.suites if s.counter):
            module, name = suite.counter.split(":")
            progress(suite.name, 0)
            self.counted += getattr(importlib.import_module(module), name)(device, self.backends)
            progress(suite.name, 1)
        for session in range(self.sessions):
            for i, point in enumerate(self.points):
                if session >= self.settings.sessions_of(point.timed):
                    continue
                order = self._settings[point.suite]
                for threads in order if (i + session) % 2 == 0 else order[::-1]:  # settings take turns
                    progress(f"session {session + 1}/{self.sessions} {point.suite} {point.shape} {threads} thread(s)", 0)
                    begun = time.perf_counter()
                    result = pools.run(point, threads, session, compare=False)
                    self.results.setdefault((i, threads), []).append(result)
                    self.timeline.append([point.suite, list(point.shape), threads, session, round(time.perf_counter() - begun, 1)])
                    progress("", len(result.records))
                save(True)
            pools.close_session(session)

    def collect(self, *, compare: bool = True) -> tuple[list[Record], list[Comparison]]:
        """Every record (sessions merged) and, with ``compare``, every comparison, in report order."""
        records, comparisons = list(self.counted), []
        for i, point in enumerate(self.points):
            merged = {t: merge_sessions(runs, point, t, compare=compare) for (j, t), runs in self.results.items() if j == i}
            for t in sorted(merged):
                records += merged[t].records
                comparisons += merged[t].comparisons
            if compare and len(merged) > 1:
                comparisons += threads_comparisons(merged, point)
        order = list(SUITES)
        records.sort(key=lambda r: order.index(r.suite) if r.suite in order else len(order))
        comparisons.sort(key=lambda c: order.index(c.suite) if c.suite in order else len(order))
        return records, comparisons

    def results_of(self, meta: dict[str, Any], *, compare: bool = True) -> Results:
        records, comparisons = self.collect(compare=compare)
        return Results({**meta, "timeline": self.timeline}, records, comparisons)


class JaxCache:
    """A folder for JAX's persistent compilation cache, for one run: made on entry, removed on exit."""

    def __enter__(self) -> str:
        self.path = tempfile.mkdtemp(prefix="prcm-bench-jax-")
        return self.path

    def __exit__(self, *exc: object) -> None:
        if "jax" in sys.modules:  # this process may go on (a test, a notebook): JAX must stop writing there
            import jax
            from jax.experimental.compilation_cache import compilation_cache

            jax.config.update("jax_compilation_cache_dir", None)
            compilation_cache.reset_cache()
        shutil.rmtree(self.path, ignore_errors=True)


def make_pools(device: Any, options: Options) -> Pools:
    """This process's runner (session 0 of the most threads) and the pools of workers for the rest."""
    return Pools(Runner(device, options.backends, options.settings, options.threads), options)

