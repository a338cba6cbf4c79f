"""The benchmark's statistics on synthetic timings: paired bootstrap intervals, significance,
stability flags, and the schedule that stops when intervals are narrow enough.

Nothing here times real code: timings are drawn from known distributions.
"""

import numpy as np
import pytest

from bench import stats
from bench.timing import Schedule, Timed, measure_many


def _pair(ratio, *, rounds=30, calls=5, drift=0.3, noise=0.03, seed=0):
    """(a, b) timings whose true ratio is ``ratio``; every round slows both by one shared factor."""
    rng = np.random.default_rng(seed)
    shared = np.exp(rng.normal(0, drift, (rounds, 1)))
    b = shared * rng.lognormal(np.log(0.1), noise, (rounds, calls))
    a = ratio * shared * rng.lognormal(np.log(0.1), noise, (rounds, calls))
    return a, b


@pytest.mark.parametrize("ratio", [0.5, 1.3, 1.73, 4.0])
@pytest.mark.parametrize("drift", [0.0, 0.5])
def test_a_known_ratio_lands_inside_its_interval(ratio, drift):
    r = stats.paired_ratio(*_pair(ratio, drift=drift), confidence=0.99)  # each case may miss 1% of the time, not 5%
    assert r.lo < ratio < r.hi
    assert r.significant
    assert r.value == pytest.approx(ratio, rel=0.03)


@pytest.mark.parametrize("seed", range(5))
def test_no_difference_is_not_significant(seed):
    r = stats.paired_ratio(*_pair(1.0, seed=seed))
    assert not r.significant and "x [" in str(r)


def test_intervals_cover_the_true_ratio_about_95_percent_of_the_time():
    found = [stats.paired_ratio(*_pair(1.5, seed=s), resamples=500) for s in range(200)]
    assert 0.88 <= np.mean([r.lo < 1.5 < r.hi for r in found]) <= 1.0


def test_pairing_narrows_the_interval_when_rounds_share_drift():
    a, b = _pair(1.2, drift=0.4)
    paired, unpaired = stats.paired_ratio(a, b, confidence=0.99), stats.unpaired_ratio(a, b, confidence=0.99)
    assert unpaired.lo < 1.2 < unpaired.hi and paired.lo < 1.2 < paired.hi
    assert paired.width < unpaired.width / 4


def test_without_drift_pairing_costs_little():
    a, b = _pair(1.2, drift=0.0)
    assert stats.paired_ratio(a, b).width < 2 * stats.unpaired_ratio(a, b).width


@pytest.mark.parametrize(
    "value,lo,hi,significant",
    [(1.5, 1.4, 1.6, True), (0.6, 0.55, 0.65, True), (1.015, 1.01, 1.019, False), (1.0, 0.9, 1.1, False),
     (0.985, 0.981, 0.99, False), (0.975, 0.97, 0.979, True), (1.03, 1.021, 1.04, True)],
)  # fmt: skip
def test_significance_needs_the_whole_interval_beyond_the_noise_threshold(value, lo, hi, significant):
    assert stats.Ratio(value, lo, hi).significant is significant


def test_paired_timings_must_share_rounds():
    with pytest.raises(ValueError, match="same rounds"):
        stats.paired_ratio(np.ones((5, 2)), np.ones((6, 2)))
    with pytest.raises(ValueError, match=r"\(rounds, calls\)"):
        stats.round_medians(np.ones(5))


def test_results_are_reproducible():
    a, b = _pair(1.3)
    assert stats.paired_ratio(a, b) == stats.paired_ratio(a, b)


def _rounds(values):
    return np.asarray(values).reshape(-1, 3)


@pytest.mark.parametrize(
    "samples,flag",
    [
        (_rounds(np.random.default_rng(0).lognormal(0, 0.01, 300)), None),
        (_rounds(np.random.default_rng(0).lognormal(0, 0.3, 300)), "spread"),
        (np.concatenate([_rounds(np.random.default_rng(0).lognormal(0, 0.01, 150)),
                         _rounds(np.random.default_rng(1).lognormal(0.5, 0.01, 150))]), "bimodal"),
        (_rounds(np.concatenate([np.random.default_rng(0).lognormal(0, 0.01, 290), np.full(10, 30.0)])), None),  # outliers
        (np.column_stack([np.ones(50), np.ones(50), np.full(50, 9.0)]), None),  # one slow call per round: the round medians agree
    ],
)  # fmt: skip
def test_stability_flags(samples, flag):
    found = stats.stability(samples)
    assert (found is None) if flag is None else (flag in found)


