"""``python -m bench``: the seed's latency study on torch-eager, torch-compile, jax-jit and jax-eager.

Suites: params, latency, components, channels, resolution, num_basis, batch, train, backward,
fusion, roofline, dispatch, network; the timing suites at 1 thread and at all threads (``--threads``). Tables
and findings go to the terminal; ``--out DIR`` (default a new folder under ``bench-results/``)
gets ``results.json``, ``report.md`` and PNG plots. Ctrl-C stops the run and writes what finished.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.backends import BACKENDS
from bench.suites import SUITES, Settings
from bench.threads import ALLOCATOR, cpus, parse_threads, steady_malloc
from prcm.cli import INSTALL, at_least, comma_choices, unavailable

__all__ = ["main", "parse_args"]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line, validated before any work (bad values exit 2 with the expected values)."""
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Rerun the seed notebook's PRCM latency study on torch-eager, torch-compile, jax-jit and jax-eager, "
        "with training steps, timm ResNets against their NNX twins, kernels per call (fusion) and achieved memory "
        "bandwidth (roofline); every ratio with a "
        "95%% paired-bootstrap confidence interval.",
    )
    parser.add_argument("--quick", action="store_true", help="every suite on fewer points, shorter timing (5 to 6 minutes on 2 CPU cores)")
    parser.add_argument("--suites", type=comma_choices("suite", SUITES), default=SUITES, help="comma-separated subset of " + ",".join(SUITES))
    parser.add_argument("--backends", type=comma_choices("backend", BACKENDS), default=BACKENDS, help="comma-separated subset of " + ",".join(BACKENDS))
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: the GPU when there is one")
    parser.add_argument("--repeat", type=at_least(1), default=None,
                        help="timed calls per lane, fixed (default: adaptive, until every ratio's CI is narrow enough or a time cap)")
    parser.add_argument("--warmup", type=at_least(0), default=None, help="untimed calls before timing (default 20; 3 with --quick)")
    parser.add_argument("--sessions", type=at_least(1), default=3,
                        help="processes per thread setting that time each latency, train and backward point (default 3; the "
                             "intervals then include what a process fixes for its life, as between runs)")  # fmt: skip
    available = len(cpus())
    parser.add_argument("--threads", type=parse_threads(available), default=parse_threads(available)("1,all"),
                        help=f"thread settings for both frameworks, comma-separated counts or 'all' (default 1,all; this process may use {available})")  # fmt: skip
    parser.add_argument("--jax-async-dispatch", action="store_true",
                        help="keep JAX's asynchronous CPU dispatch (default: synchronous, like eager torch, for per-call latency)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: bench-results/<timestamp>)")
    args = parser.parse_args(argv)
    if why := unavailable("matplotlib"):  # the plots are written last: refuse now, not after the run
        parser.error(f"the plots need matplotlib, which does not import here ({why['matplotlib']}); "
                     f"install the bench's dependencies (the README's install line: {INSTALL})")
    return args


