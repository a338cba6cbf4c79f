"""The benchmark's statistics: ratios of timings with confidence intervals over processes,
significance controlled over a report, and stability flags. Every suite, the adaptive stop
and the report use them.

The lanes of one point are timed in interleaved rounds (:mod:`bench.timing`), so the calls of
two lanes in one round met the same machine, and each point is timed in several processes
(sessions). Within a session, a ratio ``a / b`` is formed per round (from each lane's median
call in that round) and summarised by the median over rounds: drift that hits both lanes of a
round cancels in its ratio. What a process fixes for its whole life (code and buffer
placement, the core it starts on) moves every round of it alike, so the interval over
processes is a Student-t interval over the sessions' log-estimates; sessions that disagree
beyond that (another regime) make the ratio *unstable*, with no value. A ratio from one
session keeps the paired round bootstrap, which covers the rounds of that one process only.
Significance needs the interval beyond the noise band ``[1/1.02, 1.02]`` and, over a report's
comparisons, Benjamini-Hochberg (:func:`adjust`). The method and the simulations that check it
are in ``docs/benchmark/statistics.md``.

Timings are ``(rounds, calls)`` arrays, one row per round.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

__all__ = [
    "RESAMPLES", "CONFIDENCE", "NOISE", "FDR", "PROCESS", "HETEROGENEITY", "MIN_ROUNDS", "SPREAD", "METHOD", "Ratio",
    "paired_ratio", "unpaired_ratio", "adjust", "false_findings", "round_medians", "spread", "bimodal", "stability",
    "ADVICE", "LOAD",
]  # fmt: skip

#: Bootstrap resamples of a session's rounds.
RESAMPLES = 2000
#: Confidence level of every interval.
CONFIDENCE = 0.95
#: The noise band: a ratio whose interval reaches into ``[1/(1 + NOISE), 1 + NOISE]`` (symmetric
#: in log, so ``a / b`` and ``b / a`` agree) is not significant.
NOISE = 0.02
#: False discovery rate at which :func:`adjust` controls a report's findings (Benjamini-Hochberg).
FDR = 0.05
#: The spread of a ratio between processes (SD of its log) that counts as ordinary: sessions
#: disagreeing beyond it and their own intervals are unstable; a side of :func:`unpaired_ratio`
#: timed in one process is assumed to vary this much.
PROCESS = 0.05
#: Significance level of the heterogeneity test (Cochran's Q) below which a ratio is unstable.
HETEROGENEITY = 0.01
#: Fewer rounds in a session than this give no interval.
MIN_ROUNDS = 5
#: A lane whose interquartile range is this fraction of its median or more is flagged
#: (the threshold ``torch.utils.benchmark`` warns at).
SPREAD = 0.10
#: Share of the machine's CPU time used by other processes from which a flag names them.
LOAD = 0.10
#: How the intervals are computed, for ``results.json``'s ``meta``.
METHOD = (
    "per round, each lane's median call; per session (process), the median over its rounds of the per-round log-ratio "
    "(paired: both lanes' calls in one round met the same machine); interval over sessions: Student-t on the sessions' "
    "log-estimates (G - 1 degrees of freedom; unpaired: Welch, a side timed in one process assumed to vary by "
    f"{PROCESS:.0%}); no session-level bootstrap; sessions that disagree beyond their within-session variance plus a "
    f"{PROCESS:.0%} process SD (Cochran's Q, p < {HETEROGENEITY}) make the ratio 'unstable: sessions disagree' "
    "(per-session values, no ratio, no significance); within-session variance from a bootstrap of rounds, in circular "
    "blocks where the rounds' lag-1 autocorrelation (pooled over sessions) is significant; one session: that "
    "bootstrap's percentile interval, which covers the rounds of one process only; significant: the interval beyond "
    f"[1/{1 + NOISE:g}, {1 + NOISE:g}] and Benjamini-Hochberg at {FDR:.0%} FDR over a report's comparisons; fewer "
    f"than {MIN_ROUNDS} rounds in a session: no interval"
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
      value: the estimate (numerator time / denominator time); NaN when unstable.
      lo: lower end of the interval.
      hi: upper end of the interval.
      noise: the noise band's half-width: ``[1/(1 + noise), 1 + noise]``.
      p: p-value of the ratio lying inside the noise band (two-sided, the interval's test:
        ``p < 0.05`` exactly when the 95% interval clears the band); 1.0 without an interval.
      dof: degrees of freedom of the Student-t interval (``inf``: normal), ``None`` for a
        bootstrap interval.
      sessions: each session's ratio (unpaired: each session of one side against the other
        side's estimate, the numerator's sessions first).
      covers: what the interval covers: ``"processes"`` (estimated from the sessions),
        ``"assumed"`` (a side timed in one process, assumed to vary by :data:`PROCESS`), or
        ``"rounds"`` (the rounds of one process only: not what another run would get).
      unstable: the sessions disagree beyond their intervals: no value, never significant.
      q: the Benjamini-Hochberg adjusted p-value over a report's comparisons (:func:`adjust`).

    Examples:
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
        >>> Ratio(1.5, 1.4, 1.6, q=0.2).significant  # beyond the band, but not a finding over the report
        False
        >>> r = Ratio(math.nan, 0.0, math.inf, sessions=(1.5, 1.51, 2.2), unstable=True)
        >>> str(r), r.significant
        ('unstable: sessions disagree (1.50x, 1.51x, 2.20x)', False)
    """

    value: float
    lo: float
    hi: float
    noise: float = NOISE
    p: float | None = None
    dof: float | None = None
    sessions: tuple[float, ...] = ()
    covers: str = "processes"
    unstable: bool = False
    q: float | None = None

    @property
    def significant(self) -> bool:
        """Whether the whole interval lies beyond the noise band on one side of 1 and, once
        :func:`adjust` ran, the ratio is a finding at :data:`FDR`."""
        beyond = self.lo > 1 + self.noise or self.hi < 1 / (1 + self.noise)
        return not self.unstable and beyond and (self.q is None or self.q <= FDR)

    @property
    def width(self) -> float:
        """Width of the interval relative to the estimate."""
        return (self.hi - self.lo) / self.value

    def __str__(self) -> str:
        if self.unstable:
            return "unstable: sessions disagree (" + ", ".join(f"{s:.2f}x" for s in self.sessions) + ")"
        where = {"rounds": " (one process)", "assumed": " (process spread assumed)"}.get(self.covers, "")
        return f"{self.value:.2f}x [{self._bound(self.lo)}, {self._bound(self.hi)}]{where}"

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

    Examples:
        >>> round_medians(np.array([[1.0, 3.0, 2.0], [5.0, 4.0, 6.0]])).tolist()
        [2.0, 5.0]
    """
    samples = np.asarray(samples, dtype=np.float64)
    if samples.ndim != 2 or samples.size == 0:
        raise ValueError(f"expected (rounds, calls) timings, got shape {samples.shape}")
    return np.median(samples, axis=1)


# The pieces below work on arrays with any leading (batch) axes, so the tests' simulations run
# the same code as the public functions, many repetitions at once.


def _lag1(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sums of the lag-1 autocorrelation of each session's rounds (last axis): the
    cross-products of neighbours and the squares, each about the session's mean."""
    d = y - y.mean(axis=-1, keepdims=True)
    return (d[..., 1:] * d[..., :-1]).sum(axis=-1), (d * d).sum(axis=-1)