def test_a_flag_names_the_other_processes_when_they_were_busy():
    wide = _rounds(np.linspace(1.0, 3.0, 120))
    assert "other processes used 50%" in stats.stability(wide, load=0.5)
    assert "other processes" not in stats.stability(wide, load=0.01)
    assert stats.stability(np.full((10, 2), 1.0), load=0.9) is None  # a busy machine alone is no flag


def _free(n):
    return {f"lane{i}": Timed(lambda _: None, lambda _: None) for i in range(n)}


def test_fixed_schedule_gives_every_lane_the_same_rounds():
    out = measure_many(_free(3), Schedule.fixed(warmup=0, repeat=12, rounds=4))
    assert {t.samples_ms.shape for t in out.values()} == {(4, 3)}


def test_adaptive_schedule_stops_when_the_rule_says_so_and_never_before_the_floor():
    seen = []

    def stop(samples):
        seen.append(next(iter(samples.values())).shape[0])
        return seen[-1] >= 12

    out = measure_many(_free(2), Schedule(warmup=0, rounds=5, calls=1, max_rounds=50, check_every=3), stop=stop)
    assert seen == [5, 8, 11, 14] and next(iter(out.values())).rounds == 14


def test_adaptive_schedule_ends_at_the_time_cap_or_the_most_rounds():
    never = lambda samples: False  # noqa: E731
    capped = measure_many(_free(1), Schedule(warmup=0, rounds=3, calls=1, max_rounds=10**6, time_cap_s=0.0), stop=never)
    assert capped["lane0"].rounds == 3
    most = measure_many(_free(1), Schedule(warmup=0, rounds=3, calls=1, max_rounds=7, check_every=1), stop=never)
    assert most["lane0"].rounds == 7


def test_work_between_rounds_runs_once_before_each_round():
    marks = []
    order = []
    items = {"a": Timed(lambda _: order.append("call"), lambda _: None)}
    measure_many(items, Schedule.fixed(warmup=1, repeat=6, rounds=3), between_rounds=lambda: order.append("fresh") or marks.append(1))
    assert len(marks) == 3 and order[1:] == ["fresh", "call", "call"] * 3  # after the warm-up call


@pytest.mark.parametrize("repeat,rounds,shape", [(30, 20, (30, 1)), (10, 5, (5, 2)), (12, 4, (4, 3)), (3, 20, (3, 1))])
def test_fixed_schedule_arithmetic(repeat, rounds, shape):
    s = Schedule.fixed(warmup=0, repeat=repeat, rounds=rounds)
    assert (s.rounds, s.calls) == shape
    with pytest.raises(ValueError):
        Schedule.fixed(warmup=0, repeat=0)


def _sessions_run(ratio, *, sessions, rounds=15, between=0.03, within=0.01, seed=0):
    """Timings of one run in ``sessions`` processes: each process shifts the numerator by its
    own lognormal factor (sd ``between``), as code and buffer placement do."""
    rng = np.random.default_rng(seed)
    shift = np.repeat(np.exp(rng.normal(0, between, sessions)), rounds)[:, None]
    b = rng.lognormal(np.log(0.1), within, (sessions * rounds, 5))
    a = ratio * shift * b * rng.lognormal(0, within, (sessions * rounds, 5))
    return a, b, np.repeat(np.arange(sessions), rounds)


def test_intervals_over_sessions_cover_what_a_process_fixes():
    """The process-level shift is what moves a ratio between runs; the interval over three
    sessions covers the true ratio about 95% of the time (rounds alone: far less)."""
    hits = {"sessions": 0, "rounds": 0}
    for seed in range(200):
        a, b, sessions = _sessions_run(1.5, sessions=3, seed=seed)
        with_sessions = stats.paired_ratio(a, b, sessions=sessions, resamples=200)
        rounds_only = stats.paired_ratio(a, b, resamples=200)
        hits["sessions"] += with_sessions.lo < 1.5 < with_sessions.hi
        hits["rounds"] += rounds_only.lo < 1.5 < rounds_only.hi
    assert hits["sessions"] >= 180 and hits["rounds"] < 120, hits


