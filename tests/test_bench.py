"""The benchmark harness: sync, compile kept apart, kernel counting, roofline arithmetic,
results.json, and robustness (unavailable backends/devices, interrupts, unwritable output).

Nothing here asserts a speed: speed is what `python -m bench` measures.
"""

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest
import torch

import bench.__main__ as cli
from bench import report, suites
from bench.backends import prepare, resolve_device
from bench.fusion import dispatched_ops, hlo_entry_opcodes, hlo_kernel_count, inductor_kernel_calls
from bench.suites import Point, Record, Runner, Settings, lanes
from bench.timing import Timed, measure, measure_many

DEVICE = resolve_device("cpu")[0]
FAST = Settings(quick=True, warmup=1, repeat=3)
REQUIRED = {"suite", "module", "backend", "device", "batch", "channels", "resolution", "num_basis", "median_ms",
            "p10_ms", "p90_ms", "params", "kernels", "gbps", "copy_fraction", "compile_s"}  # fmt: skip


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

    timings = measure_many({"a": item("a"), "b": item("b")}, warmup=1, repeat=10, rounds=5)
    assert calls == {"a": 11, "b": 11} and timings["a"].repeat == timings["b"].repeat == 10


def test_groups_take_turns_in_blocks_and_their_members_interleave():
    order = []
    items = {name: Timed(lambda _, n=name: order.append(n), lambda _: None) for name in ("a1", "a2", "b1", "b2")}
    measure_many(items, warmup=1, repeat=12, rounds=4, group=lambda name: name[0])
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

    runnable = prepare("jax-jit", fn, (jnp.ones((4, 8, 8, 3)),), DEVICE, channels_last=True)
    assert runnable.compile_s > 0 and len(traces) == 1
    measure(runnable.run, runnable.sync, warmup=3, repeat=20)
    assert len(traces) == 1


def test_torch_compile_is_compiled_before_timing_and_never_again():
    from torch._dynamo.utils import counters

    module = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU())
    runnable = prepare("torch-compile", module, (torch.randn(4, 8),), DEVICE)
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
    code = "class Runner:\n    def call(self, args):\n        cpp_fused_mean_0(a)\n        extern_kernels.mm(a, b, out=c)\n        return (c,)\n"
    assert inductor_kernel_calls(code) == ["cpp_fused_mean_0", "extern_kernels.mm"]


def test_roofline_arithmetic_and_copy_fraction():
    point = Point("roofline", 1, 8, 16, 4, items=("copy", "PRCM"), variants=("fresh", "donated", "loop"))
    records = Runner(DEVICE, ("torch-eager", "jax-jit"), FAST).run(point)
    assert {(r.module or r.op, r.variant, r.backend) for r in records} == {
        (lane.item, lane.variant, lane.backend) for lane in lanes(point, ("torch-eager", "jax-jit"))
    }
    x_bytes = 1 * 8 * 16 * 16 * 4
    for r in records:
        assert r.status == "ok", r
        assert r.bytes == (2 if r.op == "copy" else 3) * x_bytes
        assert r.gbps == pytest.approx(r.bytes / (r.median_ms * 1e-3) / 1e9)
    best = report.copy_fractions(records)
    assert best == {"(1, 8, 16, 16)": max(r.gbps for r in records if r.op == "copy")}
    assert all(r.copy_fraction == pytest.approx(r.gbps / best["(1, 8, 16, 16)"]) for r in records)


def test_a_wrong_kernel_is_never_timed(monkeypatch):
    original = suites._module_workload

    def broken(*args):
        work = original(*args)
        jax_fn = work.jax_fn
        work.jax_fn = lambda leaves, x: jax_fn(leaves, x) * 1.001
        return work

    monkeypatch.setattr(suites, "_module_workload", broken)
    records = Runner(DEVICE, ("torch-eager", "jax-jit"), FAST).run(Point("latency", 1, 8, 8, 4, items=("PRCM",)))
    jax_record = next(r for r in records if r.backend == "jax-jit")
    assert jax_record.status == "mismatch" and jax_record.median_ms is None and "not timed" in jax_record.reason
    assert next(r for r in records if r.backend == "torch-eager").status == "ok"


