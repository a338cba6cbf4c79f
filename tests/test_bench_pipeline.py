"""The benchmark as a pipeline: declarations -> runner -> results schema -> analysis ->
rendering, without timing anything real except where a test says so.

The results here are synthetic (timings with known ratios); what is tested is that each stage
reads what the previous one wrote: the schema round trip and what it refuses, the answers a
report opens with, the roofline's references and memory levels, torch's layouts, the sessions
a run plans, the report and compare commands without torch or jax, and a throwaway suite run
end to end with no other edit.
"""

import ast
import dataclasses
import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import bench.__main__ as cli
from bench import analysis, compare, findings, plots, report, runner, schema, stats, tables
from prcm.machine import memory_level
from bench.plan import LAYOUTS, Lane, Point, Settings, lanes, pairs
from bench.schema import Comparison, Record, Results
from bench.study import Study
from bench.suites import SUITES, Suite
from fresh import run_module_fresh

CACHES = [{"level": 1, "type": "Data", "bytes": 32 << 10, "shared_by": 1}, {"level": 2, "type": "Unified", "bytes": 1 << 20, "shared_by": 1},
          {"level": 3, "type": "Unified", "bytes": 32 << 20, "shared_by": 2}]  # fmt: skip
META = {"machine": {"cpu_model": "Test CPU", "cpus": 2, "memory_bytes": 8 << 30, "caches": CACHES}, "date": "2026-01-02T03:04:05+00:00",
        "commit": {"hash": "0123456789abcdef", "dirty": False}, "versions": {"python": "3.11", "torch": "2.14", "jax": "0.10", "flax": "0.12"},
        "threads": {"settings": [1, 2]}, "settings": {"quick": True, "sessions": 5}, "device": "cpu", "device_kind": "cpu",
        "backends": ["torch-eager", "torch-compile", "jax-jit", "jax-eager"]}  # fmt: skip
ROOT = Path(__file__).resolve().parents[1]


def _timings(factors: dict[Lane, float], sessions: int = 3, rounds: int = 8, seed: int = 0, spread: float = 0.01) -> tuple[dict, dict]:
    """Each lane ``factor`` x a common time, whole rounds drifting for every lane alike, each
    session 1% off the others, ``spread`` noise per call: ``(round medians, session of each round)``."""
    rng = np.random.default_rng(seed)
    drift = rng.lognormal(0, 0.2, (sessions * rounds, 1)) * np.repeat(rng.lognormal(0, 0.01, (sessions, 1)), rounds, axis=0)
    samples = {lane: f * drift * rng.lognormal(0, spread, (sessions * rounds, 3)) for lane, f in factors.items()}
    return ({lane: np.median(s, axis=1)[:, None] for lane, s in samples.items()},
            {lane: np.repeat(np.arange(sessions), rounds) for lane in factors})  # fmt: skip


def _point_results(point: Point, factors: dict[Lane, float], threads: int, seed: int = 0) -> tuple[list[Record], list[Comparison]]:
    """Records and comparisons of one point, as the runner and the merge of sessions make them."""
    samples, sessions = _timings(factors, seed=seed)
    records = []
    for lane, s in samples.items():
        r = Record(point.suite, lane.backend, "cpu", module=lane.item if lane.item not in ("copy", "copy in-place") else None,
                   op=lane.item if lane.item in ("copy", "copy in-place") else None, network=point.network,
                   workload=point.workload if lane.item not in ("copy", "copy in-place") else "op", layout=lane.layout,
                   variant=lane.variant if point.suite == "roofline" else None, threads=threads, batch=point.batch,
                   channels=point.channels, resolution=point.resolution, num_basis=point.num_basis,
                   median_ms=float(np.median(s)))  # fmt: skip
        runner._rounds(r, s[:, 0], sessions[lane])
        records.append(r)
    return records, runner.comparisons(point, samples, threads, sessions)


def synthetic_results(settings: tuple[int, ...] = (1, 2)) -> Results:
    """A run's results from known ratios: the seed point, the training step, a network in both
    torch layouts (channels-last 0.8x the channels-first time on eager torch), thread settings."""
    records, comps = [], []
    time = {"torch-eager": 2.0, "torch-compile": 0.5, "jax-jit": 1.0, "jax-eager": 8.0}
    latency = Point("latency", 1, 64, 64, 8, items=("PRCM", "AffinePRCM", "SEModule"))
    train = Point("train", 8, 64, 56, 8, items=("PRCM", "AffinePRCM"), workload="train")
    net = Point("network", 1, 3, 64, items=("none", "AffinePRCM"), network="resnet18", baseline="none", layouts=LAYOUTS,
                backends=("torch-eager", "jax-jit"), compare=("backend", "module", "layout"))  # fmt: skip
    by_threads = {}
    for threads in settings:
        slow = 1.0 if threads == 1 else 1.5  # everything slower at 2 threads
        for point in (latency, train):
            factors = {Lane(m, b): slow * t * (1.3 if m == "AffinePRCM" and b != "jax-jit" else 1.0)
                       for m in point.items for b, t in time.items()}  # fmt: skip
            r, c = _point_results(point, factors, threads, seed=threads)
            records += r
            comps += c
            by_threads.setdefault(point, {})[threads] = (r, factors)
        factors = {lane: slow * 50.0 * (0.8 if lane.layout == "channels_last" else 1.0) * (1.05 if lane.item != "none" else 1.0)
                   for lane in lanes(net, ("torch-eager", "jax-jit"))}  # fmt: skip
        r, c = _point_results(net, factors, threads, seed=10 + threads)
        records += r
        comps += c
    if len(settings) > 1:  # threads comparisons of the seed point, from the records' rounds
        for lane in lanes(latency, tuple(time)):
            rec = {t: next(x for x in records if x.suite == "latency" and x.threads == t and x.module == lane.item
                           and x.backend == lane.backend) for t in settings}  # fmt: skip
            ratio = stats.unpaired_ratio(np.array(rec[1].round_ms)[:, None], np.array(rec[2].round_ms)[:, None],
                                         sessions_a=np.array(rec[1].round_sessions), sessions_b=np.array(rec[2].round_sessions))  # fmt: skip
            c = runner._comparison(latency, "threads", lane, (lane,), ratio, None)
            c.numerator, c.denominator, c.paired = "1 thread", "2 threads", False
            comps.append(c)
    records.append(Record("fusion", "jax-jit", "cpu", module="PRCM", batch=1, channels=64, resolution=64, kernels=4))
    records.append(Record("fusion", "torch-eager", "cpu", module="PRCM", batch=1, channels=64, resolution=64, kernels=12))
    return Results(dict(META), records, comps)


