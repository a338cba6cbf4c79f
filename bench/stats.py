"""The benchmark's statistics: ratios of timings with paired bootstrap confidence intervals,
significance, and stability flags. Every suite, the adaptive stop and the report use them.

The lanes of one point are timed in interleaved rounds (:mod:`bench.timing`), so the calls of
two lanes in one round met the same machine. A ratio ``a / b`` is formed per round (from each
lane's median call in that round) and summarised by the median over rounds; its 95% interval
is a percentile bootstrap that resamples whole rounds, keeping each round's pair together.
Drift that hits both lanes of a round cancels in its ratio, so the interval is as narrow as
the pairing allows — the tools that treat the two samples as independent (pyperf, hyperfine,
criterion.rs, google-benchmark, asv) cannot do that. Samples timed apart (two thread settings,
two runs) get :func:`unpaired_ratio`, which resamples each side on its own.

Timings are ``(rounds, calls)`` arrays, one row per round.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "RESAMPLES", "CONFIDENCE", "NOISE", "MIN_ROUNDS", "SPREAD", "METHOD", "Ratio", "paired_ratio", "unpaired_ratio",
    "round_medians", "spread", "bimodal", "stability", "ADVICE", "LOAD",
]  # fmt: skip

#: Bootstrap resamples per interval.
RESAMPLES = 2000
#: Confidence level of every interval.
CONFIDENCE = 0.95
#: A ratio whose interval reaches within this of 1 (``[1/1.02, 1.02]``) is not significant.
NOISE = 0.02
#: A lane whose interquartile range is this fraction of its median or more is flagged
#: (the threshold ``torch.utils.benchmark`` warns at).
SPREAD = 0.10
#: Share of the machine's CPU time used by other processes from which a flag names them.
LOAD = 0.10
#: How the intervals are computed, for ``results.json``'s ``meta``.
METHOD = (
    "paired percentile bootstrap over interleaved rounds: per round, each lane's median call; "
    "ratio = median over rounds of the per-round ratio; rounds resampled with replacement, "
    "pairs kept together; where a point was timed in several processes (sessions): ratio = mean over "
    "sessions of each session's median log-ratio, interval = the wider of a Student-t interval over the "
    "sessions' estimates (G - 1 degrees of freedom) and a two-stage bootstrap (sessions, then rounds) "
    "of that same mean of session medians; "
    "fewer than 5 rounds (per session): no interval"
)
#: What to do about a flagged lane.
ADVICE = (
    "another process competed for the cores or the lane switched speed during the run; the CI "
    "already includes that noise, but to narrow it: rerun on an idle machine, compare at "
    "--threads 1 (one core is rarely taken from a single thread), or give it more rounds (--repeat)"
)


@dataclass(frozen=True)
class Ratio:
    """A ratio of timings with its confidence interval.

    Attributes:
      value: the estimate (numerator time / denominator time).
      lo: lower end of the interval.
      hi: upper end of the interval.
      noise: the threshold below which a difference is not a finding.

    >>> r = Ratio(1.734, 1.652, 1.811)
    >>> str(r), r.significant
    ('1.73x [1.65, 1.81]', True)
    >>> Ratio(1.01, 0.99, 1.03).significant
    False
    >>> [(str(r), r.significant) for r in (Ratio(1.03, 1.0198, 1.04), Ratio(1.03, 1.0203, 1.04))]
    [('1.03x [1.019, 1.04]', False), ('1.03x [1.021, 1.04]', True)]
    >>> [(str(r), r.significant) for r in (Ratio(0.95, 0.92, 0.9805), Ratio(0.95, 0.92, 0.9803))]
    [('0.95x [0.92, 0.981]', False), ('0.95x [0.92, 0.980]', True)]
    >>> str(Ratio(1.03, 1.019, 1.04)), str(Ratio(0.99, 0.98, 0.9995, noise=0.001))
    ('1.03x [1.019, 1.04]', '0.99x [0.98, 1.000]')
    """

    value: float
    lo: float
    hi: float
    noise: float = NOISE

    @property
    def significant(self) -> bool:
        """Whether the whole interval lies beyond the noise threshold on one side of 1."""
        return self.lo > 1 + self.noise or self.hi < 1 / (1 + self.noise)

    @property
    def width(self) -> float:
        """Width of the interval relative to the estimate."""
        return (self.hi - self.lo) / self.value

    def __str__(self) -> str:
        return f"{self.value:.2f}x [{self._bound(self.lo)}, {self._bound(self.hi)}]"

    def _bound(self, v: float) -> str:
        """Two decimals; near a noise threshold three, rounded away from it, so the printed bound
        lies on the threshold's side the bound does (``[1.019, ...]`` is not significant,
        ``[1.021, ...]`` is, for bounds 1.0198 and 1.0203)."""
        threshold = min((1 + self.noise, 1 / (1 + self.noise)), key=lambda t: abs(v - t))
        if abs(v - threshold) < 0.005:
            step = math.floor if v <= threshold else math.ceil
            return f"{step(round(v * 1000, 6)) / 1000:.3f}"  # round first: 1.019 * 1000 is 1018.999...
        return f"{v:.2f}"


def round_medians(samples: np.ndarray) -> np.ndarray:
    """Each round's median call, shape ``(rounds,)``.

    Args:
      samples: ``(rounds, calls)`` timings.

    >>> round_medians(np.array([[1.0, 3.0, 2.0], [5.0, 4.0, 6.0]])).tolist()
    [2.0, 5.0]
    """
    samples = np.asarray(samples, dtype=np.float64)
    if samples.ndim != 2 or samples.size == 0:
        raise ValueError(f"expected (rounds, calls) timings, got shape {samples.shape}")
    return np.median(samples, axis=1)


def _interval(boot: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1 - confidence) / 2 * 100
    lo, hi = np.percentile(boot, [tail, 100 - tail])
    return float(lo), float(hi)


#: Fewer rounds (or, with sessions, fewer rounds in a session) than this give no interval.
MIN_ROUNDS = 5
#: Student's t, 97.5% quantile, by degrees of freedom (the 95% interval over sessions).
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


def _t975(df: int) -> float:
    return _T975.get(df, 1.96 + 2.5 / df)  # within 0.3% of the exact quantile beyond 10


def _groups(n: int, sessions: np.ndarray | None) -> list[np.ndarray]:
    """The rounds of each session (one group of all ``n`` rounds without sessions)."""
    if sessions is None:
        return [np.arange(n)]
    if len(sessions) != n:
        raise ValueError(f"need a session per round: {len(sessions)} sessions for {n} rounds")
    return [np.flatnonzero(sessions == s) for s in np.unique(sessions)]


def _medians(values: np.ndarray, groups: list[np.ndarray]) -> np.ndarray:
    """Each session's median; every ratio reports their mean (for one session, the median of
    its rounds)."""
    return np.array([np.median(values[g]) for g in groups])


def _bootstrap(values: np.ndarray, groups: list[np.ndarray], resamples: int, rng: np.random.Generator) -> np.ndarray:
    """The mean of :func:`_medians` over ``resamples`` two-stage resamples: sessions with replacement, then
    rounds with replacement within each drawn session, afresh for each draw of it (for one session, its rounds)."""
    picks = rng.integers(0, len(groups), (resamples, len(groups)))  # the sessions each resample draws
    medians = np.empty(picks.shape)
    for i, g in enumerate(groups):
        drawn = picks == i
        medians[drawn] = np.median(values[g][rng.integers(0, g.size, (int(drawn.sum()), g.size))], axis=1)
    return medians.mean(axis=1)


def _too_few(groups: list[np.ndarray]) -> bool:
    return min(g.size for g in groups) < MIN_ROUNDS


def paired_ratio(a: np.ndarray, b: np.ndarray, *, sessions: np.ndarray | None = None, resamples: int = RESAMPLES,
                 confidence: float = CONFIDENCE, seed: int = 0) -> Ratio:  # fmt: skip
    """``a / b`` from rounds timed together, with a paired bootstrap interval.

    Args:
      a: numerator timings, ``(rounds, calls)``.
      b: denominator timings from the same rounds, ``(rounds, calls_b)``.
      sessions: for rounds timed in several processes, the process of each round. What a
        process fixes for its whole life (code and buffer placement, the core it runs on)
        then counts as it does between runs: the ratio is the mean over sessions of each
        session's median log-ratio (every session weighs the same), and the interval the
        wider of a Student-t interval over the sessions' estimates (G - 1 degrees of
        freedom) and a two-stage bootstrap of the same statistic (sessions, then rounds within
        each).
      resamples: bootstrap resamples.
      confidence: confidence level (0.95 with sessions).
      seed: seed of the resampling (results are reproducible).

    Fewer than :data:`MIN_ROUNDS` rounds (in any session) give no interval: ``[0, inf]``,
    never significant.

    >>> rng = np.random.default_rng(0)
    >>> drift = np.exp(rng.normal(0, 0.3, (30, 1)))  # whole rounds slower or faster
    >>> b = drift * rng.lognormal(0, 0.02, (30, 5))
    >>> r = paired_ratio(1.5 * b * rng.lognormal(0, 0.02, (30, 5)), b)
    >>> r.lo < 1.5 < r.hi, r.significant
    (True, True)
    >>> a = 1.5 * b * rng.lognormal(0, 0.02, (30, 5))
    >>> a[10:20] *= 1.05; a[20:] *= 1.1  # three processes, the numerator 5% and 10% slower in two
    >>> print(paired_ratio(a[:10], b[:10]), paired_ratio(a[20:], b[20:]))  # two processes alone
    1.50x [1.49, 1.51] 1.66x [1.65, 1.67]
    >>> print(paired_ratio(a, b, sessions=np.repeat([0, 1, 2], 10)))
    1.57x [1.39, 1.78]
    >>> print(paired_ratio(a[:1], b[:1]))
    1.51x [0.00, inf]
    """
    ra, rb = round_medians(a), round_medians(b)
    if ra.shape != rb.shape:
        raise ValueError(f"paired timings need the same rounds, got {ra.size} and {rb.size}")
    logs = np.log(ra) - np.log(rb)
    groups = _groups(logs.size, sessions)
    per_session = _medians(logs, groups)
    value = float(np.mean(per_session))
    if _too_few(groups):
        return Ratio(float(np.exp(value)), 0.0, float("inf"))
    lo, hi = _interval(_bootstrap(logs, groups, resamples, np.random.default_rng(seed)), confidence)
    if per_session.size > 1:
        lo, hi = _widest((lo, hi), value, per_session, confidence=confidence)
    return Ratio(float(np.exp(value)), float(np.exp(lo)), float(np.exp(hi)))


def _widest(interval: tuple[float, float], value: float, *estimates: np.ndarray, confidence: float) -> tuple[float, float]:
    """``interval`` widened to the Student-t interval of ``value`` from per-session estimates
    (one array for a paired ratio; for a difference of two unpaired sides, each side timed in
    several sessions; Welch's smaller degrees of freedom)."""
    if confidence != 0.95:
        raise ValueError(f"the interval over sessions is a 95% one, got confidence {confidence}")
    se2 = sum(np.var(e, ddof=1) / e.size for e in estimates)
    half = _t975(min(e.size for e in estimates) - 1) * float(np.sqrt(se2))
    return min(interval[0], value - half), max(interval[1], value + half)


def unpaired_ratio(a: np.ndarray, b: np.ndarray, *, sessions_a: np.ndarray | None = None,
                   sessions_b: np.ndarray | None = None, resamples: int = RESAMPLES, confidence: float = CONFIDENCE,
                   seed: int = 0) -> Ratio:  # fmt: skip
    """``a / b`` for timings taken apart: each side's estimate (its median round, or with
    sessions the mean of the sessions' medians, as in :func:`paired_ratio`), each resampled on
    its own (sessions, then rounds).

    Args:
      a: numerator timings, ``(rounds, calls)``.
      b: denominator timings, ``(rounds_b, calls_b)``, from other rounds.
      sessions_a: the process of each round of ``a``; a side timed in several sessions also
        widens the interval to a Student-t interval over its sessions' medians.
      sessions_b: the same for ``b``.
      resamples: bootstrap resamples.
      confidence: confidence level.
      seed: seed of the resampling.

    >>> rng = np.random.default_rng(1)
    >>> r = unpaired_ratio(rng.lognormal(0, 0.05, (20, 3)), rng.lognormal(0, 0.05, (25, 3)))
    >>> r.lo < 1 < r.hi, r.significant
    (True, False)
    """
    la, lb = np.log(round_medians(a)), np.log(round_medians(b))
    ga, gb = _groups(la.size, sessions_a), _groups(lb.size, sessions_b)
    ma, mb = _medians(la, ga), _medians(lb, gb)
    value = float(np.mean(ma) - np.mean(mb))
    if _too_few(ga) or _too_few(gb):
        return Ratio(float(np.exp(value)), 0.0, float("inf"))
    rng = np.random.default_rng(seed)
    lo, hi = _interval(_bootstrap(la, ga, resamples, rng) - _bootstrap(lb, gb, resamples, rng), confidence)
    several = [m for m in (ma, mb) if m.size > 1]
    if several:  # a side timed in one process adds its bootstrap spread only
        lo, hi = _widest((lo, hi), value, *several, confidence=confidence)
    return Ratio(float(np.exp(value)), float(np.exp(lo)), float(np.exp(hi)))


def spread(samples: np.ndarray) -> float:
    """Interquartile range over median of all calls.

    Args:
      samples: timings of one lane, any shape.

    >>> round(spread(np.array([1.0, 2.0, 3.0, 4.0, 5.0])), 2)
    0.67
    """
    q1, median, q3 = np.percentile(np.asarray(samples, dtype=np.float64), [25, 50, 75])
    return float((q3 - q1) / median)


def bimodal(samples: np.ndarray, *, min_share: float = 0.2, min_gap: float = 0.05) -> bool:
    """Whether the calls fall into two speeds: split at the widest gap in log-time that leaves
    at least ``min_share`` of the calls on each side, the gap is bimodal when it is wider than
    ``min_gap`` (5%) and than the interquartile range of each side.

    Args:
      samples: timings of one lane, any shape.
      min_share: the smallest share of calls a mode must hold.
      min_gap: the smallest gap, in log-time, between the modes.

    >>> rng = np.random.default_rng(0)
    >>> bimodal(rng.lognormal(0, 0.02, 200))
    False
    >>> bimodal(np.concatenate([rng.lognormal(0, 0.02, 100), rng.lognormal(0.4, 0.02, 100)]))
    True
    """
    logs = np.sort(np.log(np.ravel(np.asarray(samples, dtype=np.float64))))
    n = logs.size
    first, last = max(int(np.ceil(min_share * n)), 2), n - max(int(np.ceil(min_share * n)), 2)
    if last <= first:
        return False
    gaps = np.diff(logs)[first - 1 : last]
    cut = first + int(np.argmax(gaps))
    gap = float(logs[cut] - logs[cut - 1])
    iqr = max(float(np.subtract(*np.percentile(side, [75, 25]))) for side in (logs[:cut], logs[cut:]))
    return gap > min_gap and gap > iqr


def stability(samples: np.ndarray, *, threshold: float = SPREAD, load: float | None = None) -> str | None:
    """Why a lane's timings are not to be read as one number, or ``None`` when they are.

    Both checks look at the rounds' medians (as ``torch.utils.benchmark`` looks at blocks of
    calls, not at single calls): a lane is flagged when they spread too wide or fall into two
    speeds, which is what moves a ratio between runs.

    Args:
      samples: ``(rounds, calls)`` timings of one lane.
      threshold: the spread (interquartile range / median of the round medians) that is flagged.
      load: the share of the machine's CPU time other processes used meanwhile; from
        :data:`LOAD` on, it is named as the likely cause.

    >>> stability(np.full((20, 3), 1.0)) is None
    True
    >>> stability(np.linspace(1.0, 2.0, 60).reshape(20, 3))
    'spread: IQR/median of the rounds 32% >= 10%'
    """
    rounds = round_medians(samples)
    flags = []
    if (s := spread(rounds)) >= threshold:
        flags.append(f"spread: IQR/median of the rounds {s:.0%} >= {threshold:.0%}")
    if bimodal(rounds):
        flags.append("bimodal: the rounds ran at two speeds")
    if flags and load is not None and load >= LOAD:
        flags.append(f"other processes used {load:.0%} of the CPUs meanwhile")
    return "; ".join(flags) or None
