"""``python -m bench``: the seed's latency study on torch-eager, torch-compile and jax-jit.

Suites: params, latency, components, channels, resolution, num_basis, batch, fusion,
roofline, dispatch. Tables go to the terminal; ``--out DIR`` (default a new folder under
``bench-results/``) gets ``results.json``, ``report.md`` and PNG plots. Ctrl-C stops the
run and writes what finished.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.backends import BACKENDS
from bench.suites import SUITES, Settings
from prcm.cli import at_least, comma_choices

__all__ = ["main", "parse_args"]


def _cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line, validated before any work (bad values exit 2 with the choices)."""
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Rerun the seed notebook's PRCM latency study on torch-eager, torch-compile and jax-jit, "
        "with kernels per call (fusion) and achieved memory bandwidth (roofline).",
    )
    parser.add_argument("--quick", action="store_true", help="every suite on fewer points and repeats (a few minutes on 2 CPU cores)")
    parser.add_argument("--suites", type=comma_choices("suite", SUITES), default=SUITES, help="comma-separated subset of " + ",".join(SUITES))
    parser.add_argument("--backends", type=comma_choices("backend", BACKENDS), default=BACKENDS, help="comma-separated subset of " + ",".join(BACKENDS))
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: the GPU when there is one")
    parser.add_argument("--repeat", type=at_least(1), default=None, help="timed calls per point (default: adaptive, up to 300; 30 with --quick)")
    parser.add_argument("--warmup", type=at_least(0), default=None, help="untimed calls before timing (default 20; 3 with --quick)")
    parser.add_argument("--threads", type=at_least(1), default=None,
                        help=f"CPU threads for both frameworks (default: all {len(_cpus())} this process may use)")
    parser.add_argument("--jax-async-dispatch", action="store_true",
                        help="keep JAX's asynchronous CPU dispatch (default: synchronous, like eager torch, for per-call latency)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: bench-results/<timestamp>)")
    args = parser.parse_args(argv)
    if args.threads is not None and args.threads > len(_cpus()):
        parser.error(f"argument --threads: this process may use {len(_cpus())} CPUs, got {args.threads}")
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


def _set_threads(threads: int | None) -> int:
    """Pin both frameworks to ``threads`` CPUs: the process affinity (XLA sizes its pool from it,
    so this must run before JAX starts its backend) and torch's intra-op threads."""
    import torch

    cpus = _cpus()
    threads = threads or len(cpus)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cpus[:threads])
    torch.set_num_threads(threads)
    return threads


def _meta(args: argparse.Namespace, settings: Settings, threads: int, device: Any, reason: str | None) -> dict[str, Any]:
    import flax
    import jax
    import jaxlib
    import numpy
    import torch

    return {
        "started": dt.datetime.now().isoformat(timespec="seconds"),
        "argv": sys.argv[1:],
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpus_visible": os.cpu_count(), "python": platform.python_version()},  # fmt: skip
        "versions": {"torch": torch.__version__, "jax": jax.__version__, "jaxlib": jaxlib.__version__,
                     "flax": flax.__version__, "numpy": numpy.__version__},  # fmt: skip
        "threads": {"requested": threads, "torch": torch.get_num_threads(), "cpu_affinity": _cpus()},
        "device_kind": device.kind if device else args.device,
        "device": device.name if device else None,
        "device_unavailable": reason,
        "jax_devices": [str(d) for d in jax.devices()] if device else None,
        "precision": "TF32 off (torch matmul and cuDNN fp32_precision=ieee), JAX matmul precision highest",
        "jax_cpu_async_dispatch": args.jax_async_dispatch,
        "settings": {"quick": args.quick, **settings.timing},
        "suites": list(args.suites),
        "backends": list(args.backends),
        "interrupted": False,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the study; 0 when it finished, 1 when nothing could run, 130 when interrupted."""
    args = parse_args(argv)
    out = _prepare_out(args.out)
    threads = _set_threads(args.threads)
    import jax

    # A synchronised per-call latency gains nothing from handing each CPU call to a worker
    # thread; on this kind of machine the hand-off alone costs tens of microseconds.
    jax.config.update("jax_cpu_enable_async_dispatch", args.jax_async_dispatch)

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table as RichTable

    from bench import report
    from bench.backends import resolve_device
    from bench.suites import Runner, lanes, param_records, points
    from parity.precision import pinned_precision

    console = Console() if sys.stdout.isatty() else Console(width=160)
    device, reason = resolve_device(args.device)
    settings = Settings(args.quick, args.warmup, args.repeat)
    meta = _meta(args, settings, threads, device, reason)
    records: list = []
    started = time.perf_counter()

    def save() -> None:
        meta["elapsed_s"] = round(time.perf_counter() - started, 1)
        copy_gbps = report.copy_fractions(records)
        meta["copy_gbps"] = copy_gbps
        report.write_results(out / "results.json", meta, records)
        found = report.findings(records, copy_gbps)
        try:
            report.write_plots(out, records)
        finally:
            report.write_report(out / "report.md", meta, records, args.backends, found)
        for table in report.tables(records, args.backends):
            rich_table = RichTable(title=table.title, caption=table.note or None)
            for i, header in enumerate(table.headers):
                rich_table.add_column(header, justify="left" if i == 0 else "right")
            for row in table.rows:
                rich_table.add_row(*row)
            console.print(rich_table)
        console.print("[bold]Findings")
        for line in found:
            console.print(f"- {line}")
        console.print(f"results: {out / 'results.json'}, {out / 'report.md'}, plots in {out}")

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

    plan = {suite: points(suite, settings) for suite in args.suites}
    total = sum(len(lanes(p, args.backends)) for ps in plan.values() for p in ps) + ("params" in plan)
    dispatch = "asynchronous" if args.jax_async_dispatch else "synchronous"
    console.print(f"device: {device.name} ({device.kind}); threads: {threads}; {meta['precision']}; "
                  f"JAX CPU dispatch {dispatch}; {total} measurements -> {out}")  # fmt: skip
    runner = Runner(device, args.backends, settings)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with pinned_precision(), Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task("bench", total=total)
            for suite, suite_points in plan.items():
                if suite == "params":
                    records.extend(param_records(device, args.backends))
                    progress.advance(task)
                for point in suite_points:
                    progress.update(task, description=f"{suite} {point.shape}")
                    point_records = runner.run(point)
                    records.extend(point_records)
                    progress.advance(task, len(point_records))
    except KeyboardInterrupt:
        meta["interrupted"] = True
        console.print("[yellow]interrupted: writing what finished")
        return finish(130)
    return finish(0)


if __name__ == "__main__":
    sys.exit(main())
