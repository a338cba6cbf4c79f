"""The benchmark harness: sync, compile kept apart, kernel counting, training steps and what
they save, roofline arithmetic, comparisons and results.json, thread settings, robustness
(unavailable backends/devices, failing workers, interrupts, unwritable output).

Nothing here asserts a speed: speed is what `python -m bench` measures.
"""

import itertools
import json
import os
import pathlib
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import bench.__main__ as cli
from bench import analysis, findings, plots, runner, schema, stats, tables
from bench.backends import Call, prepare, resolve_device
from bench.fusion import dispatched_ops, hlo_entry_opcodes, hlo_kernel_count, inductor_kernel_calls, inductor_temp_bytes, jaxpr_ops
from bench.plan import BACKENDS, LAYOUTS, LOOP, MIN_TRAFFIC, Lane, Point, Settings, lanes
from bench.runner import Runner
from bench.schema import Comparison, Record
from bench.threads import cpus, parse_threads
from bench.timing import Schedule, Timed, measure, measure_many, minor_faults
from bench.workers import Options, Pools

DEVICE = resolve_device("cpu")[0]
FAST = Settings(quick=True, warmup=1, repeat=3)
REQUIRED = {"suite", "module", "backend", "device", "batch", "channels", "resolution", "num_basis", "median_ms",
            "p10_ms", "p90_ms", "params", "kernels", "gbps", "copy_fraction", "compile_s", "threads", "saved_bytes", "layout",
            "round_ms", "round_sessions", "working_set", "memory_level", "reference"}  # fmt: skip
COMPARISON = {"suite", "kind", "module", "backend", "numerator", "denominator", "batch", "channels", "resolution",
              "num_basis", "threads", "ratio", "ci95", "significant"}  # fmt: skip
SETTINGS = parse_threads(len(cpus()))("1,all")


def _out(y):
    return [np.asarray(y)]


def test_every_timed_call_is_synchronised():
    outputs, synced = [], []

    def run(_):
        outputs.append(object())
        return outputs[-1]

    measure(run, synced.append, warmup=2, repeat=9)
    assert len(outputs) == 11
    assert all(any(out is s for s in synced) for out in outputs)  # each output waited for


def test_interleaving_gives_every_item_its_calls_and_setup_is_untimed():
    calls = {"a": 0, "b": 0}
    made = []

    def item(name):
        def run(arg):
            assert arg is made[-1]  # the value setup made for this very call
            calls[name] += 1

        return Timed(run, lambda _: None, setup=lambda: made.append(object()) or made[-1])

    timings = measure_many({"a": item("a"), "b": item("b")}, Schedule.fixed(warmup=1, repeat=10, rounds=5))
    assert calls == {"a": 11, "b": 11} and timings["a"].repeat == timings["b"].repeat == 10