@pytest.fixture(scope="module")
def results() -> Results:
    return synthetic_results()


# -- the schema ---------------------------------------------------------------------------------


def test_results_round_trip_through_the_file(tmp_path, results):
    path = tmp_path / "results.json"
    schema.save(path, results)
    loaded = schema.load(path)
    assert loaded.version == schema.VERSION and loaded.meta == json.loads(json.dumps(results.meta))
    assert loaded.records == results.records and loaded.comparisons == results.comparisons
    assert json.loads(path.read_text())["schema"] == schema.VERSION


def test_an_unbounded_interval_is_written_as_valid_json_and_read_back(tmp_path):
    c = Comparison("latency", "backend", "PRCM", None, "torch-eager", "jax-jit", 1, 64, 64, 8, 1, 1.5, [0.0, float("inf")], False)
    schema.save(tmp_path / "r.json", Results({}, [], [c]))
    assert "Infinity" not in (tmp_path / "r.json").read_text()
    assert schema.load(tmp_path / "r.json").comparisons[0].ci95 == [0.0, float("inf")]


def test_a_results_file_of_the_earlier_bench_is_read(tmp_path):
    """Schema 1 (no ``schema`` key, the fields of before): read, the new fields None."""
    old = {"meta": {"versions": {"jax": "0.9"}}, "records": [{"suite": "latency", "backend": "jax-jit", "device": "cpu", "module": "PRCM",
                                                             "median_ms": 0.1, "copy_fraction": None, "status": "ok"}],
           "comparisons": [{"suite": "latency", "kind": "backend", "module": "PRCM", "backend": None, "numerator": "torch-eager",
                            "denominator": "jax-jit", "batch": 1, "channels": 64, "resolution": 64, "num_basis": 8, "threads": 1,
                            "ratio": 2.0, "ci95": [1.9, 2.1], "significant": True, "workload": "forward", "variant": None,
                            "network": None, "paired": True}]}  # fmt: skip
    (tmp_path / "old.json").write_text(json.dumps(old))
    loaded = schema.load(tmp_path / "old.json")
    assert loaded.version == 1 and loaded.records[0].round_ms is None and loaded.comparisons[0].layout is None


@pytest.mark.parametrize("text,message", [
    ("not json", "is not a results file: not JSON"),
    ("[]", "expected an object with meta, records, comparisons, got list"),
    ('{"meta": {}, "records": []}', "expected an object with meta, records, comparisons, got ['meta', 'records']"),
    ('{"schema": 3, "meta": {}, "records": [], "comparisons": []}', "schema 3 is newer than this bench reads (1 to 2)"),
    ('{"schema": "2", "meta": {}, "records": [], "comparisons": []}', "expected an integer schema version >= 1, got '2'"),
    ('{"meta": {}, "records": {}, "comparisons": []}', "expected records to be a list, got dict"),
    ('{"meta": {}, "records": [{"suite": "x", "backend": null, "device": "cpu", "speed": 1}], "comparisons": []}',
     "records[0] has fields this bench does not know: speed"),
    ('{"meta": {}, "records": [{"suite": "x"}], "comparisons": []}', "records[0] lacks backend, device"),
    ('{"meta": {}, "records": [3], "comparisons": []}', "records[0] should be an object, got int"),
])  # fmt: skip
def test_what_the_loader_cannot_read_is_refused_with_the_reason(tmp_path, text, message):
    (tmp_path / "bad.json").write_text(text)
    with pytest.raises(schema.SchemaError, match="bad.json") as info:
        schema.load(tmp_path / "bad.json")
    assert message in str(info.value)


def test_a_missing_file_is_a_schema_error(tmp_path):
    with pytest.raises(schema.SchemaError, match="cannot read results file .*nope.json"):
        schema.load(tmp_path / "nope.json")


