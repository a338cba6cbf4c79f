"""``python -m parity``: prove the PyTorch and Flax modules agree.

Runs the sweep of :mod:`parity.check` (module x direction x mode x dtype x shape), prints
one row per module, direction, mode and dtype with the worst error over the shapes, and
exits 1 if any case fails.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

import prcm
from prcm.cli import comma_choices
from parity.check import DEFAULT_DTYPES, DIRECTIONS, DTYPES, GRAD_MODES, MODES, SHAPES, STAGES, Result, cases, run_case

__all__ = ["main", "parse_args"]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line, validated before any work."""
    parser = argparse.ArgumentParser(
        prog="python -m parity",
        description="Check that the PyTorch and Flax (NNX, linen) PRCM modules compute the same numbers: "
        "outputs in eval and train mode (shared dropout mask) and gradients, after converting weights "
        "in every direction, against a float64 NumPy reference.",
    )
    parser.add_argument("--quick", action="store_true",
                        help=f"one shape per row (rotating through all {len(SHAPES)}) instead of every shape")  # fmt: skip
    parser.add_argument("--modules", type=comma_choices("module", prcm.MODULES), default=prcm.MODULES,
                        help="comma-separated subset of " + ",".join(prcm.MODULES))  # fmt: skip
    parser.add_argument("--directions", type=comma_choices("direction", DIRECTIONS), default=DIRECTIONS,
                        help="comma-separated subset of " + ",".join(DIRECTIONS))  # fmt: skip
    parser.add_argument("--modes", type=comma_choices("mode", MODES), default=MODES,
                        help="comma-separated subset of " + ",".join(MODES))  # fmt: skip
    parser.add_argument("--dtypes", type=comma_choices("dtype", tuple(DTYPES)), default=DEFAULT_DTYPES,
                        help="comma-separated subset of " + ",".join(DTYPES) + " (float64 turns on JAX's x64 mode; "
                        "default " + ",".join(DEFAULT_DTYPES) + ")")  # fmt: skip
    return parser.parse_args(argv)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sweep, print the table; 0 when every case passes, else 1."""
    args = parse_args(argv)
    if "float64" in args.dtypes:
        import jax

        jax.config.update("jax_enable_x64", True)
    todo = list(cases(args.modules, args.directions, args.modes, args.dtypes, per_row=1 if args.quick else None))
    console = Console() if sys.stdout.isatty() else Console(width=120)
    worst: dict[tuple[str, str, str, str], list[Result]] = {}
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("parity", total=len(todo))
        for case in todo:
            result = run_case(case)
            worst.setdefault((case.module, case.direction, case.mode, case.dtype), []).append(result)
            progress.advance(task)

    table = Table(title=f"parity: {len(todo)} cases (worst error over each row's shapes, in eps units)")
    for column in ("module", "direction", "mode", "dtype"):
        table.add_column(column, no_wrap=True)
    for column in ("x max|ref|", "limit", "x bound", "limit"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("pass", no_wrap=True)
    failed = 0
    for key, results in worst.items():
        top = max(results, key=lambda r: r.bound_error)
        ok = all(r.ok for r in results)
        failed += sum(not r.ok for r in results)
        table.add_row(
            *key, _fmt(max(r.error for r in results)), _fmt(top.limit), _fmt(top.bound_error),
            _fmt(top.bound_limit), "[green]pass" if ok else "[red]FAIL",
        )  # fmt: skip
    console.print(table)
    by_dtype = {}
    for results in worst.values():
        for r in results:
            fwd = r.case.mode not in GRAD_MODES
            row = by_dtype.setdefault(r.case.dtype, [0.0, 0.0])
            row[0 if fwd else 1] = max(row[0 if fwd else 1], r.error)
    for dtype, (fwd, grad) in by_dtype.items():
        console.print(f"{dtype}: worst forward {fwd:.2f} eps, worst gradient {grad:.2f} eps (x max|ref|)")
    console.print(
        f"limits: float32 8 / 64 eps x max|ref| (forward / gradient); every case: eps x max(error bound) within "
        f"{STAGES[0]} / {STAGES[1]} + log2 of the reduction lengths for dtypes that accumulate in themselves"
    )
    if failed:
        console.print(f"[red]{failed} of {len(todo)} cases failed")
        return 1
    console.print(f"[green]all {len(todo)} cases passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
