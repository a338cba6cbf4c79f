"""``python -m bench``: the seed's latency study on torch-eager, torch-compile, jax-jit and jax-eager.

Five commands:

* ``python -m bench [run] [flags]``: run the study (``run`` may be left out). Suites: see
  ``--suites``; the timing suites at 1 thread and at all threads (``--threads``), each point in
  several processes (``--sessions``). Tables and answers go to the terminal; ``--out DIR``
  (default a new folder under ``bench-results/``) gets ``results.json``, ``report.md`` and PNG
  figures. Ctrl-C stops the run and writes what finished.
* ``python -m bench report RESULTS [--out DIR]``: ``report.md`` and every figure again, from a
  saved ``results.json`` alone (imports neither torch nor jax).
* ``python -m bench compare OLD NEW [--out DIR]``: two saved runs side by side, NEW / OLD per
  shared lane with its interval, a summary line, ``compare.md`` and ``compare.png``.
* ``python -m bench readme RESULTS README [--check]``: the README's headline table (between
  ``<!-- bench:headline:start -->`` and ``<!-- bench:headline:end -->``) rendered from a saved run;
  ``--check`` only says whether it is up to date.
* ``python -m bench render RESULTS PAGE ... [--check]``: each ``<!-- bench:network:start NETWORK, ... -->``
  section of the pages gets what a block costs inside those networks, from a saved run.

RESULTS, OLD and NEW are a ``results.json`` or the folder holding one.
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

from bench import schema
from bench.plan import BACKENDS, Settings
from bench.suites import SUITES
from bench.threads import ALLOCATOR, cpus, parse_threads, steady_malloc
from prcm import pages
from prcm.cli import INSTALL, at_least, comma_choices, unavailable

__all__ = ["main", "parse_args", "COMMANDS"]

#: The subcommands; anything else is the study's own flags.
COMMANDS = ("run", "report", "compare", "readme", "render")
PROG = "python -m bench"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The study's command line, validated before any work (bad values exit 2 with the expected values)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Rerun the seed notebook's PRCM latency study on torch-eager, torch-compile, jax-jit and jax-eager, "
        "with training steps, timm networks against their NNX twins, kernels per call (fusion) and achieved memory "
        "bandwidth (roofline); every ratio with a 95% confidence interval over several processes. "
        f"Also: '{PROG} report RESULTS' renders a saved run again, '{PROG} compare OLD NEW' sets two runs side by side, "
        f"'{PROG} readme RESULTS README' writes the README's headline table from a saved run, '{PROG} render RESULTS "
        "PAGE...' the block-cost tables of the docs' pages.",
    )
    parser.add_argument("--quick", action="store_true", help="every suite on fewer points, shorter timing (about twenty minutes on 2 CPU cores; the full run takes hours)")
    parser.add_argument("--suites", type=comma_choices("suite", tuple(SUITES)), default=tuple(SUITES),
                        help="comma-separated subset of " + ",".join(SUITES))  # fmt: skip
    parser.add_argument("--backends", type=comma_choices("backend", BACKENDS), default=BACKENDS, help="comma-separated subset of " + ",".join(BACKENDS))
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: the GPU when there is one")
    parser.add_argument("--repeat", type=at_least(1), default=None,
                        help="timed calls per lane and session, fixed (default: adaptive, until every ratio's CI is narrow enough or a time cap)")
    parser.add_argument("--warmup", type=at_least(0), default=None, help="untimed calls before timing (default 20; 3 with --quick)")
    parser.add_argument("--sessions", type=at_least(2), default=None,
                        help="processes per thread setting that time each point of a timing suite (default 10; 5 with --quick); "
                             "every interval is taken over them, so it holds what a process fixes for its life, as between runs")  # fmt: skip
    available = len(cpus())
    parser.add_argument("--threads", type=parse_threads(available), default=parse_threads(available)("1,all"),
                        help=f"thread settings for both frameworks, comma-separated counts or 'all' (default 1,all; this process may use {available})")  # fmt: skip
    parser.add_argument("--jax-async-dispatch", action="store_true",
                        help="keep JAX's asynchronous CPU dispatch (default: synchronous, like eager torch, for per-call latency)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: bench-results/<timestamp>)")
    args = parser.parse_args(argv)
    args.suites = tuple(s for s in SUITES if s in args.suites)  # report order
    _need_matplotlib(parser)
    return args


def _need_matplotlib(parser: argparse.ArgumentParser) -> None:
    """The figures are written last: refuse now, not after the work."""
    if why := unavailable("matplotlib"):
        parser.error(f"the plots need matplotlib, which does not import here ({why['matplotlib']}); "
                     f"install the bench's dependencies (the README's install line: {INSTALL})")  # fmt: skip


def _prepare_out(out: Path | None, default: str) -> Path:
    """Create the output folder and prove it is writable, before any work."""
    out = out or Path("bench-results") / (default + dt.datetime.now().strftime("%Y%m%d-%H%M%S"))
    if out.exists() and not out.is_dir():
        raise SystemExit(f"{PROG}: error: --out {out} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise SystemExit(f"{PROG}: error: cannot write results to {out}: {err.strerror or err}") from None
    return out


def _meta(args: argparse.Namespace, settings: Settings, device: Any, reason: str | None) -> dict[str, Any]:
    import flax
    import jax
    import jaxlib
    import numpy
    import torch

    from bench import stats
    from bench.backends import SAVED_BYTES
    from bench.plan import MIN_TRAFFIC
    from prcm.machine import describe

    about = describe()
    about["machine"]["cpus_visible"] = len(cpus())
    return {
        "started": dt.datetime.now().isoformat(timespec="seconds"),
        "argv": sys.argv[1:],
        **about,
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "jax": jax.__version__,
                     "jaxlib": jaxlib.__version__, "flax": flax.__version__, "numpy": numpy.__version__},  # fmt: skip
        "threads": {"settings": list(args.threads), "cpu_affinity": cpus(),
                    "how": "each setting in its own processes: CPU affinity (sizes XLA's pool) and torch.set_num_threads; "
                           "settings take turns point by point; sessions run one after another, each in new processes"},  # fmt: skip
        "device_kind": device.kind if device else args.device,
        "device": device.name if device else None,
        "device_unavailable": reason,
        "precision": "TF32 off (torch matmul and cuDNN fp32_precision=ieee), JAX matmul precision highest",
        "allocator": ALLOCATOR if steady_malloc() else "the platform's default (not glibc)",
        "jax_cpu_async_dispatch": args.jax_async_dispatch,
        "compile_caches": "torch.compile's (Inductor's FX graph and AOTAutograd caches, on by default) and JAX's "
                          "persistent compilation cache (a folder for the run): later sessions load what the first compiled; "
                          "compile_s is the slowest session's",  # fmt: skip
        "settings": {"quick": args.quick, "sessions": settings.sessions_of(True), **settings.timing},
        "statistics": {"method": stats.METHOD, "resamples": stats.RESAMPLES, "confidence": stats.CONFIDENCE,
                       "noise": stats.NOISE, "spread_flag": stats.SPREAD,
                       "threads_comparisons": "unpaired: each side resampled on its own over its sessions and rounds"},  # fmt: skip
        "min_traffic": MIN_TRAFFIC,
        "saved_bytes": SAVED_BYTES,
        "suites": list(args.suites),
        "backends": list(args.backends),
        "interrupted": False,
    }


def run(argv: Sequence[str] | None = None) -> int:
    """Run the study; 0 when it finished, 1 when nothing could run or a worker failed, 130 when interrupted."""
    args = parse_args(argv)
    out = _prepare_out(args.out, "")
    from bench.study import JaxCache

    with JaxCache() as jax_cache:
        return _run(args, out, jax_cache)


def _run(args: argparse.Namespace, out: Path, jax_cache: str) -> int:
    from bench.threads import configure

    configure(len(cpus()), args.jax_async_dispatch, pin=False, jax_cache=jax_cache)

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from bench import report
    from bench.backends import resolve_device
    from bench.study import Study, make_pools
    from bench.workers import Options, WorkerError
    from parity.proof.precision import pinned_precision

    console = Console() if sys.stdout.isatty() else Console(width=160)
    device, reason = resolve_device(args.device)
    settings = Settings(args.quick, args.warmup, args.repeat, args.sessions)
    meta = _meta(args, settings, device, reason)
    study = Study([SUITES[s] for s in args.suites], settings, args.threads, args.backends)
    started = time.perf_counter()

    def save(partial: bool) -> schema.Results:
        meta["elapsed_s"] = round(time.perf_counter() - started, 1)
        results = study.results_of({**meta, "partial": partial} if partial else meta, compare=not partial)
        schema.save(out / "results.json", results)
        return results

    def finish(code: int) -> int:
        try:
            results = save(False)
            analysis, _, path = report.render(results, out)
        except OSError as err:
            console.print(f"[red]could not write results to {out}: {err}")
            return 1
        report.print_terminal(analysis, console)
        console.print(f"results: {out / 'results.json'}, {path}, figures in {out} ({meta['elapsed_s']} s)")
        return code

    if device is None:
        console.print(f"[red]device {args.device} unavailable: {reason}")
        return finish(1)

    dispatch = "asynchronous" if args.jax_async_dispatch else "synchronous"
    console.print(f"device: {device.name} ({device.kind}); thread settings: {', '.join(map(str, args.threads))} of {len(cpus())} "
                  f"CPUs; {study.sessions} sessions; {meta['precision']}; JAX CPU dispatch {dispatch}; {study.total()} measurements -> {out}")  # fmt: skip
    options = Options(len(cpus()), args.device, args.backends, settings, args.jax_async_dispatch, jax_cache)
    pools = make_pools(device, options)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with pinned_precision(), Progress(*columns, console=console, transient=True, auto_refresh=False) as progress:
            task = progress.add_task("bench", total=study.total())

            def advance(description: str, done: int) -> None:
                if description:
                    progress.update(task, description=description)
                progress.advance(task, done)
                progress.refresh()  # no refresh thread: nothing else wakes up while a point is timed

            study.run(pools, device, advance, _partial(save))
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


def _partial(save: Any) -> Any:
    """``save`` for what finished so far; a failure is left to the last write, which reports it."""

    def partial(flag: bool) -> None:
        try:
            save(flag)
        except OSError:
            pass

    return partial


def _load(parser: argparse.ArgumentParser, *paths: Path) -> list[schema.Results]:
    try:
        return [schema.load(schema.results_file(p)) for p in paths]
    except schema.SchemaError as err:
        parser.error(str(err))


def report_command(argv: Sequence[str]) -> int:
    """``python -m bench report RESULTS [--out DIR]``."""
    parser = argparse.ArgumentParser(prog=f"{PROG} report", description="Render report.md and every figure again from a "
                                     "saved results.json alone (neither torch nor jax is imported).")  # fmt: skip
    parser.add_argument("results", type=Path, help="a results.json written by python -m bench, or its folder")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder for report.md, results.md (the docs' results page) and the figures "
                             "(default: the results file's folder)")  # fmt: skip
    parser.add_argument("--page", type=Path, default=None,
                        help="also write the results page here, its figures linked into --out (e.g. docs/benchmark/results.md)")
    args = parser.parse_args(argv)
    _need_matplotlib(parser)
    (results,) = _load(parser, args.results)
    from bench import report

    out = _prepare_out(args.out or schema.results_file(args.results).parent, "")
    analysis, figures, path = report.render(results, out)
    if args.page is not None:
        prefix = Path(os.path.relpath(out.resolve(), args.page.resolve().parent)).as_posix()
        args.page.parent.mkdir(parents=True, exist_ok=True)
        args.page.write_text(report.results_page(analysis, figures, prefix))
        print(f"results page: {args.page}")
    for answer in analysis.answers:
        print(f"- {answer}")
    print(f"report: {path}, {out / 'results.md'}; {sum(map(len, figures.values()))} figures in {out}")
    return 0


def compare_command(argv: Sequence[str]) -> int:
    """``python -m bench compare OLD NEW [--out DIR]``."""
    parser = argparse.ArgumentParser(prog=f"{PROG} compare", description="Two saved runs side by side: NEW / OLD per lane both "
                                     "timed, with a 95% interval over both runs' sessions and rounds, and a summary line.")  # fmt: skip
    parser.add_argument("old", type=Path, help="the old run's results.json, or its folder")
    parser.add_argument("new", type=Path, help="the new run's results.json, or its folder")
    parser.add_argument("--out", type=Path, default=None, help="folder for compare.md and compare.png (default: bench-results/compare-<timestamp>)")
    args = parser.parse_args(argv)
    _need_matplotlib(parser)
    old, new = _load(parser, args.old, args.new)
    from rich.console import Console

    from bench import compare

    out = _prepare_out(args.out, "compare-")
    compared = compare.compare(old, new)
    console = Console() if sys.stdout.isatty() else Console(width=160)
    compare.print_terminal(compared, console)
    written = compare.write(compared, out)
    console.print(f"written: {', '.join(str(p) for p in written)}")
    return 0


def readme_command(argv: Sequence[str]) -> int:
    """``python -m bench readme RESULTS README [--check]``: 0 when written or up to date, 1 when ``--check`` finds it stale."""
    from bench import report

    start, end = report.README_MARKERS
    parser = argparse.ArgumentParser(prog=f"{PROG} readme", description=f"Write the headline table rendered from a saved run "
                                     f"into a README, between its lines {start} and {end} (nothing else changes).")  # fmt: skip
    parser.add_argument("results", type=Path, help="a results.json written by python -m bench, or its folder")
    parser.add_argument("readme", type=Path, help="the Markdown file to update (e.g. README.md)")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 when the section differs from the rendering")
    args = parser.parse_args(argv)
    (results,) = _load(parser, args.results)
    try:
        text = args.readme.read_text()
        updated = report.with_readme_section(text, results)
    except OSError as err:
        parser.error(f"cannot read {args.readme}: {err.strerror or err}")
    except ValueError as err:
        parser.error(f"{args.readme}: {err}")
    if args.check:
        fresh = updated == text
        print(f"{args.readme}: headline {'up to date' if fresh else 'differs from'} {schema.results_file(args.results)}")
        return 0 if fresh else 1
    args.readme.write_text(updated)
    print(f"{args.readme}: headline written from {schema.results_file(args.results)}")
    return 0


def render_command(argv: Sequence[str]) -> int:
    """``python -m bench render RESULTS PAGE ... [--check]`` (:func:`prcm.pages.render_command`): each page's
    ``<!-- bench:network:start NETWORK, ... -->`` section gets what a block costs inside those networks."""
    from bench import report

    return pages.render_command(f"{PROG} render", report.NETWORK_TAG, report.render_network_sections, argv,
                                what="a results.json written by python -m bench, or its folder")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch to ``run`` (the default), ``report``, ``compare``, ``readme`` or ``render``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and argv[0] in COMMANDS else "run"
    rest = argv[1:] if argv and argv[0] in COMMANDS else argv
    return {"run": run, "report": report_command, "compare": compare_command, "readme": readme_command,
            "render": render_command}[command](rest)  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