def test_a_comparison_carries_what_the_statistics_give_and_an_unstable_one_saves_no_value():
    """p, dof, each session's value, what the interval covers and the regime flag reach the
    comparison; an unstable ratio is saved as null and printed with its sessions' values."""
    rng = np.random.default_rng(0)
    b = rng.lognormal(0, 0.02, (50, 3))
    a = 1.5 * b * rng.lognormal(0, 0.02, (50, 3))
    a[40:] *= 1.3  # the last of five sessions in another regime
    ratio = stats.paired_ratio(a, b, sessions=np.repeat(np.arange(5), 10))
    c = Comparison.from_ratio(ratio, suite="s", kind="backend", module="PRCM", backend=None, numerator="a", denominator="b",
                              batch=1, channels=2, resolution=3, num_basis=None, threads=1)  # fmt: skip
    assert c.unstable and c.p == 1.0 and c.dof == 4.0 and len(c.sessions) == 5 and not c.significant
    text = schema.dumps(Results({}, [], [c]))
    assert json.loads(text)["comparisons"][0]["ratio"] is None
    back = schema.loads(text).comparisons[0]
    assert np.isnan(back.ratio) and back.sessions == c.sessions and back.unstable
    assert tables.fmt_ratio(back).startswith("unstable: sessions disagree (1.5") and "x, 1.9" in tables.fmt_ratio(back)
    steady = Comparison.from_ratio(stats.paired_ratio(a[:40], b[:40], sessions=np.repeat(np.arange(4), 10)), **{
        k: getattr(c, k) for k in ("suite", "kind", "module", "backend", "numerator", "denominator", "batch", "channels",
                                   "resolution", "num_basis", "threads")})  # fmt: skip
    assert not steady.unstable and steady.covers == "processes" and 0 < steady.p < 0.05 and steady.significant


# -- analysis: one adjustment, answers first ------------------------------------------------------


def test_every_comparison_goes_through_the_one_adjustment(monkeypatch, results, tmp_path):
    """A multiplicity adjustment in bench.stats reaches every comparison of a report, and the
    renderers show its verdict: here one that finds nothing significant."""
    seen = []

    def adjust(ratios):
        seen.append(len(ratios))
        return [dataclasses.replace(r, noise=1e9) for r in ratios]  # nothing beyond this noise threshold

    monkeypatch.setattr(stats, "adjust", adjust, raising=False)
    found = analysis.analyse(results)
    assert seen == [len(results.comparisons)] and not any(c.significant for c in found.comparisons)
    assert any(c.significant for c in results.comparisons)  # the comparisons as measured are untouched
    text = report.report_markdown(found)
    assert " n.s." in text and "no significant difference" in text
    old = dataclasses.replace(results, comparisons=[])
    compared = compare.compare(old, results)
    assert seen[1:] == [len(compared.comparisons), 0, len(results.comparisons)]  # the lanes; each run's own report


def test_significance_is_adjusted_over_the_report_and_the_report_says_how_many_false_findings_to_expect():
    """Benjamini-Hochberg over all of a report's comparisons: a p-value of 0.04 is significant
    alone, but not when as many comparisons show nothing (q = 0.08); the report states the
    expected number of false findings."""
    run = synthetic_results()
    for i, c in enumerate(run.comparisons):
        c.ratio, c.ci95, c.p = (1.5, [1.03, 2.2], 0.04) if i % 2 else (1.0, [0.9, 1.1], 0.9)
        c.significant = i % 2 == 1
    found = analysis.analyse(run)
    assert not any(c.significant for c in found.comparisons)
    assert all(c.q == pytest.approx(0.08 if i % 2 else 0.9, abs=0.01) for i, c in enumerate(found.comparisons))
    assert "0 significant" in found.notes[0] and "expect up to 0.0 of the significant ones to be false" in found.notes[0]
    strong = analysis.analyse(synthetic_results())
    n = sum(c.significant for c in strong.comparisons)
    assert n > 0 and f"{n} significant" in strong.notes[0] and f"expect up to {stats.FDR * n:.1f} of the" in strong.notes[0]


def test_an_unstable_comparison_prints_its_sessions_and_is_in_no_finding_plot_or_answer_winner(results, tmp_path):
    run = synthetic_results()
    target = next(c for c in run.comparisons if c.suite == "latency" and c.kind == "backend" and c.module == "AffinePRCM"
                  and c.numerator == "torch-eager" and c.denominator == "jax-jit" and c.threads == 1)  # fmt: skip
    target.ratio, target.ci95, target.unstable, target.sessions, target.p = float("nan"), [0.0, float("inf")], True, [1.3, 1.31, 3.7], 1.0
    target.significant = False
    found = analysis.analyse(run)
    text = report.report_markdown(found)
    assert "AffinePRCM unstable: sessions disagree (1.30x, 1.31x, 3.70x)" in text  # the answer line
    assert "1 unstable (sessions disagree: no value)" in found.notes[0]
    assert not any("3.70x" in f or "nan" in f for fs in found.findings.values() for f in fs)
    assert any("torch-eager / jax-jit: PRCM" in f for f in found.findings["latency"])  # the stable ones still are
    assert json.loads(schema.dumps(run))["comparisons"][run.comparisons.index(target)]["ratio"] is None
    drawn = plots._drawn(found.comparisons)
    assert len(drawn) == len(found.comparisons) - 1 and all(c.ratio == c.ratio for c in drawn)
    assert report.render(run, tmp_path)[1]  # every figure still draws