@pytest.mark.skipif(minor_faults() is None, reason="the OS does not count page faults")
def test_a_call_that_maps_fresh_memory_counts_its_page_faults_and_one_that_does_not_none():
    fresh = 64 << 20  # above glibc's largest mmap threshold: mapped afresh and touched every call
    items = {"fresh": Timed(lambda _: np.ones(fresh // 8), lambda _: None), "none": Timed(lambda _: None, lambda _: None)}
    timings = measure_many(items, Schedule.fixed(warmup=2, repeat=6, rounds=3))
    assert timings["fresh"].faults.shape == timings["fresh"].samples_ms.shape
    assert timings["fresh"].faults_per_call >= fresh / (2 << 20)  # one fault per page; with huge pages, per 2 MiB
    assert timings["none"].faults_per_call == 0


def test_without_page_fault_counts_the_timing_says_none(monkeypatch):
    import bench.timing

    monkeypatch.setattr(bench.timing, "resource", None)
    timing = measure(lambda _: None, lambda _: None, warmup=1, repeat=3)
    assert timing.faults is None and timing.faults_per_call is None and tables._faults(None) == ""


def test_groups_take_turns_in_blocks_and_their_members_interleave():
    order = []
    items = {name: Timed(lambda _, n=name: order.append(n), lambda _: None) for name in ("a1", "a2", "b1", "b2")}
    measure_many(items, Schedule.fixed(warmup=1, repeat=12, rounds=4), group=lambda name: name[0])
    timed = order[len(items) :]  # after the warm-up calls
    assert sorted(timed) == sorted(name for name in items for _ in range(12))
    blocks = [timed[i : i + 6] for i in range(0, len(timed), 6)]  # 4 rounds x 2 groups x 6 calls
    assert all(len({n[0] for n in block}) == 1 for block in blocks)  # a group's calls run together
    assert all(sorted(block) == [block[0][0] + "1"] * 3 + [block[0][0] + "2"] * 3 for block in blocks)
    assert any(block != sorted(block) for block in blocks)  # members shuffled call by call


def test_jax_compile_happens_once_and_outside_the_timed_loop():
    traces = []

    def fn(x):
        traces.append(1)  # runs only while tracing
        return jnp.sin(x) * 2.0

    runnable = prepare("jax-jit", Call(fn, (jnp.ones((4, 8, 8, 3)),), _out), DEVICE)
    assert runnable.compile_s > 0 and len(traces) == 1
    measure(runnable.run, runnable.sync, warmup=3, repeat=20)
    assert len(traces) == 1


def test_jax_eager_dispatches_every_operation_and_never_compiles_the_function():
    traces = []

    def fn(x):
        traces.append(1)
        return jnp.tanh(x) * 2.0 + 1.0

    runnable = prepare("jax-eager", Call(fn, (jnp.ones(8),), _out), DEVICE)
    assert runnable.compile_s is None and runnable.kernels == 3 and "tanh" in runnable.detail
    calls = len(traces)
    runnable.run(None)
    assert len(traces) == calls + 1  # the Python function runs on every call


def test_torch_compile_is_compiled_before_timing_and_never_again():
    from torch._dynamo.utils import counters

    module = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU())
    runnable = prepare("torch-compile", Call(module, (torch.randn(4, 8),), _out), DEVICE)
    compiled = dict(counters["stats"])
    assert runnable.compile_s > 0 and runnable.kernels >= 1
    measure(runnable.run, runnable.sync, warmup=3, repeat=20)
    assert dict(counters["stats"]) == compiled


def test_hlo_kernel_count_of_known_functions():
    x = jnp.ones((64, 64))
    chain = jax.jit(lambda x: jnp.tanh(x) * 2.0 + 1.0).lower(x).compile().as_text()
    assert hlo_kernel_count(chain) == 1  # one loop fusion
    reshaped = jax.jit(lambda x: x.reshape(64 * 64)).lower(x).compile().as_text()
    assert hlo_entry_opcodes(reshaped)["bitcast"] == 1 and hlo_kernel_count(reshaped) == 1  # the bitcast is free, the copy is not
    in_place = jax.jit(lambda x: x.reshape(64 * 64), donate_argnums=0).lower(x).compile().as_text()
    assert hlo_kernel_count(in_place) == 0
    text = """HloModule m
ENTRY %main (p0: f32[4]) -> (f32[4], f32[4]) {
  %p0 = f32[4]{0} parameter(0), metadata={op_name="fusion(custom-call)"}
  %c = f32[] constant(1)
  %cc = (f32[4]{0}, u8[0]{0}) custom-call(%p0), custom_call_target="foo"
  %g = f32[4]{0} get-tuple-element(%cc), index=0
  %f = f32[4]{0} fusion(%g, %c), kind=kLoop, calls=%fc
  ROOT %t = (f32[4]{0}, f32[4]{0}) tuple(%f, %g)
}"""
    assert dict(hlo_entry_opcodes(text)) == {"parameter": 1, "constant": 1, "custom-call": 1, "get-tuple-element": 1,
                                             "fusion": 1, "tuple": 1}  # fmt: skip
    assert hlo_kernel_count(text) == 2
    with pytest.raises(ValueError, match="no ENTRY"):
        hlo_kernel_count("HloModule m")


def test_eager_and_inductor_counts():
    ops = dispatched_ops(lambda: torch.ones(2, 3).mean(1).sigmoid())
    assert ops == {"ones": 1, "mean": 1, "sigmoid": 1}
    x = torch.ones(3, requires_grad=True)
    assert dispatched_ops(lambda: torch.autograd.grad(x.sigmoid().sum(), x), grad=True)["sigmoid_backward"] == 1
    code = "class Runner:\n    def call(self, args):\n        cpp_fused_mean_0(a)\n        extern_kernels.mm(a, b, out=c)\n        return (c,)\n"
    assert inductor_kernel_calls(code) == ["cpp_fused_mean_0", "extern_kernels.mm"]
    assert jaxpr_ops(lambda x: jnp.mean(x) + 1.0, jnp.ones(3)) == {"reduce_sum": 1, "div": 1, "add": 1}


@pytest.mark.parametrize("returned,temp", [("buf1, ", 256 + 4), ("buf0, buf1, ", 4), ("buf2, buf3, ", 4), ("buf4, ", 256 + 16)])
def test_inductor_temporaries_exclude_outputs_and_count_reuse_once(returned, temp):
    code = f"""def call(args):
    buf0 = empty_strided_cpu((8, 8), (8, 1), torch.float32)
    buf1 = empty_strided_cpu((2, 2), (2, 1), torch.float32)
    buf2 = buf0; del buf0  # reuse
    buf3 = reinterpret_tensor(buf1, (4, ), (1, ), 0); del buf1  # reuse
    buf4 = empty_strided_cpu((4, ), (1, ), torch.bool)
    return ({returned})"""
    assert inductor_temp_bytes(code) == temp


def test_roofline_arithmetic_passes_working_sets_and_fractions():
    """Each variant's bytes, GB/s and working set; the reference it meets is the copy touching
    as many buffers (in place for jax-jit's donated input), measured at the same size."""
    point = Point("roofline", 1, 8, 16, 4, items=("copy", "copy in-place", "PRCM"), variants=("fresh", "donated", "loop"))
    records = Runner(DEVICE, ("torch-eager", "jax-jit"), FAST, threads=1).run(point).records
    assert {(r.item, r.variant, r.backend) for r in records} == {
        (lane.item, lane.variant, lane.backend) for lane in lanes(point, ("torch-eager", "jax-jit"))
    }
    x_bytes = 1 * 8 * 16 * 16 * 4
    for r in records:
        assert r.status == "ok", r
        assert r.bytes == int(MIN_TRAFFIC[r.variant] * x_bytes)
        assert r.gbps == pytest.approx(r.bytes / (r.median_ms * 1e-3) / 1e9)
    buffers = {(r.item, r.variant, r.backend): r.working_set // x_bytes for r in records}
    assert buffers[("copy", "copy", "torch-eager")] == buffers[("PRCM", "fresh", "jax-jit")] == buffers[("PRCM", "loop", "torch-eager")] == 2
    assert buffers[("copy in-place", "copy", "jax-jit")] == buffers[("PRCM", "donated", "jax-jit")] == buffers[("PRCM", "loop", "jax-jit")] == 1
    assert MIN_TRAFFIC["loop"] == (LOOP + 2) / LOOP
    loop = next(r for r in records if r.variant == "loop" and r.backend == "jax-jit")
    assert loop.passes >= MIN_TRAFFIC["loop"] and loop.kernels > 1  # XLA sweeps a chain at least as often as the minimum
    analysis.place(records, {"machine": {"caches": []}})
    best = {op: max(r.gbps for r in records if r.op == op) for op in ("copy", "copy in-place")}
    for r in (r for r in records if r.module):
        assert r.reference == ("copy in-place" if r.backend == "jax-jit" and r.variant != "fresh" else "copy")
        assert r.copy_fraction == pytest.approx(r.gbps / best[r.reference]) and r.memory_level == "unknown"


def test_a_copy_in_place_gets_a_fresh_input_each_call_outside_the_timed_span():
    x = torch.arange(4.0)
    runnable = prepare("torch-eager", Call(torch.Tensor.neg_, (x,), lambda y: [y.numpy()], inplace=0), DEVICE)
    fresh = runnable.setup()
    assert fresh is not x and fresh.data_ptr() != x.data_ptr()
    np.testing.assert_array_equal(runnable.run(fresh).numpy(), -np.arange(4.0))
    np.testing.assert_array_equal(x.numpy(), np.arange(4.0))  # the source is never overwritten
    assert runnable.kernels == 1 and "neg_" in runnable.detail  # the clone made by setup is not counted


def _synthetic(factors: dict[Lane, float], rounds: int = 20, calls: int = 4, seed: int = 0) -> dict[Lane, np.ndarray]:
    """Timings of lanes that take ``factor`` x a common time, every round slower or faster for
    all lanes alike (drift the pairing must cancel), each call with 1% noise of its own."""
    rng = np.random.default_rng(seed)
    drift = rng.lognormal(0, 0.3, (rounds, 1))
    return {lane: f * drift * rng.lognormal(0, 0.01, (rounds, calls)) for lane, f in factors.items()}


def test_comparisons_schema_and_kinds():
    """The comparisons of a point, from synthetic timings (nothing real is timed): the issue's
    fields, numerator time / denominator time, a known ratio inside its interval, a
    no-difference pair not significant."""
    point = Point("latency", 1, 8, 8, 4, items=("PRCM", "AffinePRCM", "SEModule"))
    time = {"torch-eager": 1.5, "jax-jit": 1.0, "jax-eager": 6.0}  # backend's time, PRCM on jax-jit = 1
    module = {"PRCM": 1.0, "AffinePRCM": 1.3, "SEModule": 1.1}  # module / PRCM, except on jax-jit (the same)
    factors = {Lane(m, b): t * (1.0 if b == "jax-jit" else module[m]) for m in module for b, t in time.items()}
    found = [c.as_dict() for c in runner.comparisons(point, _synthetic(factors), threads=1)]
    assert found and all(set(c) >= COMPARISON for c in found)
    by_kind = {k: [c for c in found if c["kind"] == k] for k in ("backend", "module")}
    assert len(found) == sum(map(len, by_kind.values()))
    assert {(c["numerator"], c["denominator"]) for c in by_kind["backend"]} == {
        ("torch-eager", "jax-jit"), ("jax-eager", "jax-jit"), ("jax-eager", "torch-eager")
    }
    assert all(c["module"] in module and c["backend"] is None for c in by_kind["backend"])
    assert {(c["numerator"], c["denominator"]) for c in by_kind["module"]} == {("AffinePRCM", "PRCM"), ("SEModule", "PRCM")}
    assert all(c["backend"] in time and c["module"] is None for c in by_kind["module"])
    for c in found:
        lo, hi = c["ci95"]
        expected = (factors[Lane(c["module"], c["numerator"])] / factors[Lane(c["module"], c["denominator"])]
                    if c["kind"] == "backend" else
                    factors[Lane(c["numerator"], c["backend"])] / factors[Lane(c["denominator"], c["backend"])])  # fmt: skip
        assert 0 < lo <= c["ratio"] <= hi < np.inf and c["threads"] == 1
        assert lo <= expected <= hi and hi / lo < 1.05, c  # the drift cancels in the pairs
        assert c["significant"] is (expected != 1.0)  # 1.1x and beyond is; the same time is not
        assert c["num_basis"] == (None if (c["module"] or c["numerator"]) == "SEModule" else 4)
        assert json.loads(json.dumps(c)) == c


@pytest.mark.parametrize("workload", ["train", "backward"])
@pytest.mark.parametrize("module", ["PRCM", "SEModule"])
def test_a_training_step_is_checked_on_every_backend_and_reports_what_it_saves(module, workload):
    point = Point(workload, 2, 8, 8, 4, items=(module,), workload=workload)
    backends = BACKENDS if module == "PRCM" else ("torch-eager", "jax-jit", "jax-eager")
    records = {r.backend: r for r in Runner(DEVICE, backends, FAST, threads=1).run(point).records}
    x_bytes = 2 * 8 * 8 * 8 * 4
    for r in records.values():
        assert r.status == "ok" and r.workload == workload and r.check_eps <= 256, r
        assert r.bytes == MIN_TRAFFIC[workload] * x_bytes and r.saved_bytes is not None
    eager = records["torch-eager"]
    assert eager.saved_input_bytes >= x_bytes and eager.saved_bytes >= eager.saved_input_bytes  # x itself is kept
    assert records["jax-eager"].saved_input_bytes <= records["jax-eager"].saved_bytes
    assert records["jax-jit"].saved_input_bytes is None and "sigmoid_backward" in eager.kernel_detail


@pytest.mark.parametrize("workload,backends", [("forward", ("torch-eager", "jax-jit")), ("train", ("torch-eager",))])
def test_a_network_block_is_compared_with_the_same_network_without_one_in_both_torch_layouts(workload, backends):
    """CI's smoke path of the network suite: the smallest MobileNetV3 with no attention, timm's SE
    and AffinePRCM in its SE slots, on eager torch in both memory layouts (channels-last checked
    against channels-first) and on the twin: inference, and a training step in torch. (Batch 4:
    at batch 2 and 32 x 32 the last stages' train-mode BatchNorm normalises 2 values per channel,
    and the two layouts' float32 steps part by O(1) even without attention.)"""
    items = ("none", "se", "AffinePRCM")
    point = Point("network", 4, 3, 32, items=items, network="mobilenetv3_small_100", baseline="none", layouts=LAYOUTS,
                  workload=workload, compare=("backend", "module", "layout"))  # fmt: skip
    result = Runner(DEVICE, backends, FAST, threads=1).run(point)
    records = {(r.module, r.backend, r.layout): r for r in result.records}
    lanes_ = [("torch-eager", "channels_first"), ("torch-eager", "channels_last"), ("jax-jit", None)][: len(backends) + 1]
    assert set(records) == {(m, b, l) for m in items for b, l in lanes_}
    limit = 64 if workload == "forward" else 2.0**18
    assert all(r.status == "ok" and r.network == "mobilenetv3_small_100" and r.check_eps <= limit for r in records.values()), records
    params = {m: records[(m, "torch-eager", "channels_last")].params for m in items}
    assert params["none"] < params["AffinePRCM"] < params["se"]  # PRCM's selling point: fewer parameters than SE
    kinds = {(c.kind, c.backend, c.layout, c.numerator, c.denominator) for c in result.comparisons}
    assert {("module", "torch-eager", layout, numerator, denominator) for layout in LAYOUTS
            for numerator, denominator in (("AffinePRCM", "none"), ("se", "none"), ("AffinePRCM", "se"))} <= kinds
    assert ("layout", "torch-eager", "channels_last", "channels_last", "channels_first") in kinds
    assert all(c.network == "mobilenetv3_small_100" and c.num_basis is None for c in result.comparisons)
    from bench.workloads import Arrays, build, inputs

    work = build("none", "fresh", workload, point, Arrays(inputs(4, 3, 32, 4), DEVICE), "channels_last")
    x = work.call("torch-eager").args[0]
    assert x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    assert work.torch_modules[0].conv_stem.weight.is_contiguous(memory_format=torch.channels_last) and work.nnx_model is None
    if workload == "train":
        return
    assert records[("AffinePRCM", "jax-jit", None)].params == records[("AffinePRCM", "torch-eager", "channels_last")].params
    assert {("module", "jax-jit", None, "AffinePRCM", "none"), ("module", "jax-jit", None, "AffinePRCM", "se"),
            ("backend", None, "channels_first", "torch-eager", "jax-jit"), ("backend", None, "channels_last", "torch-eager", "jax-jit")} <= kinds
    if minor_faults() is not None:
        assert all(r.faults_per_call >= 0 for r in records.values())
        table = tables.network(result.records, result.comparisons, backends)[0]
        assert table.headers[-1] == "faults/call (torch-eager / torch-eager CL / jax-jit)"
        assert all(cell.replace(",", "").isdigit() for row in table.rows for cell in row[-1].split(" / "))
        finding = findings.network(result.records, result.comparisons, {})
        assert any(f.startswith("Minor page faults per call, mobilenetv3_small_100 forward at (4, 3, 32, 32), 1 thread(s), no attention: "
                                "torch-eager ") for f in finding)  # fmt: skip


def test_networks_of_the_same_input_are_measured_apart():
    """resnet50 at a shape resnet18 was measured at is a new measurement, not resnet18's cached one."""
    bench = Runner(DEVICE, ("torch-eager",), FAST, threads=1)
    first = bench.run(Point("network", 1, 3, 32, items=("none",), network="resnet18", baseline="none"))
    second = bench.run(Point("network", 1, 3, 32, items=("none",), network="resnet50", baseline="none"))
    assert [r.network for r in first.records] == ["resnet18"] and [r.network for r in second.records] == ["resnet50"]
    assert second.records[0].params > first.records[0].params

def test_a_wrong_kernel_is_never_timed(monkeypatch):
    original = runner.build

    def broken(*args):
        work = original(*args)
        call = work.calls["jax"]
        fn = call.fn
        call.fn = lambda leaves, x: fn(leaves, x) * 1.001
        return work

    monkeypatch.setattr(runner, "build", broken)
    records = Runner(DEVICE, ("torch-eager", "jax-jit"), FAST).run(Point("latency", 1, 8, 8, 4, items=("PRCM",))).records
    jax_record = next(r for r in records if r.backend == "jax-jit")
    assert jax_record.status == "mismatch" and jax_record.median_ms is None and "not timed" in jax_record.reason
    assert next(r for r in records if r.backend == "torch-eager").status == "ok"


def test_unavailable_backend_is_reported_and_the_rest_runs(monkeypatch):
    monkeypatch.setattr(runner, "unavailable", lambda backend, device: "no compiler" if backend == "torch-compile" else None)
    result = Runner(DEVICE, ("torch-eager", "torch-compile", "jax-jit"), FAST, threads=1).run(
        Point("latency", 1, 8, 8, 4, items=("PRCM", "SEModule"))
    )
    status = {(r.module, r.backend): (r.status, r.reason) for r in result.records}
    assert status[("PRCM", "torch-compile")] == ("unavailable", "no compiler")
    assert status[("SEModule", "jax-jit")][0] == status[("PRCM", "torch-eager")][0] == "ok"
    assert not any("torch-compile" in (c.numerator, c.denominator) for c in result.comparisons)
    table = tables.latency(result.records, result.comparisons, ("torch-eager", "torch-compile", "jax-jit"))[0]
    assert "unavailable" in table.rows[0]


def _comparison(ratio, lo, hi, significant, **kw):
    base = dict(suite="latency", kind="backend", module="PRCM", backend=None, numerator="torch-eager", denominator="jax-jit",
                batch=1, channels=64, resolution=64, num_basis=8, threads=1)  # fmt: skip
    return Comparison(**{**base, **kw}, ratio=ratio, ci95=[lo, hi], significant=significant)


def test_findings_name_no_winner_inside_the_noise():
    comps = [_comparison(1.01, 0.97, 1.05, False, kind="threads", backend="jax-jit", numerator="1 thread", denominator="2 threads",
                         threads=None),
             _comparison(1.80, 1.70, 1.90, True, kind="threads", backend="torch-eager", numerator="1 thread",
                         denominator="2 threads", threads=None)]  # fmt: skip
    text = "\n".join(findings.threads([], comps, {}))
    assert "1.01x [0.97, 1.05] n.s.: no significant difference" in text
    assert "1.80x [1.70, 1.90]: 2 threads faster" in text


def test_the_backward_step_is_reported_apart_from_the_training_step():
    at = dict(batch=8, channels=64, resolution=56)
    train = findings.train([], [_comparison(2.0, 1.8, 2.2, True, suite="train", workload="train", **at)], {})
    backward = findings.train([], [_comparison(6.0, 5.5, 6.5, True, suite="backward", workload="backward", **at)], {})
    assert train[0].startswith("Training step at (8, 64, 56, 56), 1 thread(s), PRCM: torch-eager / jax-jit = 2.00x [1.80, 2.20]")
    assert backward[0].startswith("Forward and backward pass for cot (no loss value) at (8, 64, 56, 56), 1 thread(s), PRCM: "
                                  "torch-eager / jax-jit = 6.00x [5.50, 6.50]")  # fmt: skip


def test_one_colour_per_backend_and_one_style_per_module():
    assert set(plots.BACKEND_COLORS) == set(BACKENDS) and len(set(plots.COLORS.values())) == len(plots.COLORS)
    assert {tables.lane_label(b, layout) for b in ("torch-eager", "torch-compile") for layout in LAYOUTS} <= set(plots.COLORS)
    from prcm.catalog import MODULES

    assert set(MODULES) <= set(plots.STYLES) and len(set(map(str, plots.STYLES.values()))) == len(plots.STYLES)


def _sweep_data() -> tuple[list[Record], list[Comparison]]:
    """A batch sweep and training points at two thread settings, from synthetic timings."""
    records, comps = [], []
    time = {"torch-eager": 2.0, "torch-compile": 0.5, "jax-jit": 1.0, "jax-eager": 8.0}
    for suite, batch, threads in itertools.product(("batch", "train"), (1, 2, 4, 8, 16, 32), (1, 2)):
        point = Point(suite, batch, 64, 56 if suite == "train" else 64, 8, items=("PRCM", "AffinePRCM", "SEModule"),
                      workload="train" if suite == "train" else "forward")  # fmt: skip
        factors = {Lane(m, b): t * batch * (1.3 if m == "AffinePRCM" and b != "jax-jit" else 1.0)
                   for m in point.items for b, t in time.items()}  # fmt: skip
        comps += runner.comparisons(point, _synthetic(factors, seed=batch), threads)
        records += [Record(suite, lane.backend, "cpu", module=lane.item, threads=threads, batch=batch, channels=64,
                           resolution=point.resolution, num_basis=8, median_ms=0.05 * f) for lane, f in factors.items()]  # fmt: skip
    return records, comps


def test_figures_facet_modules_title_above_panels_and_label_every_axis(tmp_path, monkeypatch):
    """Readable at a glance: a latency panel and a ratio panel per module in each sweep (at
    most one line per backend), the figure's title clear of the panels' titles, and at least
    two labelled ticks on every axis."""
    figures = {}

    def keep(fig, path, handles):
        figures[path.name] = fig
        return path

    monkeypatch.setattr(plots, "_save", keep)
    records, comps = _sweep_data()
    by_suite = lambda x, suite: [i for i in x if i.suite == suite]  # noqa: E731
    written = {p.name for p in plots.sweep(tmp_path, by_suite(records, "batch"), by_suite(comps, "batch"), {})}
    written |= {p.name for p in plots.train(tmp_path, by_suite(records, "train"), by_suite(comps, "train"), {})}
    assert {"sweep_batch.png", "train_batch.png", "train.png"} <= written
    for name in ("sweep_batch.png", "train_batch.png"):
        axes = figures[name].axes
        assert len(axes) == 7 * 2  # 3 modules x (ms, each backend / jax-jit) + AffinePRCM / PRCM, per thread setting
        labels = [ax.get_ylabel() for ax in axes[::2]]
        assert labels == [f"{m}\n{panel}" for m in ("PRCM", "AffinePRCM", "SEModule") for panel in ("median ms", "each backend / jax-jit")
                          ] + ["AffinePRCM / PRCM\nsame backend"]  # fmt: skip
        drawn = [[l for l in ax.get_lines() if len(l.get_xdata()) == 6 and l.get_linestyle() != "None"] for ax in axes]
        assert all(len(lines) <= len(BACKENDS) for lines in drawn)  # hollow markers (n.s.) are drawn over a line
    for name, fig in figures.items():
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        top = max(ax.title.get_window_extent(renderer).y1 for ax in fig.axes if ax.get_title())
        assert fig.get_suptitle() and fig._suptitle.get_window_extent(renderer).y0 >= top, name
        for ax in fig.axes:
            for axis, limits in ((ax.yaxis, ax.get_ylim()), (ax.xaxis, ax.get_xlim())):
                lo, hi = sorted(limits)
                ticks = axis.get_major_ticks()
                shown = [t.label1.get_text() for t in ticks if lo <= t.get_loc() <= hi and t.label1.get_visible() and t.label1.get_text()]
                hidden = not any(t.label1.get_visible() for t in ticks)  # a panel sharing its neighbour's labels
                assert hidden or len(shown) >= 2, (name, ax.get_ylabel(), shown)


def _labels(ax, axis):
    """The labels a reader sees on one axis, and the pairs of them that overlap."""
    ax.figure.canvas.draw()
    renderer = ax.figure.canvas.get_renderer()
    lo, hi = sorted(ax.get_ylim() if axis == "y" else ax.get_xlim())
    ticks = [t for t in (ax.yaxis if axis == "y" else ax.xaxis).get_major_ticks()
             if lo <= t.get_loc() <= hi and t.label1.get_visible() and t.label1.get_text()]  # fmt: skip
    boxes = [t.label1.get_window_extent(renderer) for t in ticks]
    crowded = [(a.label1.get_text(), b.label1.get_text()) for (a, p), (b, q) in itertools.combinations(zip(ticks, boxes), 2)
               if p.overlaps(q)]  # fmt: skip
    return [t.label1.get_text() for t in ticks], crowded


@pytest.mark.parametrize("span", [(1.05, 1.3), (0.9, 1.9), (2.3, 9.3), (0.23, 0.93), (0.4, 25), (0.3, 80), (1e-3, 10)])
def test_log_axes_show_two_labels_or_more_and_none_overlap(span):
    plt = plots._pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 2.1))
    ax.plot([0, 1], span)
    plots._ratio_scale(ax)
    shown, crowded = _labels(ax, "y")
    assert len(shown) >= 2 and not crowded, (shown, crowded)
    plt.close(fig)


def test_panels_sharing_a_log_axis_are_ticked_for_their_common_range():
    plt = plots._pyplot()
    fig, axes = plt.subplots(1, 2, sharex=True, figsize=(9, 3))
    axes[0].plot([0.4, 25], [0, 1])  # 1 thread
    axes[1].plot([1.05, 1.3], [0, 1])  # 2 threads, ticked last
    for ax in axes:
        plots._ratio_scale(ax, "x")
    shown, crowded = _labels(axes[0], "x")
    assert "1x" in shown and "10x" in shown and not crowded, shown
    plt.close(fig)


@pytest.mark.parametrize("text,expected", [("1,all", SETTINGS), ("all", (len(cpus()),)), ("1", (1,)), ("1, 1", (1,))])
def test_thread_settings_parse(text, expected):
    assert parse_threads(len(cpus()))(text) == expected


def test_a_worker_sets_threads_and_lets_its_thread_float():
    code = ("from bench.threads import configure, cpus; import os, torch; configure(1, False, pin=True); "
            "print(torch.get_num_threads(), sorted(os.sched_getaffinity(0)) == cpus())")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.split() == ["1", "True"], done.stderr


def test_a_failing_worker_is_an_error_not_a_hang():
    local = Runner(DEVICE, ("jax-jit",), FAST, threads=len(cpus()) + 1)  # never this setting
    pools = Pools(local, Options(1, "cpu", ("jax-jit",), None, False))  # settings=None: the worker's runner fails
    try:
        with pytest.raises(RuntimeError, match="1-thread worker failed"):
            pools.run(Point("latency", 1, 8, 8, 4, items=("PRCM",)), 1)
    finally:
        pools.close(kill=True)


def _run_cli(tmp_path, *args):
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "bench", "--out", str(out), *args], capture_output=True, text=True)
    return done, out


