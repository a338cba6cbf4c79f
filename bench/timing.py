"""Per-call latency with a device sync, the seed's method, timed in interleaved rounds.

Every timed call is bracketed by the backend's sync (``block_until_ready`` for JAX,
``torch.cuda.synchronize`` on a GPU), after a warm-up. The things compared at one point
(its lanes) take turns in rounds, so drift on a shared, noisy machine hits all of them alike
and each round pairs them (:mod:`bench.stats` forms ratios per round). A :class:`Schedule`
says how many rounds, how many calls per lane in a round, and when to stop: after a fixed
number of rounds, or adaptively, once a stop rule (the statistics: "every interval is narrow
enough") is met or a time cap is reached.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

try:
    import resource
except ImportError:  # not Unix: no page-fault counts
    resource = None

__all__ = ["Timing", "Timed", "Schedule", "OtherLoad", "measure", "measure_many", "minor_faults", "ROUNDS"]

ROUNDS = 20


@dataclass(frozen=True, eq=False)
class Timing:
    """The timed calls of one lane, in milliseconds, one row per round.

    Attributes:
      samples_ms: ``(rounds, calls)`` latencies.
      faults: ``(rounds, calls)`` minor page faults of the process during each call (memory the
        OS maps in on first touch, 4 KiB a fault), or ``None`` where the OS does not count them.

    Examples:
        >>> t = Timing(np.array([[1.0, 2.0], [3.0, 4.0]]))
        >>> t.median_ms, t.repeat, t.rounds
        (2.5, 4, 2)
    """

    samples_ms: np.ndarray
    faults: np.ndarray | None = None

    @property
    def faults_per_call(self) -> float | None:
        """The median call's minor page faults."""
        return None if self.faults is None else float(np.median(self.faults))

    @property
    def median_ms(self) -> float:
        return float(np.median(self.samples_ms))

    @property
    def p10_ms(self) -> float:
        return float(np.percentile(self.samples_ms, 10))

    @property
    def p90_ms(self) -> float:
        return float(np.percentile(self.samples_ms, 90))

    @property
    def repeat(self) -> int:
        """Timed calls in all."""
        return int(self.samples_ms.size)

    @property
    def rounds(self) -> int:
        return int(self.samples_ms.shape[0])


@dataclass(frozen=True)
class Timed:
    """What :func:`measure_many` times: ``run(setup())`` then ``sync`` on its output.

    Attributes:
      run: one call; gets the value ``setup`` made (or ``None``) and returns the output.
      sync: waits until a value (or, given ``None``, the device) is ready.
      setup: untimed preparation before each call (e.g. a fresh input to donate), or ``None``.
    """

    run: Callable[[Any], Any]
    sync: Callable[[Any], None]
    setup: Callable[[], Any] | None = None