def test_a_report_opens_with_at_most_ten_answer_lines_with_intervals_and_settings(results):
    found = analysis.analyse(results)
    text = report.report_markdown(found)
    lines = text.splitlines()
    assert lines[:4] == ["# prcm benchmark", "", "## Answers", ""]
    answers = lines[4 : lines.index("", 4)]
    assert 6 <= len(answers) <= analysis.MAX_ANSWERS and all(a.startswith("- ") for a in answers)
    assert answers[0].startswith("- What AffinePRCM costs over PRCM at the seed point (1, 64, 64, 64), per backend at its fastest "
                                 "setting: torch-eager 1.30x [")  # fmt: skip
    assert "(1 thread)" in answers[0]  # everything is slower at 2 threads: each backend's fastest setting is 1
    assert any(a.startswith("- What XLA's fusion buys over eager JAX (jax-eager / jax-jit) per module, 1 thread: PRCM 8.00x [")
               and "; AffinePRCM 10.40x [" in a for a in answers)  # fmt: skip
    assert any(a.startswith("- One training step at (8, 64, 56, 56) against jax-jit, 1 thread: PRCM torch-eager / jax-jit 2.00x [") for a in answers)
    net = next(a for a in answers if a.startswith("- resnet18 at (1, 3, 64, 64)"))
    assert "torch's best (torch-eager CL) / jax-jit" in net and "AffinePRCM / none on torch-eager CL 1.05x [" in net
    assert any(a.startswith("- Which thread setting wins at the seed point (PRCM, 1 thread / 2 threads): torch-eager 0.67x [") and
               "2 threads faster" not in a and "1 thread faster" in a for a in answers)  # fmt: skip
    layout = next(a for a in answers if a.startswith("- torch's best layout in the networks"))
    assert "resnet18 forward (batch 1) torch-eager 0.80x [" in layout and "channels-last best" in layout
    assert "target" not in text.lower()


def test_a_network_answer_picks_no_layout_the_data_cannot_tell_apart():
    """torch's best configuration names its layout only where the layouts differ significantly;
    otherwise it says so and takes the default layout's figures (never the faster median's)."""
    run = synthetic_results()
    for c in run.comparisons:
        if c.kind == "layout" and c.module == "AffinePRCM":  # channels-last 0.80x made insignificant
            c.ci95, c.significant = [0.6, 1.1], False
    net = next(str(a) for a in analysis.analyse(run).answers if a.question.startswith("resnet18"))
    assert "torch's best (torch-eager, either layout: no significant difference) / jax-jit 1.00x [" in net
    assert "AffinePRCM / none on torch-eager 1.05x [" in net and " CL" not in net


def test_no_answer_names_a_winner_the_data_cannot_tell():
    equal = synthetic_results()
    for c in equal.comparisons:  # every ratio made insignificant
        c.ci95, c.significant = [0.5, 2.0], False
    text = "\n".join(map(str, analysis.analyse(equal).answers))
    assert "faster" not in text and "best:" not in text.replace("best (", "") and "no significant difference" in text


def test_torch_layouts_are_compared_with_each_other_and_each_against_jax():
    point = Point("network", 1, 3, 32, items=("none", "AffinePRCM"), network="resnet18", baseline="none", layouts=LAYOUTS,
                  compare=("backend", "module", "layout"))  # fmt: skip
    timed = lanes(point, ("torch-eager", "torch-compile", "jax-jit"))
    assert len(timed) == 2 * (2 * 2 + 1)
    found = {(k, n.item, n.backend, n.layout, d[0].backend, d[0].layout) for k, n, d in pairs(point, timed)}
    for item in ("none", "AffinePRCM"):
        for backend in ("torch-eager", "torch-compile"):
            assert ("layout", item, backend, "channels_last", backend, "channels_first") in found
            for layout in LAYOUTS:
                assert ("backend", item, backend, layout, "jax-jit", None) in found
        assert ("backend", item, "torch-eager", "channels_last", "torch-compile", "channels_last") in found
    assert ("module", "AffinePRCM", "jax-jit", None, "jax-jit", None) in found
    assert not any(k == "layout" and n.layout == "channels_first" for k, n, _ in pairs(point, timed))


def test_the_best_layout_finding_says_when_the_layout_makes_no_difference(results):
    found = findings.best_layouts(results.comparisons)
    assert any(f.startswith("torch-eager channels-last / channels-first, resnet18 forward at (1, 3, 64, 64), 1 thread(s): ")
               and "none 0.80x [" in f and "channels-last best" in f for f in found)  # fmt: skip
    same = [dataclasses.replace(c, ratio=1.0, ci95=[0.97, 1.03], significant=False) for c in results.comparisons]
    assert all("no significant difference between layouts" in f and "best" not in f for f in findings.best_layouts(same))


# -- roofline -------------------------------------------------------------------------------------


def _lane(op=None, module=None, variant=None, backend="torch-eager", batch=8, gbps=10.0, buffers=2, flag=None):
    x = batch * 64 * 256 * 256 * 4
    return Record("roofline", backend, "cpu", module=module, op=op, variant=variant, threads=2, batch=batch, channels=64,
                  resolution=256, gbps=gbps, working_set=buffers * x, status="ok", median_ms=1.0, flag=flag)  # fmt: skip


def test_each_variant_meets_the_copy_that_touches_as_many_buffers():
    records = [_lane(op="copy", gbps=20.0), _lane(op="copy", backend="jax-jit", gbps=18.0), _lane(op="copy in-place", gbps=30.0, buffers=1),
               _lane(module="PRCM", variant="fresh", gbps=10.0), _lane(module="PRCM", variant="donated", backend="jax-jit", gbps=15.0, buffers=1),
               _lane(module="PRCM", variant="loop", backend="jax-jit", gbps=24.0, buffers=1),
               _lane(module="PRCM", variant="loop", backend="torch-compile", gbps=24.0)]  # fmt: skip
    analysis.place(records, META)
    fresh, donated, loop_jax, loop_torch = records[3:]
    assert (fresh.reference, fresh.copy_fraction) == ("copy", 0.5)
    assert (donated.reference, donated.copy_fraction) == ("copy in-place", 0.5)
    assert (loop_jax.reference, loop_jax.copy_fraction) == ("copy in-place", 0.8)
    assert (loop_torch.reference, loop_torch.copy_fraction) == ("copy", 1.2)
    assert {r.memory_level for r in records} == {"DRAM"}  # 134 MB and more: at least 4x the 32 MiB L3


