"""``python -m parity``: prove the PyTorch and Flax modules agree.

Two parts (``--parts``): ``modules`` runs the sweep of :mod:`parity.proof.check` (module x direction
x mode x dtype x shape) and prints one row per module, direction, mode and dtype with the
worst error over the shapes; ``networks`` runs :mod:`parity.proof.networks` (timm ResNets, ResNet-D,
EfficientNets, MobileNetV3s and torchvision ResNets x attention block against their NNX twins;
``--quick``: the smallest of each family) and prints one row per network, attention and check.
Exits 1 if any case fails. ``--out FILE`` saves every case's figures (:mod:`parity.proof.results`);
``python -m parity render FILE PAGE ...`` writes the docs' parity tables from such a file.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

import prcm
from prcm import pages
from prcm.cli import INSTALL, comma_choices, unavailable
from parity.proof import results as saved
from parity.proof.check import DEFAULT_DTYPES, DIRECTIONS, DTYPES, GRAD_MODES, MODES, SHAPES, STAGES, Result, cases, run_case
from parity.proof.networks import (ATTENTIONS, CHECKS, FLOOR, NETWORKS, OP_RATIO, QUICK_NETWORKS, TYPICAL_LIMIT, WORST_LIMIT,
                                   NetworkResult, network_cases, run_network_case)  # fmt: skip

PARTS: tuple[str, ...] = ("modules", "networks")
#: Inputs (batch, image) of the networks part; ``--quick`` takes the first.
NETWORK_INPUTS: tuple[tuple[int, int], ...] = ((2, 64), (4, 64))

__all__ = ["main", "parse_args", "render_command", "PARTS", "NETWORK_INPUTS"]

_PART_OPTIONS = {"modules": ("modules", "directions", "modes", "dtypes"), "networks": ("networks", "attentions")}
_DEFAULTS = {"modules": prcm.MODULES, "directions": DIRECTIONS, "modes": MODES, "dtypes": DEFAULT_DTYPES,
             "networks": NETWORKS, "attentions": ATTENTIONS}  # fmt: skip


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line, validated before any work."""
    parser = argparse.ArgumentParser(
        prog="python -m parity",
        description="Check that the PyTorch and Flax (NNX, linen) PRCM modules compute the same numbers: "
        "outputs in eval and train mode (shared dropout mask) and gradients, after converting weights "
        "in every direction, against a float64 NumPy reference; and timm / torchvision networks (ResNet, ResNet-D, "
        "EfficientNet, MobileNetV3) with each block against their NNX twins (prcm_jax.models), against a float64 copy "
        "of the torch model. 'python -m parity render RESULTS PAGE ...' writes the docs' network-parity tables from a "
        "file saved with --out.",
    )
    parser.add_argument("--quick", action="store_true",
                        help=f"modules: one shape per row (rotating through all {len(SHAPES)}) instead of every shape; "
                        f"networks: one input {NETWORK_INPUTS[0]} (batch, image) instead of {len(NETWORK_INPUTS)}, the networks "
                        f"{','.join(QUICK_NETWORKS)} unless --networks says, and the train-mode checks for none, se and "
                        "AffinePRCM only")  # fmt: skip
    parser.add_argument("--parts", type=comma_choices("part", PARTS), default=None,
                        help="comma-separated subset of " + ",".join(PARTS) + " (default: both; the options of one part "
                        "alone, e.g. --modules or --networks, select that part)")  # fmt: skip
    parser.add_argument("--networks", type=comma_choices("network", NETWORKS), default=None,
                        help="networks part: comma-separated subset of " + ",".join(NETWORKS) + " (torchvision_* take "
                        "the prcm_torch blocks in each block's last norm, not timm's 'se')")  # fmt: skip
    parser.add_argument("--attentions", type=comma_choices("attention", ATTENTIONS), default=None,
                        help="networks part: comma-separated subset of " + ",".join(ATTENTIONS)
                        + " ('se' is timm's SEModule, the others prcm_torch classes)")  # fmt: skip
    parser.add_argument("--modules", type=comma_choices("module", prcm.MODULES), default=None,
                        help="comma-separated subset of " + ",".join(prcm.MODULES))  # fmt: skip
    parser.add_argument("--directions", type=comma_choices("direction", DIRECTIONS), default=None,
                        help="comma-separated subset of " + ",".join(DIRECTIONS))  # fmt: skip
    parser.add_argument("--modes", type=comma_choices("mode", MODES), default=None,
                        help="comma-separated subset of " + ",".join(MODES))  # fmt: skip
    parser.add_argument("--dtypes", type=comma_choices("dtype", tuple(DTYPES)), default=None,
                        help="comma-separated subset of " + ",".join(DTYPES) + " (float64 turns on JAX's x64 mode; "
                        "default " + ",".join(DEFAULT_DTYPES) + ")")  # fmt: skip
    parser.add_argument("--out", type=Path, default=None,
                        help="also save every case's figures and the run's provenance to this JSON file (for "
                        "'python -m parity render')")  # fmt: skip
    args = parser.parse_args(argv)
    if args.out is not None and (args.out.is_dir() or not args.out.parent.is_dir() and args.out.parent.exists()):
        parser.error(f"--out: expected a file path (its folder is made), got {'a folder' if args.out.is_dir() else 'a path under a file'}: {args.out}")
    given = {part: any(getattr(args, name) is not None for name in names) for part, names in _PART_OPTIONS.items()}
    if args.parts is None:
        args.parts = tuple(p for p in PARTS if given[p]) if any(given.values()) else PARTS
    for name, default in _DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, QUICK_NETWORKS if name == "networks" and args.quick else default)
    if "networks" in args.parts and (why := unavailable("timm")):
        parser.error(f"the networks part needs timm, which does not import here ({why['timm']}); install it "
                     f"with the torchvision built for your torch (the README's pair: {INSTALL}), or leave the part out with --parts modules")
    return args


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _pair(torch_error: float, jax_error: float) -> str:
    return " / ".join(f"{e:.1f}" if e < 100 else f"{e:.0f}" for e in (torch_error, jax_error))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the parts asked for, print their tables; 0 when every case passes, else 1
    (``render`` as the first argument: :func:`render_command`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["render"]:
        return render_command(argv[1:])
    args = parse_args(argv)
    console = Console() if sys.stdout.isatty() else Console(width=120)
    modules = _modules(args, console) if "modules" in args.parts else []
    networks = _networks(args, console) if "networks" in args.parts else []
    if args.out:
        limits = {"typical": TYPICAL_LIMIT, "worst": WORST_LIMIT, "op_ratio": OP_RATIO, "floor": FLOOR}
        console.print(f"saved: {saved.save(args.out, modules=modules, networks=networks, limits=limits, argv=argv)}")
    return 1 if any(not r.ok for r in [*modules, *networks]) else 0


def render_command(argv: Sequence[str]) -> int:
    """``python -m parity render RESULTS PAGE ... [--check]`` (:func:`prcm.pages.render_command`): each page's
    ``<!-- parity:networks:start NETWORKS -->`` section gets the table of its networks from a saved run."""
    return pages.render_command("python -m parity render", saved.TAG, saved.render_page, argv,
                                what="a results file of python -m parity --out")  # fmt: skip


def _modules(args: argparse.Namespace, console: Console) -> list[Result]:
    """The module sweep; returns every case's result."""
    if "float64" in args.dtypes:
        import jax

        jax.config.update("jax_enable_x64", True)
    todo = list(cases(args.modules, args.directions, args.modes, args.dtypes, per_row=1 if args.quick else None))
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
    else:
        console.print(f"[green]all {len(todo)} cases passed")
    return [r for rs in worst.values() for r in rs]


def _networks(args: argparse.Namespace, console: Console) -> list[NetworkResult]:
    """timm and torchvision networks against their NNX twins; returns every case's result."""
    inputs = NETWORK_INPUTS[:1] if args.quick else NETWORK_INPUTS
    todo = [case for batch, image in inputs
            for case in network_cases(args.networks, args.attentions, quick=args.quick, batch=batch, image=image)]  # fmt: skip
    results: list[NetworkResult] = []
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("networks", total=len(todo))
        for case in todo:
            results.append(run_network_case(case))
            progress.advance(task)
    table = Table(title=f"parity, networks: {len(todo)} cases; worst error of each check, torch float32 / NNX float32 against "
                        "torch float64, in float32 eps x max|ref| of each tensor")  # fmt: skip
    for column in ("network", "attention", "input"):
        table.add_column(column, no_wrap=True)
    for column in (*CHECKS, "jax/torch typical", "worst", "kinks", "round trip"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("pass", no_wrap=True)
    for r in results:
        cells = [_pair(*r.checks[c].worst) if c in r.checks else "-" for c in CHECKS]
        typical = max(r.checks.items(), key=lambda kv: kv[1].typical)
        worst = max(r.checks.items(), key=lambda kv: kv[1].ratio[0])
        check, failing = max(r.checks.items(), key=lambda kv: kv[1].margin)
        where = failing.ratio[1] if failing.ratio[0] > WORST_LIMIT else f"{check} (typical)"
        table.add_row(
            r.case.network, r.case.attention, f"{r.case.batch}x{r.case.image}", *cells,
            f"{typical[1].typical:.2f} {typical[0]}", f"{worst[1].ratio[0]:.2f} {worst[0]}",
            f"{r.crossed[0]}/{r.crossed[1]}" if r.case.train else "-",
            "exact" if all(r.exact.values()) else "[red]" + ", ".join(k for k, ok in r.exact.items() if not ok),
            "[green]pass" if r.ok else f"[red]FAIL at {where}",
        )  # fmt: skip
    wide = console if console.is_terminal else Console(width=160)
    wide.print(table)
    console.print(f"each cell: torch / jax. jax/torch: JAX's normwise error over torch's on each tensor (each taken as >= "
                  f"{FLOOR:g} eps); typical: the largest geometric mean over a check's tensors, within {TYPICAL_LIMIT:g}; "
                  f"worst: the largest on one tensor, within {WORST_LIMIT:g} (both from {OP_RATIO:g}, JAX's error over torch's "
                  "on one layer; see parity.proof.networks). kinks: ReLU inputs the float32 train step put across the kink "
                  "from float64, torch/jax (each run is judged against float64 taking its sides). round trip: torch -> NNX "
                  "-> torch and NNX -> torch -> NNX bit for bit.")  # fmt: skip
    failed = sum(not r.ok for r in results)
    if failed:
        console.print(f"[red]{failed} of {len(todo)} network cases failed")
    else:
        console.print(f"[green]all {len(todo)} network cases passed")
    return results


if __name__ == "__main__":
    sys.exit(main())