def test_quick_run_writes_results_comparisons_report_and_plots(tmp_path):
    """CI's smoke path of the command: a quick run, every result field, the report, and the same
    report rendered again from results.json alone."""
    done, out = _run_cli(tmp_path, "--quick", "--suites", "params,latency,batch,fusion", "--backends",
                         "torch-eager,jax-jit", "--repeat", "5", "--warmup", "1", "--sessions", "2")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads((out / "results.json").read_text())
    assert {"schema", "meta", "records", "comparisons"} == set(results) and results["schema"] == schema.VERSION
    meta = results["meta"]
    assert meta["threads"]["settings"] == list(SETTINGS) and meta["versions"]["jax"] == jax.__version__
    assert meta["statistics"]["resamples"] > 0 and meta["settings"]["sessions"] == 2
    assert meta["machine"]["cpu_model"] and meta["date"] and (meta["commit"] is None or len(meta["commit"]["hash"]) == 40)
    assert {r["suite"] for r in results["records"]} == {"params", "latency", "batch", "fusion"}
    for record in results["records"]:
        assert REQUIRED <= set(record), REQUIRED - set(record)
        assert record["backend"] in ("torch-eager", "jax-jit") and record["status"] == "ok"
    timed = [r for r in results["records"] if r["suite"] == "latency"]
    assert len(timed) == 12 * len(SETTINGS) and {r["threads"] for r in timed} == set(SETTINGS)
    assert all(r["p10_ms"] <= r["median_ms"] <= r["p90_ms"] and r["sessions"] == 2 and sorted(set(r["round_sessions"])) == [0, 1]
               for r in timed)  # fmt: skip
    assert {r["threads"] for r in results["records"] if r["suite"] == "fusion"} == {None}
    comps = results["comparisons"]
    assert all(COMPARISON <= set(c) for c in comps)
    assert {c["threads"] for c in comps if c["kind"] != "threads"} == set(SETTINGS)
    assert all(c["threads"] is None and not c["paired"] for c in comps if c["kind"] == "threads")
    assert (len(SETTINGS) > 1) == any(c["kind"] == "threads" for c in comps)
    for name in ("sweep_batch.png", "fusion.png", "latency.png"):
        assert (out / name).stat().st_size > 0
    text = (out / "report.md").read_text()
    assert text.startswith("# prcm benchmark\n\n## Answers\n\n- What AffinePRCM costs over PRCM at the seed point")
    assert "## Findings" in text and "torch-eager / jax-jit" in text and "### fusion" in text and "x [" in text
    assert "latency: median ms at (1, 64, 64, 64), 1 thread(s)" in done.stdout
    from bench import report  # what 'python -m bench report' does: the same report from results.json alone

    report.render(schema.load(out / "results.json"), tmp_path / "again")
    for name in ("report.md", "results.md"):
        assert (tmp_path / "again" / name).read_text() == (out / name).read_text(), name