def test_memory_levels_follow_the_caches():
    assert [memory_level(n, CACHES) for n in (1 << 10, 64 << 10, 2 << 20, 33 << 20, (4 * 32) << 20)] == ["L1", "L2", "L3", "DRAM/L3", "DRAM"]
    assert memory_level(1 << 30, []) == "unknown"


def test_bandwidth_claims_only_on_dram_and_a_fraction_above_one_is_flagged():
    cached = [_lane(op="copy in-place", gbps=20.0, buffers=1, batch=3), _lane(module="PRCM", variant="donated", backend="jax-jit", gbps=25.0,
                                                                           buffers=1, batch=3)]  # fmt: skip
    analysis.place(cached, META)
    assert cached[1].memory_level == "DRAM/L3" and cached[1].copy_fraction == 1.25
    text = "\n".join(findings.roofline(cached, [], META))
    assert "No working set of this run is DRAM-resident" in text and "best " not in text.replace("the best of torch", "")
    assert "exceed their copy reference (jax-jit PRCM donated 1.25 ((3, 64, 256, 256), DRAM/L3)" in text and "cache effect" in text
    table = tables.roofline(cached, [], ["jax-jit"])[0]
    assert "125%!" in table.rows[1] and "DRAM/L3" in table.rows[1]
    dram = [_lane(op="copy", gbps=20.0), _lane(op="copy", gbps=20.0, batch=16), _lane(module="PRCM", variant="fresh", gbps=5.0, flag="spread"),
            _lane(module="PRCM", variant="fresh", gbps=4.0, batch=16)]  # fmt: skip
    analysis.place(dram, META)
    assert findings.roofline(dram, [], META)[1] == ("torch-eager (fresh, 2 thread(s), DRAM-resident working sets): best 20% of the copy's "
                                                    "bandwidth against 3.00 x size, 4.0 GB/s (PRCM, (16, 64, 256, 256)).")  # fmt: skip


def test_a_training_step_is_set_beside_its_physical_bound_not_a_target():
    at = dict(suite="train", device="cpu", module="PRCM", threads=1, batch=8, channels=64, resolution=56, status="ok", workload="train")
    x = 8 * 64 * 56 * 56 * 4
    records = [Record(backend="jax-jit", median_ms=2.0, bytes=4 * x, working_set=3 * x, **at),
               Record(backend="torch-eager", median_ms=5.0, bytes=4 * x, working_set=3 * x, **at),
               Record(**{**at, "module": None, "workload": "op"}, op="copy", backend="torch-eager", gbps=50.0, working_set=2 * x)]  # fmt: skip
    analysis.place(records, META)
    comps = [Comparison("train", "backend", "PRCM", None, "torch-eager", "jax-jit", 8, 64, 56, 8, 1, 2.5, [2.2, 2.8], True, workload="train")]
    (line,) = [f for f in findings.train(records, comps, META) if f.startswith("Training step")]
    floor = 4 * x / 50e9 * 1e3
    assert line.startswith("Training step at (8, 64, 56, 56), 1 thread(s), PRCM: torch-eager / jax-jit = 2.50x [2.20, 2.80]. Bound: ")
    assert f"jax-jit 2.000 ms is {2.0 / floor:.1f}x the {floor:.3f} ms that its minimum traffic takes at copy speed (working set in L3: " \
           "cache bandwidth, not DRAM's)" in line  # fmt: skip
    assert "target" not in line


# -- sessions -------------------------------------------------------------------------------------


class _FakePools:
    """Pools that record what they are asked to run and answer with synthetic timings."""

    def __init__(self):
        self.calls, self.closed = [], []

    def run(self, point, threads, session=0, *, compare=True):
        timed = lanes(point, ("torch-eager", "jax-jit"))
        samples = {lane: np.full((6, 2), 1.0 + i) for i, lane in enumerate(timed)}
        self.calls.append((point.suite, point.shape, threads, session))
        records = [Record(point.suite, lane.backend, "cpu", module=lane.item, threads=threads, batch=point.batch, status="ok",
                          median_ms=1.0, repeat=12, rounds=6) for lane in timed]  # fmt: skip
        return runner.PointResult(records, [], samples, timed)

    def close_session(self, session):
        self.closed.append(session)


@pytest.mark.parametrize("quick,sessions", [(True, 5), (False, 10)])
def test_every_timed_point_runs_in_several_sessions_one_after_another(quick, sessions):
    study = Study([SUITES["fusion"], SUITES["latency"], SUITES["batch"]], Settings(quick=quick, repeat=6), (1, 2), ("torch-eager", "jax-jit"))
    pools = _FakePools()
    study.run(pools, None, lambda *a: None, lambda partial: None)
    timed = [c for c in pools.calls if c[0] != "fusion"]
    assert [c for c in pools.calls if c[0] == "fusion"] == [("fusion", (1, 64, 64, 64), 2, 0)]  # counted once, at the most threads
    assert {c[3] for c in timed} == set(range(sessions)) and pools.closed == list(range(sessions))
    assert [c[3] for c in timed] == sorted(c[3] for c in timed)  # session after session
    per_point = {}
    for suite, shape, threads, session in timed:
        per_point.setdefault((suite, shape, threads), []).append(session)
    assert all(v == list(range(sessions)) for v in per_point.values()) and len(per_point) == (len(study.points) - 1) * 2
    first = [c[2] for c in timed if c[3] == 0]
    assert first[:2] != first[2:4]  # the thread settings take turns point by point
    records, comps = study.collect()
    assert {r.sessions for r in records if r.suite != "fusion"} == {sessions}
    assert all(len(r.round_sessions) == 6 * sessions for r in records if r.suite != "fusion")
    assert {c.kind for c in comps} >= {"backend", "threads"}