def _prepare_out(out: Path | None) -> Path:
    """Create the output folder and prove it is writable, before any work."""
    out = out or Path("bench-results") / dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    if out.exists() and not out.is_dir():
        raise SystemExit(f"python -m bench: error: --out {out} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise SystemExit(f"python -m bench: error: cannot write results to {out}: {err.strerror or err}") from None
    return out


def _meta(args: argparse.Namespace, settings: Settings, device: Any, reason: str | None) -> dict[str, Any]:
    import flax
    import jax
    import jaxlib
    import numpy
    import torch

    from bench import stats
    from bench.backends import SAVED_BYTES
    from bench.workloads import MIN_TRAFFIC

    return {
        "started": dt.datetime.now().isoformat(timespec="seconds"),
        "argv": sys.argv[1:],
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpus_visible": len(cpus())},  # fmt: skip
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "jax": jax.__version__,
                     "jaxlib": jaxlib.__version__, "flax": flax.__version__, "numpy": numpy.__version__},  # fmt: skip
        "threads": {"settings": list(args.threads), "cpu_affinity": cpus(),
                    "how": "each setting in its own process: CPU affinity (sizes XLA's pool) and torch.set_num_threads; "
                           "settings take turns point by point"},  # fmt: skip
        "device_kind": device.kind if device else args.device,
        "device": device.name if device else None,
        "device_unavailable": reason,
        "precision": "TF32 off (torch matmul and cuDNN fp32_precision=ieee), JAX matmul precision highest",
        "allocator": ALLOCATOR if steady_malloc() else "the platform's default (not glibc)",
        "jax_cpu_async_dispatch": args.jax_async_dispatch,
        "settings": {"quick": args.quick, "sessions": {s: settings.sessions(s) for s in args.suites}, **settings.timing},
        "statistics": {"method": stats.METHOD, "resamples": stats.RESAMPLES, "confidence": stats.CONFIDENCE,
                       "noise": stats.NOISE, "spread_flag": stats.SPREAD,
                       "threads_comparisons": "unpaired: each side resampled on its own as above (sessions, then rounds), "
                                              "widened by the Student-t interval of a side timed in several sessions"},  # fmt: skip
        "min_traffic": MIN_TRAFFIC,
        "saved_bytes": SAVED_BYTES,
        "suites": list(args.suites),
        "backends": list(args.backends),
        "interrupted": False,
        "timeline": [],
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the study; 0 when it finished, 1 when nothing could run or a worker failed, 130 when interrupted."""
    args = parse_args(argv)
    out = _prepare_out(args.out)
    from bench.threads import configure

    configure(len(cpus()), args.jax_async_dispatch, pin=False)

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table as RichTable

    from bench import plots, report
    from bench.backends import resolve_device
    from bench.runner import Runner, merge_sessions, param_records, threads_comparisons
    from bench.suites import lanes, points, run_order
    from bench.threads import Options, Pools, WorkerError
    from parity.proof.precision import pinned_precision

    console = Console() if sys.stdout.isatty() else Console(width=160)
    device, reason = resolve_device(args.device)
    settings = Settings(args.quick, args.warmup, args.repeat, args.sessions)
    meta = _meta(args, settings, device, reason)
    records: list = []
    comparisons: list = []
    started = time.perf_counter()

    def save() -> None:
        meta["elapsed_s"] = round(time.perf_counter() - started, 1)
        records.sort(key=lambda r: SUITES.index(r.suite))  # report order, whatever the run order (stable)
        comparisons.sort(key=lambda c: SUITES.index(c.suite))
        meta["copy_gbps"] = report.copy_fractions(records)
        meta["other_load"] = report.load_summary(records)
        report.write_results(out / "results.json", meta, records, comparisons)
        found = report.findings(records, comparisons, meta["copy_gbps"])
        try:
            plots.write_plots(out, records, comparisons)
        finally:
            report.write_report(out / "report.md", meta, records, comparisons, args.backends, found)
        for table in report.tables(records, comparisons, args.backends):
            rich_table = RichTable(title=table.title, caption=table.note or None)
            for i, header in enumerate(table.headers):
                rich_table.add_column(header, justify="left" if i == 0 else "right")
            for row in table.rows:
                rich_table.add_row(*row)
            console.print(rich_table)
        console.print("[bold]Findings")
        for line in found:
            console.print(f"- {line}")
        console.print(f"results: {out / 'results.json'}, {out / 'report.md'}, plots in {out} ({meta['elapsed_s']} s)")

    def finish(code: int) -> int:
        try:
            save()
        except OSError as err:
            console.print(f"[red]could not write results to {out}: {err}")
            return 1
        return code

    if device is None:
        console.print(f"[red]device {args.device} unavailable: {reason}")
        return finish(1)

    settings_of = {suite: settings.thread_settings(suite, args.threads) for suite in args.suites}
    plan = [(suite, point) for suite in run_order(args.suites, settings) for point in points(suite, settings)]
    total = sum(len(lanes(p, args.backends)) * len(settings_of[s]) for s, p in plan) + ("params" in args.suites)
    dispatch = "asynchronous" if args.jax_async_dispatch else "synchronous"
    console.print(f"device: {device.name} ({device.kind}); thread settings: {', '.join(map(str, args.threads))} of {len(cpus())} "
                  f"CPUs; {meta['precision']}; JAX CPU dispatch {dispatch}; {total} measurements -> {out}")  # fmt: skip
    local = Runner(device, args.backends, settings, len(cpus()))
    pools = Pools(local, Options(len(cpus()), args.device, args.backends, settings, args.jax_async_dispatch))
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with pinned_precision(), Progress(*columns, console=console, transient=True, auto_refresh=False) as progress:
            task = progress.add_task("bench", total=total)
            if "params" in args.suites:
                records.extend(param_records(device, args.backends))
                progress.advance(task)
            for i, (suite, point) in enumerate(plan):
                if i and settings.sessions(suite) == 1 and settings.sessions(plan[i - 1][0]) > 1:
                    pools.close_sessions()  # their memory is for the next suite
                order = settings_of[suite] if i % 2 == 0 else settings_of[suite][::-1]  # settings take turns
                results = {}
                for threads in order:
                    progress.update(task, description=f"{suite} {point.shape} {threads} thread(s)", refresh=True)
                    begun = time.perf_counter()
                    sessions = range(settings.sessions(suite) if point.timed else 1)
                    runs = [pools.run(point, threads, k, compare=len(sessions) == 1) for k in sessions]
                    results[threads] = merge_sessions(runs, point, threads)
                    meta["timeline"].append([suite, list(point.shape), threads, round(time.perf_counter() - begun, 1)])
                    records.extend(results[threads].records)
                    comparisons.extend(results[threads].comparisons)
                    progress.advance(task, len(results[threads].records))
                    progress.refresh()  # no refresh thread: nothing else wakes up while a point is timed
                if len(results) > 1:
                    comparisons.extend(threads_comparisons(results, point))
                meta["elapsed_s"] = round(time.perf_counter() - started, 1)
                with contextlib.suppress(OSError):  # what finished so far; the last write reports a failure
                    report.write_results(out / "results.json", {**meta, "partial": True}, records, comparisons)
    except WorkerError as err:
        pools.close(kill=True)
        console.print(f"[red]{err}\nwriting what finished")
        return finish(1)
    except KeyboardInterrupt:
        meta["interrupted"] = True
        pools.close(kill=True)
        console.print("[yellow]interrupted: writing what finished")
        return finish(130)
    pools.close()
    return finish(0)


if __name__ == "__main__":
    sys.exit(main())