def test_unavailable_backend_is_reported_and_the_rest_runs(monkeypatch):
    monkeypatch.setattr(suites, "unavailable", lambda backend, device: "no compiler" if backend == "torch-compile" else None)
    records = Runner(DEVICE, ("torch-eager", "torch-compile", "jax-jit"), FAST).run(
        Point("latency", 1, 8, 8, 4, items=("PRCM", "SEModule"))
    )
    status = {(r.module, r.backend): (r.status, r.reason) for r in records}
    assert status[("PRCM", "torch-compile")] == ("unavailable", "no compiler")
    assert status[("SEModule", "jax-jit")][0] == status[("PRCM", "torch-eager")][0] == "ok"
    table = report.tables(records, ("torch-eager", "torch-compile", "jax-jit"))[0]
    assert "unavailable" in table.rows[0]


def _run_cli(tmp_path, *args):
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "bench", "--out", str(out), *args], capture_output=True, text=True)
    return done, out


def test_quick_run_writes_results_report_and_plots(tmp_path):
    done, out = _run_cli(tmp_path, "--quick", "--suites", "params,latency,batch,fusion", "--backends",
                         "torch-eager,jax-jit", "--repeat", "3", "--warmup", "1")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads((out / "results.json").read_text())
    assert {"meta", "records"} == set(results)
    assert results["meta"]["threads"]["torch"] >= 1 and results["meta"]["versions"]["jax"] == jax.__version__
    assert {r["suite"] for r in results["records"]} == {"params", "latency", "batch", "fusion"}
    for record in results["records"]:
        assert REQUIRED <= set(record), REQUIRED - set(record)
        assert record["backend"] in ("torch-eager", "jax-jit") and record["status"] == "ok"
    timed = [r for r in results["records"] if r["suite"] == "latency"]
    assert len(timed) == 12 and all(r["p10_ms"] <= r["median_ms"] <= r["p90_ms"] for r in timed)
    assert (out / "sweep_batch.png").stat().st_size > 0 and (out / "fusion.png").stat().st_size > 0
    text = (out / "report.md").read_text()
    assert "## Findings" in text and "torch-eager / jax-jit" in text and "### fusion" in text
    assert "latency: median ms at (1, 64, 64, 64)" in done.stdout


def test_unavailable_device_writes_a_valid_empty_result(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    done, out = _run_cli(tmp_path, "--device", "cuda", "--suites", "latency")
    assert done.returncode == 1 and "device cuda unavailable" in done.stdout
    results = json.loads((out / "results.json").read_text())
    assert results["records"] == [] and "torch.cuda.is_available() is False" in results["meta"]["device_unavailable"]


def test_interrupt_writes_what_finished(tmp_path, monkeypatch):
    real_run = Runner.run
    seen = []

    def interrupt_second(self, point):
        if seen:
            raise KeyboardInterrupt
        seen.append(point)
        return real_run(self, point)

    monkeypatch.setattr(Runner, "run", interrupt_second)
    out = tmp_path / "out"
    code = cli.main(["--quick", "--suites", "batch", "--backends", "torch-eager", "--repeat", "2", "--out", str(out)])
    results = json.loads((out / "results.json").read_text())
    assert code == 130 and results["meta"]["interrupted"] is True
    assert {r["batch"] for r in results["records"]} == {seen[0].batch}


@pytest.mark.parametrize(
    "args,message",
    [
        (["--suites", "latency,foo"], "unknown suite foo; choose from params, latency"),
        (["--backends", "tensorflow"], "unknown backend tensorflow; choose from torch-eager, torch-compile, jax-jit"),
        (["--repeat", "0"], "expected an integer >= 1, got 0"),
        (["--warmup", "x"], "expected an integer >= 0, got 'x'"),
        (["--threads", "4096"], "this process may use"),
        (["--device", "tpu"], "invalid choice: 'tpu'"),
    ],
)
def test_bad_arguments_exit_2_before_any_work(args, message, capsys):
    with pytest.raises(SystemExit) as info:
        cli.parse_args(args)
    assert info.value.code == 2 and message in capsys.readouterr().err


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
    fields = set(Record("x", None, "cpu").as_dict())
    assert REQUIRED <= fields
    assert all(not isinstance(v, (dict, list)) for v in Record("x", None, "cpu").as_dict().values())


def test_results_that_cannot_be_written_end_with_a_clear_message(tmp_path, monkeypatch, capsys):
    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(report, "write_results", full_disk)
    code = cli.main(["--quick", "--suites", "params", "--out", str(tmp_path / "out")])
    assert code == 1 and "could not write results to" in capsys.readouterr().out