def test_sessions_default_to_five_quick_and_ten_full_and_fewer_than_two_are_refused(capsys):
    assert Settings(quick=True).sessions_of(True) == 5 and Settings().sessions_of(True) == 10 and Settings().sessions_of(False) == 1
    assert cli.parse_args(["--quick"]).sessions is None
    with pytest.raises(SystemExit):
        cli.parse_args(["--sessions", "1"])
    assert "expected an integer >= 2, got 1" in capsys.readouterr().err


# -- the commands ---------------------------------------------------------------------------------


def test_help_prints_percent_signs_once():
    done = run_module_fresh("bench", "--help", cwd=ROOT)
    assert done.returncode == 0 and "95% confidence interval" in done.stdout and "%%" not in done.stdout
    for command in ("report", "compare", "readme"):
        sub = run_module_fresh("bench", command, "--help", cwd=ROOT)
        assert sub.returncode == 0 and "%%" not in sub.stdout and f"python -m bench {command}" in sub.stdout


#: Make torch and jax impossible to import (a finder that refuses them: a ``None`` in
#: ``sys.modules`` would also break scipy, which looks up ``sys.modules["torch"].Tensor``).
BLOCK = """
import sys
class _Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "jax", "jaxlib", "flax"):
            raise ImportError(f"{name} is blocked in this test")
sys.meta_path.insert(0, _Blocked())
"""
#: Run ``python -m bench`` with torch and jax impossible to import.
BLOCKED = BLOCK + """
import runpy
sys.argv = ["python -m bench", *sys.argv[1:]]
try:
    runpy.run_module("bench", run_name="__main__")
finally:
    leaked = [m for m in sys.modules if m.split(".")[0] in ("torch", "jax", "jaxlib", "flax")]
    assert not leaked, leaked
"""