@dataclass(frozen=True)
class Schedule:
    """How long to time.

    Attributes:
      warmup: untimed calls of each lane first (at least one, so nothing compiles in the loop).
      rounds: rounds always run.
      calls: calls per lane per round; ``None`` sizes each lane's calls to ``round_s``.
      round_s: time per lane per round when ``calls`` is ``None``.
      max_calls: the most calls per lane per round.
      max_rounds: the most rounds when a stop rule asks for more (``None``: ``rounds``).
      time_cap_s: no new round starts after this many seconds of timing (``None``: no cap).
      check_every: rounds between two looks at the stop rule.

    Examples:
        >>> Schedule.fixed(warmup=3, repeat=30)
        Schedule(warmup=3, rounds=30, calls=1, round_s=0.005, max_calls=20, max_rounds=None, time_cap_s=None, check_every=5)
    """

    warmup: int
    rounds: int = ROUNDS
    calls: int | None = None
    round_s: float = 0.005
    max_calls: int = 20
    max_rounds: int | None = None
    time_cap_s: float | None = None
    check_every: int = 5

    def __post_init__(self) -> None:
        if self.warmup < 0 or self.rounds < 1 or (self.calls is not None and self.calls < 1):
            raise ValueError(f"need warmup >= 0, rounds >= 1 and calls >= 1, got {self}")

    @classmethod
    def fixed(cls, warmup: int, repeat: int, rounds: int = ROUNDS) -> Schedule:
        """Exactly ``repeat`` timed calls per lane where it divides, spread over up to ``rounds`` rounds.

        Args:
          warmup: untimed calls first.
          repeat: timed calls per lane (at most this many).
          rounds: the most rounds.
        """
        if repeat < 1:
            raise ValueError(f"repeat must be >= 1, got {repeat}")
        calls = max(1, repeat // rounds)
        return cls(warmup=warmup, rounds=repeat // calls, calls=calls)


def minor_faults() -> int | None:
    """Minor page faults of this process so far (every thread), or ``None`` off Unix."""
    if resource is None:
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _call(timed: Timed) -> tuple[float, int | None]:
    """One call's seconds and the minor page faults taken while it ran (read outside the timed span)."""
    arg = timed.setup() if timed.setup else None
    timed.sync(arg)
    before = minor_faults()
    start = time.perf_counter()
    out = timed.run(arg)
    timed.sync(out)
    elapsed = time.perf_counter() - start
    after = minor_faults()
    return elapsed, None if before is None or after is None else after - before


def measure_many(
    items: Mapping[Hashable, Timed],
    schedule: Schedule,
    *,
    group: Callable[[Hashable], Hashable] | None = None,
    stop: Callable[[dict[Hashable, np.ndarray]], bool] | None = None,
    between_rounds: Callable[[], None] | None = None,
    seed: int = 0,
) -> dict[Hashable, Timing]:
    """Time each item per call, interleaved in rounds.

    Each round visits the groups (e.g. backends) in a fresh random order; within a group the
    round's calls of its items are shuffled together, one call at a time. So items of one
    group (AffinePRCM and PRCM on jax-jit) are compared call by call, while groups (torch and
    JAX, whose thread pools would otherwise fight over the same cores) run apart, in blocks
    spread over the whole measurement. Every item gets the same number of calls in every round.

    Args:
      items: the callables to compare, by name.
      schedule: warm-up, rounds, calls per round and when to stop.
      group: the group of an item (default: one group for all).
      stop: the stop rule, given the ``(rounds, calls)`` samples so far in ms; looked at every
        ``schedule.check_every`` rounds once ``schedule.rounds`` have run.
      between_rounds: untimed work before each round (e.g. fresh copies of the inputs, so
        that their placement in memory varies from round to round as it does from run to run).
      seed: seed of the shuffles.

    Examples:
        >>> s = Schedule.fixed(warmup=1, repeat=7)
        >>> t = measure_many({"a": Timed(lambda _: sum(range(99)), lambda _: None)}, s)
        >>> t["a"].repeat, t["a"].p10_ms <= t["a"].median_ms <= t["a"].p90_ms
        (7, True)
    """
    calls = {}
    for name, timed in items.items():
        fastest = min(_call(timed)[0] for _ in range(max(schedule.warmup, 1)))
        wanted = schedule.round_s / fastest if fastest > 0 else schedule.max_calls
        calls[name] = schedule.calls or max(1, min(schedule.max_calls, int(wanted)))
    groups: dict[Hashable, list[Hashable]] = {}
    for name in items:
        groups.setdefault(group(name) if group else None, []).append(name)
    rows: dict[Hashable, list[list[float]]] = {name: [] for name in items}
    faults: dict[Hashable, list[list[int | None]]] = {name: [] for name in items}
    rng = np.random.default_rng(seed)
    keys = list(groups)
    most = max(schedule.rounds, schedule.max_rounds or 0)
    started = time.perf_counter()
    for r in range(most):
        if r >= schedule.rounds:
            capped = schedule.time_cap_s is not None and time.perf_counter() - started > schedule.time_cap_s
            looked = (r - schedule.rounds) % schedule.check_every == 0
            if capped or stop is None or looked and stop(_samples(rows)):
                break
        if between_rounds:
            between_rounds()
        for name in items:
            rows[name].append([])
            faults[name].append([])
        for g in rng.permutation(len(keys)):
            turns = [m for m in groups[keys[g]] for _ in range(calls[m])]
            for i in rng.permutation(len(turns)):
                seconds, faulted = _call(items[turns[i]])
                rows[turns[i]][-1].append(seconds * 1e3)
                faults[turns[i]][-1].append(faulted)
    counted = _samples(faults) if resource is not None else {}
    return {name: Timing(samples, counted.get(name)) for name, samples in _samples(rows).items()}


def _samples(rows: dict[Hashable, list[list[Any]]]) -> dict[Hashable, np.ndarray]:
    return {name: np.asarray(r, dtype=np.float64) for name, r in rows.items()}


def measure(run: Callable[[Any], Any], sync: Callable[[Any], None], *, warmup: int, repeat: int,
            setup: Callable[[], Any] | None = None) -> Timing:  # fmt: skip
    """Time one callable ``repeat`` times (where ``repeat`` divides into rounds); see :func:`measure_many`.

    Examples:
        >>> measure(lambda _: None, lambda _: None, warmup=0, repeat=3).repeat
        3
    """
    return measure_many({"": Timed(run, sync, setup)}, Schedule.fixed(warmup, repeat))[""]



def _busy_s() -> float | None:
    """Seconds every CPU of the machine has spent busy since boot (``/proc/stat``), or ``None``."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK")


class OtherLoad:
    """How busy other processes kept the machine while a block ran: the CPU time the whole
    machine spent busy, minus this process's own, over the wall time of all its CPUs.

    On a shared machine this is the first thing to look at when a result moves between runs
    (a thread pool that needs every core waits whenever another process holds one).
    ``share`` is ``None`` where ``/proc/stat`` cannot be read.

    Examples:
        >>> with OtherLoad() as load:
        ...     _ = sum(range(10))
        >>> load.share is None or 0.0 <= load.share <= 1.0
        True
    """

    share: float | None = None

    def __enter__(self) -> OtherLoad:
        self._start = (time.perf_counter(), _busy_s(), sum(os.times()[:2]))
        return self

    def __exit__(self, *exc: object) -> None:
        wall, busy, own = time.perf_counter(), _busy_s(), sum(os.times()[:2])
        if busy is None or self._start[1] is None or wall <= self._start[0]:
            return
        other = (busy - self._start[1]) - (own - self._start[2])
        self.share = min(1.0, max(0.0, other / ((wall - self._start[0]) * (os.cpu_count() or 1))))
