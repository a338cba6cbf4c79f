"""Per-call latency with a device sync, the seed's method, with compile kept apart.

Every timed call is bracketed by the backend's sync (``block_until_ready`` for JAX,
``torch.cuda.synchronize`` on a GPU), after a warm-up. When several callables are compared
(the lanes of one point), their timed calls are interleaved (:func:`measure_many`), so that
drift on a shared, noisy machine hits all of them alike and their ratios stay honest. The
repeat count adapts to a time budget between a floor and the requested maximum.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Timing", "Timed", "measure", "measure_many", "MIN_REPEAT", "ROUNDS"]

MIN_REPEAT = 5
ROUNDS = 20


@dataclass(frozen=True)
class Timing:
    """Summary of the timed calls, in milliseconds.

    Attributes:
      median_ms: median latency.
      p10_ms: 10th percentile.
      p90_ms: 90th percentile.
      repeat: number of timed calls.
    """

    median_ms: float
    p10_ms: float
    p90_ms: float
    repeat: int


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


def _call(timed: Timed) -> float:
    arg = timed.setup() if timed.setup else None
    timed.sync(arg)
    start = time.perf_counter()
    out = timed.run(arg)
    timed.sync(out)
    return time.perf_counter() - start


def measure_many(
    items: Mapping[Hashable, Timed],
    *,
    warmup: int,
    repeat: int,
    budget_s: float | None = None,
    rounds: int = ROUNDS,
    group: Callable[[Hashable], Hashable] | None = None,
) -> dict[Hashable, Timing]:
    """Time each item per call, interleaved.

    The items take turns in ``rounds`` rounds, each round visiting the groups (e.g. backends)
    in a fresh random order; within a group the round's calls of its items are shuffled
    together, one call at a time. So items of one group (AffinePRCM and PRCM on jax-jit) are
    compared call by call, while groups (torch and JAX, whose thread pools would otherwise
    fight over the same cores) run apart, in blocks spread over the whole measurement.

    Args:
      items: the callables to compare, by name.
      warmup: untimed calls of each first (at least one, so nothing compiles in the loop).
      repeat: the most timed calls of each.
      budget_s: time budget per item: fewer calls when one call is slow (never fewer than
        ``MIN_REPEAT``); ``None`` takes ``repeat`` calls.
      rounds: how many times the groups take turns; an item with fewer calls than rounds
        sits some rounds out.
      group: the group of an item (default: one group for all).

    >>> t = measure_many({"a": Timed(lambda _: sum(range(99)), lambda _: None)}, warmup=1, repeat=7)
    >>> t["a"].repeat, t["a"].p10_ms <= t["a"].median_ms <= t["a"].p90_ms
    (7, True)
    """
    if repeat < 1 or warmup < 0:
        raise ValueError(f"repeat must be >= 1 and warmup >= 0, got repeat={repeat}, warmup={warmup}")
    counts = {}
    for name, timed in items.items():
        last = min(_call(timed) for _ in range(max(warmup, 1)))
        n = repeat if budget_s is None or last <= 0 else max(min(repeat, MIN_REPEAT), min(repeat, int(budget_s / last)))
        counts[name] = n
    groups: dict[Hashable, list[Hashable]] = {}
    for name in items:
        groups.setdefault(group(name) if group else None, []).append(name)
    samples: dict[Hashable, list[float]] = {name: [] for name in items}
    rng = np.random.default_rng(0)
    keys = list(groups)
    for r in range(rounds):
        for members in (groups[keys[g]] for g in rng.permutation(len(keys))):
            # each member's calls spread evenly over the rounds, shuffled call by call
            turns = [m for m in members for _ in range(counts[m] * (r + 1) // rounds - counts[m] * r // rounds)]
            for i in rng.permutation(len(turns)):
                samples[turns[i]].append(_call(items[turns[i]]))
    out = {}
    for name, values in samples.items():
        p10, median, p90 = np.percentile(np.asarray(values) * 1e3, [10, 50, 90])
        out[name] = Timing(float(median), float(p10), float(p90), len(values))
    return out


def measure(run: Callable[[Any], Any], sync: Callable[[Any], None], *, warmup: int, repeat: int,
            budget_s: float | None = None, setup: Callable[[], Any] | None = None) -> Timing:  # fmt: skip
    """Time one callable; see :func:`measure_many`.

    >>> measure(lambda _: None, lambda _: None, warmup=0, repeat=3).repeat
    3
    """
    return measure_many({"": Timed(run, sync, setup)}, warmup=warmup, repeat=repeat, budget_s=budget_s)[""]