def _blocked(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-c", BLOCKED, *map(str, args)], capture_output=True, text=True, cwd=cwd)


def test_report_renders_a_saved_run_again_without_torch_or_jax(tmp_path, results):
    path = tmp_path / "run" / "results.json"
    path.parent.mkdir()
    schema.save(path, results)
    done = _blocked("report", path, "--out", tmp_path / "again")
    assert done.returncode == 0, done.stderr
    written = sorted(p.name for p in (tmp_path / "again").iterdir())
    assert written == ["latency.png", "network.png", "network_overhead.png", "report.md", "results.md", "train.png", "train_batch.png"] or \
        {"report.md", "results.md", "latency.png", "network.png", "train.png"} <= set(written), written  # fmt: skip
    page = (tmp_path / "again" / "results.md").read_text()
    assert page.startswith("# Results\n\n| question |") and "![latency.png](./latency.png)" in page
    docs = _blocked("report", path.parent, "--out", tmp_path / "docs" / "results", "--page", tmp_path / "docs" / "benchmark" / "results.md")
    assert docs.returncode == 0, docs.stderr
    linked = (tmp_path / "docs" / "benchmark" / "results.md").read_text()
    assert linked == page.replace("](./", "](../results/") and (tmp_path / "docs" / "results" / "latency.png").exists()
    analysed, figures, _ = report.render(schema.load(path), tmp_path / "here")
    assert (tmp_path / "again" / "report.md").read_text() == (tmp_path / "here" / "report.md").read_text()
    assert sorted(p.name for paths in figures.values() for p in paths) == sorted(w for w in written if w.endswith(".png"))
    assert done.stdout.splitlines()[0] == f"- {analysed.answers[0]}"
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema": 99, "meta": {}, "records": [], "comparisons": []}')
    refused = _blocked("report", bad)
    assert refused.returncode == 2 and "schema 99 is newer than this bench reads" in refused.stderr


def test_the_headline_table_and_results_page_render_from_the_results_alone(results):
    found = analysis.analyse(results)
    table = report.headline(found)
    lines = table.splitlines()
    assert lines[0] == "| question | measured (95% CI) | threads |"
    assert lines[-1] == "Measured on Test CPU (2 cores), torch 2.14, jax 0.10, flax 0.12, commit 0123456789, 2026-01-02 (quick run, 5 sessions per thread setting)."
    assert len(lines) == 2 + len(found.answers) + 2 and len(found.answers) <= analysis.MAX_ANSWERS  # one row per answer
    assert any(row.startswith("| What AffinePRCM costs over PRCM") and "torch-eager 1.30x [" in row and row.endswith("| 1 thread |")
               for row in lines)  # fmt: skip
    fusion = next(row for row in lines if row.startswith("| What XLA's fusion buys"))
    assert "PRCM 8.00x [" in fusion and "SEModule" not in fusion  # the seed's two modules only
    assert report.headline(analysis.analyse(schema.loads(schema.dumps(results)))) == table  # the same from the file
    page = report.results_page(found, {"latency": [Path("latency.png")]}, prefix="img")
    assert page.startswith("# Results\n\n" + table) and "![latency.png](img/latency.png)" in page and "## network" in page
    method = page[page.index("## Method") :].split("\n## ")[0]  # after the answers, before the suites
    assert page.index("## Answers") < page.index("## Method") < page.index("## latency")
    assert "Benjamini-Hochberg at 5%: expect up to " in method
    assert report.headline_markdown(results) == table


def test_the_readme_headline_is_written_and_checked_from_a_saved_run_without_torch_or_jax(tmp_path, results):
    run = tmp_path / "run"
    run.mkdir()
    schema.save(run / "results.json", results)
    start, end = report.README_MARKERS
    readme = tmp_path / "README.md"
    readme.write_text(f"# prcm\n\nintro\n\n{start}\nan old table\n{end}\n\n## more\n")
    stale = _blocked("readme", run, readme, "--check")
    assert stale.returncode == 1 and "differs" in stale.stdout and "an old table" in readme.read_text()
    assert not report.readme_section_matches(readme.read_text(), results)
    done = _blocked("readme", run, readme)
    assert done.returncode == 0, done.stderr
    text = readme.read_text()
    assert text == f"# prcm\n\nintro\n\n{start}\n{report.headline_markdown(results)}\n{end}\n\n## more\n"
    assert report.readme_section_matches(text, results) and _blocked("readme", run / "results.json", readme, "--check").returncode == 0
    changed = dataclasses.replace(results, meta={**results.meta, "date": "2027-01-01"})
    assert not report.readme_section_matches(text, changed)
    readme.write_text("# no markers\n")
    refused = _blocked("readme", run, readme)
    assert refused.returncode == 2 and "expected one <!-- bench:headline:start --> line" in refused.stderr


def test_a_page_gets_the_block_costs_of_its_networks_from_a_saved_run_without_torch_or_jax(tmp_path, results):
    run = tmp_path / "run"
    run.mkdir()
    schema.save(run / "results.json", results)
    page = tmp_path / "page.md"
    page.write_text("# Page\n\n<!-- bench:network:start resnet18 -->\nold\n<!-- bench:network:end -->\n\nmore\n")
    assert _blocked("render", run, page, "--check").returncode == 1 and "old" in page.read_text()
    done = _blocked("render", run, page)
    assert done.returncode == 0, done.stderr
    text = page.read_text()
    assert "| resnet18 | (1, 3, 64, 64) | forward | AffinePRCM |" in text and "| torch-eager vs none |" in text
    row = next(line for line in text.splitlines() if line.startswith("| resnet18 | (1, 3, 64, 64) | forward | AffinePRCM |"))
    c = next(c for c in analysis.analyse(results).comparisons if (c.network, c.kind, c.numerator, c.denominator, c.backend, c.layout,
             c.workload, c.threads) == ("resnet18", "module", "AffinePRCM", "none", "jax-jit", None, "forward", 1))  # fmt: skip
    assert tables.fmt_overhead(c) in row  # the figure is the analysis' comparison, as the results page shows it
    assert text.endswith(f"From `{run.as_posix()}`.\n<!-- bench:network:end -->\n\nmore\n")
    assert _blocked("render", run, page, "--check").returncode == 0
    page.write_text("<!-- bench:network:start efficientnet_b0 -->\n<!-- bench:network:end -->\n")
    refused = _blocked("render", run, page)
    assert refused.returncode == 2 and "names efficientnet_b0, which the run did not time (it timed resnet18)" in refused.stderr
    assert page.read_text() == "<!-- bench:network:start efficientnet_b0 -->\n<!-- bench:network:end -->\n"  # nothing written


def _changed(results: Results, factor: float, lanes_of: str) -> Results:
    """``results`` with every round of ``lanes_of``'s lanes ``factor`` times slower, and jax 0.11."""
    records = []
    for r in results.records:
        r = dataclasses.replace(r)
        if r.round_ms and r.backend == lanes_of:
            r.round_ms = [v * factor for v in r.round_ms]
            r.median_ms *= factor
        records.append(r)
    return Results({**results.meta, "versions": {**results.meta["versions"], "jax": "0.11"}}, records, results.comparisons)


def test_compare_counts_faster_slower_and_not_significant_and_states_what_differs(tmp_path, results):
    old = results
    new = _changed(results, 1.5, "jax-eager")
    compared = compare.compare(old, new)
    timed = [r for r in old.records if r.round_ms]
    assert len(compared.comparisons) == len(timed)
    slower = [c for c in compared.comparisons if c.significant and c.ratio > 1]
    assert {c.backend for c in slower} == {"jax-eager"} and all(abs(c.ratio - 1.5) < 1e-9 for c in slower)
    assert not any(c.significant for c in compared.comparisons if c.backend != "jax-eager")
    line = compare.summary(compared)
    assert line.startswith(f"{len(timed)} shared lanes: new faster at 0, slower at {len(slower)}, not significant at {len(timed) - len(slower)}")
    assert compared.differences == ["versions differ: jax 0.10 -> 0.11"]
    written = compare.write(compared, tmp_path / "cmp")
    assert {p.name for p in written} == {"compare.png", "compare.md"}
    assert (tmp_path / "cmp" / "compare.md").read_text().splitlines()[2] == line


def test_compare_reports_how_the_runs_own_comparisons_agree(tmp_path):
    """Two runs from the same timings agree on every comparison; a run whose torch-eager lanes
    ran four times faster (its comparisons measured again from its timings) flips
    torch-eager / jax-jit from 2x to 0.5x: disjoint intervals, significant in opposite directions."""
    run = synthetic_results()
    same = compare.agreement(run, run)
    assert (same.shared, same.overlap, same.opposite, same.unstable) == (len(run.comparisons), len(run.comparisons), 0, 0)
    faster = synthetic_results()
    for c in faster.comparisons:
        if c.kind == "backend" and c.numerator == "torch-eager":
            c.ratio, c.ci95 = c.ratio / 4, [c.ci95[0] / 4, c.ci95[1] / 4]
    faster.comparisons[0].unstable = True
    found = compare.agreement(run, faster)
    moved = [o for o, n in found.disjoint]
    flipped = [o for o, n in found.disjoint if o.significant and n.significant and o.ratio > 1 > n.ratio]  # 2x -> 0.5x
    assert found.unstable == 1 and found.opposite == len(flipped) > 0 and len(moved) > len(flipped)  # 0.8x -> 0.2x moved only
    assert all(o.numerator == "torch-eager" and o.kind == "backend" for o in moved)
    assert found.overlap == found.shared - found.unstable - len(moved)
    text = compare.markdown_of(compare.compare(run, faster))
    assert f"intervals overlap at {found.overlap} of the {found.shared - 1} stable in both" in text
    assert f"{found.opposite} significant in opposite directions" in text


def test_compare_runs_without_torch_or_jax(tmp_path, results):
    schema.save(tmp_path / "old.json", results)
    schema.save(tmp_path / "new.json", _changed(results, 0.5, "torch-eager"))
    done = _blocked("compare", tmp_path / "old.json", tmp_path / "new.json", "--out", tmp_path / "cmp")
    assert done.returncode == 0, done.stderr
    assert "versions differ: jax 0.10 -> 0.11" in done.stdout and "new faster at" in done.stdout
    assert (tmp_path / "cmp" / "compare.png").stat().st_size > 0


# -- the pipeline's shape -------------------------------------------------------------------------


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bench"):
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("bench")}
    return found