def test_two_runs_over_sessions_overlap():
    """Two runs of three sessions each agree (their intervals overlap) about as often as the
    intervals promise."""
    overlap = 0
    for seed in range(100):
        one = stats.paired_ratio(*_sessions_run(1.5, sessions=3, seed=2 * seed)[:2],
                                 sessions=np.repeat(np.arange(3), 15), resamples=200)  # fmt: skip
        two = stats.paired_ratio(*_sessions_run(1.5, sessions=3, seed=2 * seed + 1)[:2],
                                 sessions=np.repeat(np.arange(3), 15), resamples=200)  # fmt: skip
        overlap += one.lo <= two.hi and two.lo <= one.hi
    assert overlap >= 95, overlap


@pytest.mark.parametrize("sizes", [(10, 80, 10), (40, 5, 40)])
def test_the_bootstrap_resamples_the_reported_statistic_when_sessions_differ_in_rounds(sizes):
    """Sessions stop adaptively, so they run different numbers of rounds; the interval's
    bootstrap must centre on the reported mean of session medians, not on a pooled median
    that weighs the longest session most."""
    rng = np.random.default_rng(0)
    shift = np.repeat([1.4, 1.6, 1.5], sizes)[:, None]
    b = rng.lognormal(0, 0.01, (sum(sizes), 3))
    sessions = np.repeat(np.arange(3), sizes)
    ratio = stats.paired_ratio(shift * b, b, sessions=sessions, resamples=400)
    logs = np.log(stats.round_medians(shift * b)) - np.log(stats.round_medians(b))
    groups = [np.flatnonzero(sessions == s) for s in range(3)]
    boot = stats._bootstrap(logs, groups, 400, rng)
    assert ratio.value == pytest.approx(1.5, rel=0.01)
    assert np.exp(np.median(boot)) == pytest.approx(ratio.value, rel=0.02)
    unpaired = stats.unpaired_ratio(shift * b, b, sessions_a=sessions, sessions_b=sessions, resamples=400)
    assert unpaired.value == pytest.approx(1.5, rel=0.01) and unpaired.lo < 1.5 < unpaired.hi


def test_the_interval_is_the_bootstrap_of_the_reported_statistic(monkeypatch):
    """Where no Student-t widening applies (one session), the interval is the percentile
    interval of :func:`stats._bootstrap`'s replicates of the reported statistic."""
    a, b = _pair(1.5)
    monkeypatch.setattr(stats, "_bootstrap", lambda values, groups, resamples, rng: np.log(np.linspace(1.4, 1.6, resamples)))
    r = stats.paired_ratio(a, b, resamples=1001)
    assert (round(r.lo, 3), round(r.hi, 3)) == (1.405, 1.595)


def test_unpaired_with_sessions_on_one_side_still_covers():
    """A side timed in several processes widens the interval even when the other side was
    timed in one (its between-process shift is then the whole uncertainty)."""
    hits = 0
    for seed in range(100):
        a, _, sessions = _sessions_run(1.5, sessions=3, seed=seed, between=0.03)
        b = np.random.default_rng(1000 + seed).lognormal(np.log(0.1), 0.01, (45, 5))
        r = stats.unpaired_ratio(a, b, sessions_a=sessions, resamples=200)
        hits += r.lo < 0.15 / 0.1 < r.hi
    assert hits >= 90, hits


@pytest.mark.parametrize("rounds", [1, 4])
def test_too_few_rounds_give_no_interval_and_no_finding(rounds):
    a, b = _pair(1.5, rounds=rounds)
    r = stats.paired_ratio(a, b)
    assert (r.lo, r.hi, r.significant) == (0.0, float("inf"), False)
    assert not stats.unpaired_ratio(a, b).significant


def test_unpaired_over_sessions_includes_what_a_process_fixes():
    hits = 0
    for seed in range(100):
        a, _, sa = _sessions_run(1.0, sessions=3, seed=seed)
        b, _, sb = _sessions_run(1.0, sessions=3, seed=1000 + seed)
        r = stats.unpaired_ratio(a, b, sessions_a=sa, sessions_b=sb, resamples=200)
        hits += r.lo < 1.0 < r.hi
    assert hits >= 90, hits