def test_unavailable_device_writes_a_valid_empty_result(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    done, out = _run_cli(tmp_path, "--device", "cuda", "--suites", "latency")
    assert done.returncode == 1 and "device cuda unavailable" in done.stdout
    results = json.loads((out / "results.json").read_text())
    assert results["records"] == results["comparisons"] == []
    assert "torch.cuda.is_available() is False" in results["meta"]["device_unavailable"]


def test_interrupt_writes_what_finished(tmp_path, monkeypatch):
    real_run = Runner.run
    seen = []

    def interrupt_second(self, point, **kw):
        if seen:
            raise KeyboardInterrupt
        seen.append(point)
        return real_run(self, point, **kw)

    monkeypatch.setattr(Runner, "run", interrupt_second)
    out = tmp_path / "out"
    code = cli.main(["--quick", "--suites", "batch", "--backends", "torch-eager", "--repeat", "2", "--threads", "all",
                     "--out", str(out)])  # fmt: skip
    results = json.loads((out / "results.json").read_text())
    assert code == 130 and results["meta"]["interrupted"] is True
    assert {r["batch"] for r in results["records"]} == {seen[0].batch}


def test_a_worker_that_dies_ends_the_run_with_what_finished(tmp_path, monkeypatch, capsys):
    from bench.workers import WorkerError

    real_run = Pools.run

    def second_point_dies(self, point, threads, session=0, **kw):
        if point.batch != 1:
            raise WorkerError("the 1-thread worker died (exit code -9)")
        return real_run(self, point, threads, session, **kw)

    monkeypatch.setattr(Pools, "run", second_point_dies)
    out = tmp_path / "out"
    code = cli.main(["--quick", "--suites", "batch", "--backends", "torch-eager", "--repeat", "2", "--threads", "all",
                     "--out", str(out)])  # fmt: skip
    results = json.loads((out / "results.json").read_text())
    assert code == 1 and "1-thread worker died" in capsys.readouterr().out
    assert {r["batch"] for r in results["records"]} == {1}


@pytest.mark.parametrize(
    "args,message",
    [
        (["--suites", "latency,foo"], "unknown suite foo; choose from params, latency"),
        (["--backends", "tensorflow"], "unknown backend tensorflow; choose from torch-eager, torch-compile, jax-jit, jax-eager"),
        (["--repeat", "0"], "expected an integer >= 1, got 0"),
        (["--warmup", "x"], "expected an integer >= 0, got 'x'"),
        (["--sessions", "0"], "expected an integer >= 2, got 0"),
        (["--sessions", "1"], "expected an integer >= 2, got 1"),
        (["--threads", "0"], "expected thread counts from 1 to"),
        (["--threads", "1,junk"], "or 'all', comma-separated, got '1,junk'"),
        (["--threads", "4096"], f"(this process may use {len(cpus())} CPUs)"),
        (["--threads", "1,,all"], "got '1,,all'"),
        (["--threads", "-1"], "got '-1'"),
        (["--device", "tpu"], "invalid choice: 'tpu'"),
    ],
)
def test_bad_arguments_exit_2_before_any_work(args, message, capsys):
    with pytest.raises(SystemExit) as info:
        cli.parse_args(args)
    assert info.value.code == 2 and message in capsys.readouterr().err


def test_missing_matplotlib_exits_2_before_any_work(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import raises, as when it is not installed
    with pytest.raises(SystemExit) as info:
        cli.parse_args(["--suites", "latency"])
    err = capsys.readouterr().err.splitlines()[-1]  # after the usage lines
    assert info.value.code == 2 and "the plots need matplotlib" in err and "pip install -c constraints.txt" in err


def test_without_timm_the_network_suite_is_reported_unavailable(monkeypatch):
    from bench.workloads import network_unavailable

    assert network_unavailable() is None
    monkeypatch.setitem(sys.modules, "timm", None)
    assert cli.parse_args([]).suites == tuple(cli.SUITES)  # the run goes on; the network lanes say why they did not run
    assert network_unavailable().startswith("the network suite needs timm (and torchvision matching torch): ModuleNotFoundError")


def test_unwritable_output_is_refused_before_any_work(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SystemExit, match="cannot write results to"):
        cli.main(["--out", str(blocker / "sub")])
    with pytest.raises(SystemExit, match="exists and is not a folder"):
        cli.main(["--out", str(blocker)])

    def denied(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(type(tmp_path), "write_text", denied)
    with pytest.raises(SystemExit, match="cannot write results to .*Permission denied"):
        cli.main(["--out", str(tmp_path / "ro")])


def test_records_are_flat_and_complete():
    fields = Record("x", None, "cpu").as_dict()
    assert REQUIRED <= set(fields)
    assert all(not isinstance(v, (dict, list)) for v in fields.values())


def test_results_that_cannot_be_written_end_with_a_clear_message(tmp_path, monkeypatch, capsys):
    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(schema, "save", full_disk)
    code = cli.main(["--quick", "--suites", "params", "--out", str(tmp_path / "out")])
    assert code == 1 and "could not write results to" in capsys.readouterr().out


def test_settings_are_data():
    quick, full = Settings(quick=True), Settings()
    assert quick.schedule_for(None).time_cap_s < full.schedule_for(None).time_cap_s and quick.target >= full.target
    assert Settings(repeat=7, warmup=0).schedule_for(None) == Schedule.fixed(0, 7)
    assert os.cpu_count() >= 1


@pytest.mark.parametrize("kind", ["forward", "train"])
def test_every_round_computes_with_fresh_copies_and_nothing_recompiles(kind):
    """Between rounds the inputs and every parameter move to new buffers (so where they lie
    varies within a run as it does between runs); the outputs stay what was checked and
    torch.compile's graphs are reused."""
    from torch._dynamo.utils import counters

    from bench.workloads import Arrays, build, inputs

    point = Point("train" if kind == "train" else "latency", 2, 8, 8, 4, items=("AffinePRCM",), workload=kind)
    work = build("AffinePRCM", "fresh", kind, point, Arrays(inputs(2, 8, 8, 4), DEVICE))
    backends = ("torch-eager", "torch-compile", "jax-jit", "jax-eager")
    runnables = {b: prepare(b, work.call(b), DEVICE) for b in backends}
    before = {b: r.output() for b, r in runnables.items()}
    compiled = dict(counters["stats"])
    module, model = work.torch_modules[0], work.nnx_model
    pointers = [p.data_ptr() for p in module.parameters()] + [v.unsafe_buffer_pointer() for v in jax.tree.leaves(nnx.state(model, nnx.Param))]
    args = {b: jax.tree.leaves(work.call(b).args) for b in backends}
    refresh = runner._refresher([work.call(b) for b in backends], [work])
    refresh()
    after_ptrs = [p.data_ptr() for p in module.parameters()] + [v.unsafe_buffer_pointer() for v in jax.tree.leaves(nnx.state(model, nnx.Param))]
    assert not set(pointers) & set(after_ptrs)
    for b in backends:
        floating = [(a, n) for a, n in zip(args[b], jax.tree.leaves(work.call(b).args), strict=True)
                    if getattr(a, "dtype", None) in (torch.float32, jnp.float32)]  # fmt: skip
        assert floating and all(a is not n for a, n in floating)
        for got, want in zip(runnables[b].output(), before[b], strict=True):
            np.testing.assert_array_equal(got, want)
    assert dict(counters["stats"]) == compiled


def test_sessions_merge_into_one_record_per_lane_and_two_stage_intervals():
    """A point timed in several processes: calls pooled per lane, and the interval of a ratio
    that moved between processes covers both processes' ratios."""
    point = Point("latency", 1, 8, 8, 4, items=("PRCM",))
    lanes_ = [Lane("PRCM", "torch-eager"), Lane("PRCM", "jax-jit")]
    rng = np.random.default_rng(0)

    def session(slow: float, seed: int) -> runner.PointResult:
        samples = _synthetic({lanes_[0]: 2.0 * slow, lanes_[1]: 1.0}, seed=seed)
        records = [Record("latency", lane.backend, "cpu", module="PRCM", repeat=80, rounds=20, check_eps=1.0) for lane in lanes_]
        return runner.PointResult(records, [], samples, lanes_)

    def ratio(merged: runner.PointResult) -> Comparison:
        (found,) = [c for c in merged.comparisons if c.kind == "backend"]
        assert (found.numerator, found.denominator, found.threads) == ("torch-eager", "jax-jit", 1)
        return found

    first, second = session(1.0, 1), session(1.2, 2)
    merged = runner.merge_sessions([first, second], point, threads=1)
    assert [r.rounds for r in merged.records] == [40, 40] and [r.repeat for r in merged.records] == [160, 160]
    alone = [stats.paired_ratio(s.samples[lanes_[0]], s.samples[lanes_[1]]) for s in (first, second)]
    assert alone[0].hi < alone[1].lo  # the processes disagree beyond their own intervals ...
    assert ratio(merged).ci95[0] <= alone[0].value and alone[1].value <= ratio(merged).ci95[1]  # ... the merged one holds both
    # Sessions that agree: each round stays paired with its partner through the merge, so the
    # rounds' common drift (30%) cancels and the interval is the pairs' own (1% noise).
    agree = runner.merge_sessions([session(1.0, s) for s in (3, 4, 5)], point, threads=1)
    together = {lane: np.concatenate([session(1.0, s).samples[lane] for s in (3, 4, 5)]) for lane in lanes_}
    expected = stats.paired_ratio(*together.values(), sessions=np.repeat([0, 1, 2], 20))
    assert ratio(agree).ci95 == pytest.approx([expected.lo, expected.hi]) and ratio(agree).ratio == pytest.approx(expected.value)
    assert 1.98 < ratio(agree).ci95[0] and ratio(agree).ci95[1] < 2.02


def test_a_lane_that_failed_in_one_session_keeps_its_reason():
    point = Point("latency", 1, 8, 8, 4, items=("PRCM",))
    lane = Lane("PRCM", "jax-jit")
    ok = runner.PointResult([Record("latency", "jax-jit", "cpu", module="PRCM")], [], {lane: np.ones((3, 2))}, [lane])
    bad = runner.PointResult([Record("latency", "jax-jit", "cpu", module="PRCM", status="error", reason="boom")], [], {}, [lane])
    merged = runner.merge_sessions([ok, bad], point, threads=1)
    assert [(r.status, r.reason) for r in merged.records] == [("error", "boom")] and not merged.samples


def test_extra_sessions_run_in_their_own_workers_and_are_closed_after_use():
    local = Runner(DEVICE, ("jax-jit",), FAST, threads=len(cpus()))
    pools = Pools(local, Options(len(cpus()), "cpu", ("jax-jit",), FAST, False))
    point = Point("latency", 1, 8, 8, 4, items=("PRCM",))
    try:
        first, second = pools.run(point, len(cpus()), 0), pools.run(point, len(cpus()), 1)
        worker = pools._workers[len(cpus()), 1].process
        assert worker.is_alive() and [r.status for r in first.records + second.records] == ["ok", "ok"]
        pools.close_session(1)
        worker.join(10)
        assert not worker.is_alive() and not pools._workers
    finally:
        pools.close(kill=True)


def test_sessions_leave_their_ratios_to_the_merge():
    point = Point("latency", 1, 8, 8, 4, items=("PRCM",))
    backends = ("torch-eager", "jax-jit")
    runs = [Runner(DEVICE, backends, FAST, threads=1).run(point, compare=False) for _ in range(2)]
    assert all(r.samples and not r.comparisons for r in runs)
    merged = runner.merge_sessions(runs, point, threads=1)
    assert [(c.numerator, c.denominator) for c in merged.comparisons] == [("torch-eager", "jax-jit")]


def test_release_memory_hands_a_freed_heap_back_to_the_os():
    code = """
from bench.threads import steady_malloc, release_memory
def rss(): return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
steady_malloc()
blocks = [bytearray(1 << 20) for _ in range(256)]  # 256 MiB in pieces below the mmap threshold
above = bytearray(1 << 20)  # keeps them from the top of the heap, where free() would trim
del blocks
before = rss()
print(release_memory(), before - rss())
"""
    released, freed_mb = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert released == "True" and float(freed_mb) > 200


def test_every_point_releases_what_it_compiled_and_allocated(monkeypatch):
    calls = []
    monkeypatch.setattr(runner, "release_memory", lambda: calls.append(True))
    Runner(DEVICE, ("jax-jit",), FAST, threads=1).run(Point("latency", 1, 8, 8, 4, items=("PRCM",)))
    assert calls == [True]


def _gone(pid: int) -> bool:
    try:
        return pathlib.Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"  # a zombie nobody reaped
    except FileNotFoundError:
        return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_worker_ends_when_its_parent_is_killed():
    code = """
import multiprocessing, time
from bench.workers import _die_with_parent
def worker():
    _die_with_parent()
    time.sleep(120)
if __name__ == "__main__":
    process = multiprocessing.get_context("fork").Process(target=worker)
    process.start()
    print(process.pid, flush=True)
    time.sleep(120)
"""
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    pid = int(parent.stdout.readline())
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 20
    while not _gone(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _gone(pid)


def test_an_unparsable_hlo_instruction_is_named_in_a_value_error():
    with pytest.raises(ValueError, match=r"cannot parse HLO instruction %?a: f32\[\] !x"):
        hlo_entry_opcodes("ENTRY %m {\n  %a = f32[] !x\n}")


def test_the_roofline_finding_reads_steady_lanes_before_flagged_ones():
    def lane(gbps, flag=None, batch=4):
        return Record("roofline", "torch-eager", "cpu", module="PRCM", variant="fresh", threads=1, batch=batch, channels=64,
                      resolution=256, gbps=gbps, copy_fraction=gbps / 50, flag=flag, memory_level="DRAM", reference="copy",
                      median_ms=1.0)  # fmt: skip

    steady = findings.roofline([lane(25.0, "bimodal: the rounds ran at two speeds"), lane(6.0, batch=16)], [], {})
    assert steady == ["torch-eager (fresh, 1 thread(s), DRAM-resident working sets): best 12% of the copy's bandwidth against "
                      "3.00 x size, 6.0 GB/s (PRCM, (16, 64, 256, 256))."]  # fmt: skip
    flagged = findings.roofline([lane(25.0, "spread"), lane(6.0, "spread", batch=16)], [], {})
    assert flagged[0].endswith("25.0 GB/s (PRCM, (4, 64, 256, 256); every lane flagged unstable).")