def test_bench_modules_import_one_way():
    """No import cycle among bench's modules (imports inside functions included)."""
    modules = {p.stem: p for p in (ROOT / "bench").glob("*.py") if p.stem != "__main__"}
    graph = {m: {i.split(".")[1] for i in _imports(p) if i.count(".") >= 1 and i.split(".")[1] in modules} - {m}
             for m, p in modules.items()}  # fmt: skip

    def cycle(node, path):
        for nxt in graph[node]:
            if nxt in path:
                return [*path[path.index(nxt):], nxt]
            if found := cycle(nxt, [*path, nxt]):
                return found
        return None

    assert not any(cycle(m, [m]) for m in graph), [cycle(m, [m]) for m in graph if cycle(m, [m])]


def test_rendering_imports_neither_torch_nor_jax():
    code = (BLOCK + "import bench, bench.schema, bench.analysis, bench.report, bench.compare, bench.plots, bench.suites, prcm.machine\n")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr


def test_a_throwaway_suite_runs_end_to_end_with_no_other_edit(tmp_path, monkeypatch):
    """One declaration (registered here) goes through the runner (two sessions, one of them in
    a worker process), the schema, the analysis and every renderer; nothing else is edited."""
    toy = Suite("toy", "PRCM and AffinePRCM at a small point", lambda s: [Point("toy", 2, 8, 8, 4, items=("PRCM", "AffinePRCM"))])
    monkeypatch.setitem(SUITES, "toy", toy)
    out = tmp_path / "out"
    code = cli.main(["--suites", "toy", "--backends", "torch-eager,jax-jit", "--threads", "all", "--sessions", "2", "--repeat", "5",
                     "--warmup", "1", "--out", str(out)])  # fmt: skip
    assert code == 0
    loaded = schema.load(out / "results.json")
    assert {r.suite for r in loaded.records} == {"toy"} and all(r.status == "ok" and r.sessions == 2 for r in loaded.records)
    assert {(c.kind, c.numerator, c.denominator) for c in loaded.comparisons} == {("backend", "torch-eager", "jax-jit"),
                                                                                  ("module", "AffinePRCM", "PRCM")}  # fmt: skip
    assert all(c.unstable or np.isfinite(c.ci95).all() for c in loaded.comparisons)  # 5 rounds in each of 2 sessions
    assert all(len(c.sessions) == 2 and c.p is not None for c in loaded.comparisons)  # two sessions, or unstable between them
    text = (out / "report.md").read_text()
    assert "### toy: median ms per call" in text and "### toy: ratios" in text and "![toy.png](toy.png)" in text
    assert (out / "toy.png").stat().st_size > 0


@pytest.mark.parametrize("items", [("none", "se", "AffinePRCM"), ("none", "AffinePRCM")])
def test_a_network_block_is_compared_with_no_block_and_with_timms_se(items):
    point = Point("network", 1, 3, 64, items=items, workload="forward", network="mobilenetv3_large_100", baseline="none",
                  backends=("torch-eager", "jax-jit"))  # fmt: skip
    found = {(n.item, n.backend, d[0].item) for kind, n, d in pairs(point, lanes(point, ("torch-eager", "jax-jit"))) if kind == "module"}
    want = {("AffinePRCM", "none")} | ({("se", "none"), ("AffinePRCM", "se")} if "se" in items else set())
    assert found == {(n, b, d) for n, d in want for b in ("torch-eager", "jax-jit")}


def test_a_network_training_step_is_checked_as_one_vector():
    """A gradient that is zero in exact arithmetic carries only rounding: it must not fail the
    step; an O(1) error anywhere in the step must."""
    from bench.workloads import NETWORK_TRAIN_TOLERANCE, Workload

    rng = np.random.default_rng(0)
    want = [rng.standard_normal(1000).astype(np.float32), np.full(8, 1e-9, np.float32)]
    work = Workload({}, {"torch": lambda: want}, tolerance=NETWORK_TRAIN_TOLERANCE, normwise=True)
    rounding = [want[0] * (1 + 1e-7), np.full(8, -1e-9, np.float32)]  # the near-zero tensor is off by 200%
    assert work.check("torch-eager", rounding) < 10
    wrong = [want[0] + 0.1 * rng.standard_normal(1000).astype(np.float32), want[1]]
    assert work.check("torch-eager", wrong) > NETWORK_TRAIN_TOLERANCE
    with pytest.raises(ValueError, match="expected 2 output tensors, got 1"):
        work.check("torch-eager", want[:1])