def _block(r1: np.ndarray, n: int, pooled: int) -> np.ndarray:
    """Block length for a session of ``n`` rounds at lag-1 autocorrelation ``r1`` (pooled over
    ``pooled`` rounds of all sessions): 1 (the plain bootstrap) unless ``r1`` is significant
    (one-sided 5%: ``r1 + 1/n`` above ``1.645 / sqrt(pooled)``, ``-1/n`` being its mean without
    autocorrelation); then ``r1`` corrected for the bias of short series
    (``E[r1] ~ phi - (1 + 3 phi) / n``) and Politis and White's (2004) rule for the
    circular block bootstrap under AR(1), ``(6 n phi^2 / (1 - phi^2)^2)^(1/3)``.

    Examples:
        >>> _block(np.array([0.1, 0.3, 0.6]), 60, 60).tolist()
        [1, 4, 8]
    """
    r1 = np.asarray(r1, dtype=np.float64)
    phi = np.where(r1 + 1 / n > 1.645 / math.sqrt(pooled), np.clip((n * r1 + 1) / max(n - 3, 1), 0.0, 0.95), 0.0)
    return np.clip(np.rint((6 * n * (phi / (1 - phi**2)) ** 2) ** (1 / 3)), 1, max(n // 2, 1)).astype(int)


def _boot_medians(y: np.ndarray, block: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Medians of circular-block resamples of the rounds (last axis), ``(..., resamples)``;
    ``block=1`` resamples single rounds."""
    n = y.shape[-1]
    starts = rng.integers(0, n, (resamples, -(-n // block)))
    picks = ((starts[:, :, None] + np.arange(block)) % n).reshape(resamples, -1)[:, :n]
    drawn = y[..., picks]
    middle = [n // 2] if n % 2 else [n // 2 - 1, n // 2]
    drawn.partition(middle, axis=-1)  # in place, a fresh array: several times faster than np.median here
    return drawn[..., middle].mean(axis=-1)


def _within(y: np.ndarray, groups: list[np.ndarray], resamples: int, rng: np.random.Generator) -> tuple[np.ndarray, list[np.ndarray]]:
    """Each session's estimate (median of its rounds) and its bootstrap replicates, in circular
    blocks where the rounds' lag-1 autocorrelation, pooled over the sessions, is significant."""
    sums = np.array([_lag1(y[g]) for g in groups]).sum(axis=0)
    r1 = sums[0] / sums[1] if sums[1] > 0 else 0.0
    boots = [_boot_medians(y[g], int(_block(r1, g.size, y.size)), resamples, rng) for g in groups]
    return np.array([np.median(y[g]) for g in groups]), boots


def _side(theta: np.ndarray, var: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One side's estimate from its sessions (last axis): the mean of their log-estimates, its
    variance (between sessions), degrees of freedom, and the heterogeneity p-value (Cochran's Q
    with weights ``1 / (within-session variance + PROCESS^2)``). One session: its estimate,
    its within-session variance plus ``PROCESS^2``, infinite degrees of freedom, p = 1."""
    g, batch = theta.shape[-1], theta.shape[:-1]
    if g == 1:
        return theta[..., 0], var[..., 0] + PROCESS**2, np.full(batch, np.inf), np.ones(batch)
    w = 1 / (var + PROCESS**2)
    centre = (w * theta).sum(axis=-1, keepdims=True) / w.sum(axis=-1, keepdims=True)
    q = (w * (theta - centre) ** 2).sum(axis=-1)
    return theta.mean(axis=-1), theta.var(axis=-1, ddof=1) / g, np.full(batch, g - 1.0), sps.chi2.sf(q, g - 1)


def _welch(var_a: np.ndarray, dof_a: np.ndarray, var_b: np.ndarray, dof_b: np.ndarray) -> np.ndarray:
    """Welch-Satterthwaite degrees of freedom of a difference (a side with infinite degrees of
    freedom adds none of its own)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.nan_to_num((var_a + var_b) ** 2 / (var_a**2 / dof_a + var_b**2 / dof_b), nan=np.inf)


def _t(est: np.ndarray, var: np.ndarray, dof: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The Student-t interval of a log-estimate, ``(lo, hi, p)``: ``p`` is the two-sided
    p-value of the log ratio lying in the noise band, the test the interval makes."""
    se, beyond = np.sqrt(var), np.abs(est) - math.log1p(NOISE)
    half = sps.t.ppf(0.5 + confidence / 2, dof) * se
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, beyond / se, np.where(beyond > 0, np.inf, -np.inf))
    return est - half, est + half, np.minimum(1.0, 2 * sps.t.sf(z, dof))


def _groups(n: int, sessions: np.ndarray | None) -> list[np.ndarray]:
    """The rounds of each session (one group of all ``n`` rounds without sessions)."""
    if sessions is None:
        return [np.arange(n)]
    sessions = np.asarray(sessions)
    if sessions.shape != (n,):
        raise ValueError(f"need a session per round: {sessions.shape} sessions for {n} rounds")
    return [np.flatnonzero(sessions == s) for s in np.unique(sessions)]


def _too_few(*groups: list[np.ndarray]) -> bool:
    return min(g.size for gs in groups for g in gs) < MIN_ROUNDS


def _unstable(sessions: np.ndarray, dof: float) -> Ratio:
    return Ratio(math.nan, 0.0, math.inf, p=1.0, dof=dof, sessions=tuple(np.exp(sessions).tolist()), unstable=True)


def paired_ratio(a: np.ndarray, b: np.ndarray, *, sessions: np.ndarray | None = None, resamples: int = RESAMPLES,
                 confidence: float = CONFIDENCE, seed: int = 0) -> Ratio:  # fmt: skip
    """``a / b`` from rounds timed together: per session, the median of the per-round
    log-ratios; over sessions, their mean and its Student-t interval (G - 1 degrees of freedom).

    Sessions that disagree beyond their own bootstrap variance plus :data:`PROCESS` (Cochran's
    Q below :data:`HETEROGENEITY`) give an unstable ratio: per-session values, no value, never
    significant. There is no bootstrap over sessions: with 5-10 of them it has too few distinct
    resamples and shrinks their variance by (G - 1) / G; the t interval is exact for normal
    session effects. One session gives the percentile interval of its paired round bootstrap,
    marked ``covers="rounds"``: it covers that process's rounds, not what another process gets.

    Args:
      a: numerator timings, ``(rounds, calls)``.
      b: denominator timings from the same rounds, ``(rounds, calls_b)``.
      sessions: the process (session) of each round, ``(rounds,)``; ``None``: one process.
      resamples: bootstrap resamples of each session's rounds (circular blocks where the
        rounds' lag-1 autocorrelation is significant).
      confidence: confidence level.
      seed: seed of the resampling (results are reproducible).

    Fewer than :data:`MIN_ROUNDS` rounds in a session give no interval: ``[0, inf]``, never
    significant.

    Examples:
        >>> rng = np.random.default_rng(0)
        >>> drift = np.exp(rng.normal(0, 0.3, (50, 1)))  # whole rounds slower or faster
        >>> b = drift * rng.lognormal(0, 0.02, (50, 5))
        >>> a = 1.5 * b * rng.lognormal(0, 0.02, (50, 5))
        >>> a *= np.repeat(np.exp(rng.normal(0, 0.025, 5)), 10)[:, None]  # five processes, each its own 2.5%
        >>> r = paired_ratio(a, b, sessions=np.repeat(np.arange(5), 10))
        >>> print(r); r.lo < 1.5 < r.hi, r.significant, r.dof, len(r.sessions)
        1.50x [1.46, 1.53]
        (True, True, 4.0, 5)
        >>> print(paired_ratio(a[:10], b[:10]))  # one process: its rounds alone, which miss 1.5
        1.52x [1.51, 1.53] (one process)
        >>> a[40:] *= 1.3  # the last process in another regime
        >>> print(paired_ratio(a, b, sessions=np.repeat(np.arange(5), 10)))
        unstable: sessions disagree (1.52x, 1.47x, 1.53x, 1.51x, 1.90x)
        >>> print(paired_ratio(a[:1], b[:1]))
        1.51x [0.00, inf] (one process)
    """
    ra, rb = round_medians(a), round_medians(b)
    if ra.shape != rb.shape:
        raise ValueError(f"paired timings need the same rounds, got {ra.size} and {rb.size}")
    y = np.log(ra) - np.log(rb)
    groups = _groups(y.size, sessions)
    covers = "rounds" if len(groups) == 1 else "processes"
    if _too_few(groups):
        value = float(np.mean([np.median(y[g]) for g in groups]))
        return Ratio(math.exp(value), 0.0, math.inf, p=1.0, covers=covers)
    theta, boots = _within(y, groups, resamples, np.random.default_rng(seed))
    per_session = tuple(np.exp(theta).tolist())
    if len(groups) == 1:
        return _rounds_only(float(theta[0]), boots[0], confidence)
    est, var, dof, het = _side(theta, np.array([np.var(bt, ddof=1) for bt in boots]))
    if het < HETEROGENEITY:
        return _unstable(theta, float(dof))
    lo, hi, p = _t(est, var, dof, confidence)
    return Ratio(math.exp(est), math.exp(lo), math.exp(hi), p=float(p), dof=float(dof), sessions=per_session, covers=covers)


def _rounds_only(est: float, boot: np.ndarray, confidence: float) -> Ratio:
    """One session's ratio: the percentile interval of its round bootstrap, and the p-value of
    the same test (twice the share of replicates inside the band on the estimate's side)."""
    tail = (1 - confidence) / 2 * 100
    lo, hi = np.percentile(boot, [tail, 100 - tail])
    margin = math.log1p(NOISE)
    inside = min(np.sum(boot <= margin), np.sum(boot >= -margin))
    p = min(1.0, 2 * (inside + 1) / (boot.size + 1))
    return Ratio(math.exp(est), math.exp(lo), math.exp(hi), p=p, sessions=(math.exp(est),), covers="rounds")


def unpaired_ratio(a: np.ndarray, b: np.ndarray, *, sessions_a: np.ndarray | None = None,
                   sessions_b: np.ndarray | None = None, resamples: int = RESAMPLES, confidence: float = CONFIDENCE,
                   seed: int = 0) -> Ratio:  # fmt: skip
    """``a / b`` for timings taken apart (two thread settings, two runs): each side's estimate
    is the mean over its sessions of their median log round-time; the interval is Welch's t on
    the sessions' log-estimates. A side timed in one process adds its round bootstrap's
    variance and the assumed process variance :data:`PROCESS` squared (``covers="assumed"``).

    Args:
      a: numerator timings, ``(rounds, calls)``.
      b: denominator timings, ``(rounds_b, calls_b)``, from other rounds.
      sessions_a: the process of each round of ``a``; ``None``: one process.
      sessions_b: the same for ``b``.
      resamples: bootstrap resamples of each session's rounds.
      confidence: confidence level.
      seed: seed of the resampling.

    A side whose sessions disagree (as in :func:`paired_ratio`) makes the ratio unstable.

    Examples:
        >>> rng = np.random.default_rng(1)
        >>> times = lambda t: t * np.exp(np.repeat(rng.normal(0, 0.03, 5), 10))[:, None] * rng.lognormal(0, 0.05, (50, 3))
        >>> r = unpaired_ratio(times(2.0), times(1.0), sessions_a=np.repeat(np.arange(5), 10), sessions_b=np.repeat(np.arange(5), 10))
        >>> print(r); r.lo < 2.0 < r.hi, r.significant, r.covers
        2.04x [1.93, 2.16]
        (True, True, 'processes')
        >>> print(unpaired_ratio(times(2.0)[:10], times(1.0)[:10]))
        1.94x [1.68, 2.23] (process spread assumed)
    """
    la, lb = np.log(round_medians(a)), np.log(round_medians(b))
    ga, gb = _groups(la.size, sessions_a), _groups(lb.size, sessions_b)
    if _too_few(ga, gb):
        value = np.mean([np.median(la[g]) for g in ga]) - np.mean([np.median(lb[g]) for g in gb])
        return Ratio(math.exp(value), 0.0, math.inf, p=1.0)
    rng = np.random.default_rng(seed)
    sides = []
    for y, groups in ((la, ga), (lb, gb)):
        theta, boots = _within(y, groups, resamples, rng)
        sides.append((theta, _side(theta, np.array([np.var(bt, ddof=1) for bt in boots]))))
    (theta_a, (est_a, var_a, dof_a, het_a)), (theta_b, (est_b, var_b, dof_b, het_b)) = sides
    per_session = np.concatenate([theta_a - est_b, est_a - theta_b])
    dof = _welch(var_a, dof_a, var_b, dof_b)
    if min(het_a, het_b) < HETEROGENEITY:
        return _unstable(per_session, float(dof))
    est = est_a - est_b
    lo, hi, p = _t(est, var_a + var_b, dof, confidence)
    covers = "processes" if min(len(ga), len(gb)) > 1 else "assumed"
    return Ratio(math.exp(est), math.exp(lo), math.exp(hi), p=float(p), dof=float(dof),
                 sessions=tuple(np.exp(per_session).tolist()), covers=covers)  # fmt: skip


def adjust(ratios: list[Ratio]) -> list[Ratio]:
    """The ratios of one report with Benjamini-Hochberg adjusted p-values (``q``): a ratio is
    then significant when its interval clears the noise band and ``q <= FDR``, which keeps the
    expected share of false findings among the significant ones at most :data:`FDR` (BH holds
    for the positively correlated tests of ratios sharing a lane). Unstable ratios and those
    without an interval count as tests with ``p = 1``.

    Args:
      ratios: every comparison of the report, each from :func:`paired_ratio` or
        :func:`unpaired_ratio` (they carry ``p``).

    Examples:
        >>> found = adjust([Ratio(1.5, 1.4, 1.6, p=0.001), Ratio(1.05, 1.03, 1.07, p=0.04), Ratio(1.0, 0.9, 1.1, p=0.9)])
        >>> [(round(r.q, 3), r.significant) for r in found]
        [(0.003, True), (0.06, False), (0.9, False)]
    """
    missing = [i for i, r in enumerate(ratios) if r.p is None]
    if missing:
        raise ValueError(f"adjust needs each ratio's p-value (from paired_ratio or unpaired_ratio); ratios {missing} have none")
    if not ratios:
        return []
    q = sps.false_discovery_control([r.p for r in ratios], method="bh")
    return [dataclasses.replace(r, q=float(qi)) for r, qi in zip(ratios, q, strict=True)]


def false_findings(ratios: list[Ratio]) -> float:
    """The expected number of false findings among adjusted ratios, at most: :data:`FDR` times
    the number of significant ones (what the report states next to its findings).

    Args:
      ratios: the output of :func:`adjust`.

    Examples:
        >>> false_findings(adjust([Ratio(1.5, 1.4, 1.6, p=1e-6)] * 40 + [Ratio(1.0, 0.9, 1.1, p=0.9)] * 60))
        2.0
    """
    if any(r.q is None for r in ratios):
        raise ValueError("false_findings counts adjusted ratios: pass the output of adjust()")
    return FDR * sum(r.significant for r in ratios)


def spread(samples: np.ndarray) -> float:
    """Interquartile range over median of all calls.

    Args:
      samples: timings of one lane, any shape.

    Examples:
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

    Examples:
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

    Examples:
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
