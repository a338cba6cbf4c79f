"""Tables, findings and files from the benchmark's records and comparisons.

Every number in the report is computed from the run's records and comparisons; nothing is
canned. A ratio is printed as ``1.73x [1.65, 1.81]`` (95% interval, :mod:`bench.stats`); one
whose interval reaches within the noise threshold of 1 is marked ``n.s.`` and no finding
names a winner there.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from bench import stats
from bench.runner import SUM_OF_PARTS
from bench.suites import Comparison, Record
from bench.workloads import COMPONENTS, LOOP, MIN_TRAFFIC

__all__ = ["Table", "tables", "findings", "write_results", "write_report", "copy_fractions", "load_summary", "fmt_ratio", "SWEEPS"]

SWEEPS = {"channels": "channels", "resolution": "resolution", "num_basis": "num_basis", "batch": "batch"}
#: Unstable lanes listed in the flags table (all are in results.json).
FLAGS_SHOWN = 25
T = TypeVar("T", Record, Comparison)
#: What the ``faults/call`` columns count.
FAULTS = ("minor page faults of the process per timed call, median (a chain of blocks counts once; memory the OS maps in on first touch, 4 KiB a fault "
          "without huge pages: an output or temporary above glibc's 32 MiB mmap threshold is mapped afresh every call)")
#: The point the issue's training targets are stated at.
TRAIN_POINT = (8, 64, 56)


@dataclass
class Table:
    """A renderer-agnostic table."""

    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    note: str = ""


def fmt_ratio(c: Comparison | None) -> str:
    """``1.73x [1.65, 1.81]``, with `` n.s.`` when the interval holds 1 (within the noise).

    >>> c = Comparison("latency", "backend", "PRCM", None, "torch-eager", "jax-jit", 1, 64, 64, 8, 1, 1.01, [0.97, 1.04], False)
    >>> fmt_ratio(c)
    '1.01x [0.97, 1.04] n.s.'
    """
    if c is None:
        return ""
    return str(stats.Ratio(c.ratio, *c.ci95)) + ("" if c.significant else " n.s.")


def _ms(r: Record | None) -> str:
    if r is None:
        return ""
    if r.status != "ok":
        return r.status
    if r.median_ms is None:
        return ""
    return f"{r.median_ms:.4f}" + ("!" if r.flag else "")


def _ok(records: Iterable[Record]) -> list[Record]:
    return [r for r in records if r.status == "ok" and r.median_ms is not None]


def _point(x: Record | Comparison) -> tuple:
    return (x.batch, x.channels, x.resolution, x.num_basis)


def _shape(x: Record | Comparison) -> str:
    return f"({x.batch}, {x.channels}, {x.resolution}, {x.resolution})"


def _threads(items: Iterable[Record | Comparison]) -> list[int]:
    return sorted({x.threads for x in items if x.threads is not None})


def _find(items: Iterable[T], **fields: Any) -> T | None:
    return next((c for c in items if all(getattr(c, k) == v for k, v in fields.items())), None)


def copy_fractions(records: list[Record]) -> dict[str, float]:
    """Set ``copy_fraction`` on every record with a bandwidth: its GB/s over the best copy
    (read + write) measured in this run at the same size and thread setting, so cache-sized
    and memory-sized tensors each meet their own roofline. Returns the copy GB/s by size."""
    def key(r: Record) -> tuple:
        return (r.batch, r.channels, r.resolution, r.threads)

    best: dict[tuple, float] = {}
    for r in records:
        if r.op == "copy" and r.gbps:
            best[key(r)] = max(best.get(key(r), 0.0), r.gbps)
    for r in records:
        if r.gbps and key(r) in best:
            r.copy_fraction = r.gbps / best[key(r)]
    return {f"{(b, c, res, res)}, {t} thread{'s' if t != 1 else ''}": gbps for (b, c, res, t), gbps in best.items()}


def load_summary(records: list[Record]) -> dict[str, float] | None:
    """Share of the machine's CPU time other processes used while points were timed, per
    thread setting: mean over the points and the highest point (``None`` off Linux)."""
    loads: dict[int, dict[tuple, float]] = {}
    for r in records:
        if r.load is not None:
            loads.setdefault(r.threads, {})[(r.suite, _point(r), r.workload, r.network)] = r.load
    return {f"{t} thread{'s' if t != 1 else ''}": {"mean": round(sum(v.values()) / len(v), 3), "max": round(max(v.values()), 3)}
            for t, v in sorted(loads.items())} or None


# -- tables -----------------------------------------------------------------------------------


def tables(records: list[Record], comparisons: list[Comparison], backends: Sequence[str]) -> list[Table]:
    """One or more tables per suite present in ``records``, then the thread settings and flags."""
    out = []
    for suite in dict.fromkeys(r.suite for r in records):
        rows = [r for r in records if r.suite == suite]
        comps = [c for c in comparisons if c.suite == suite]
        if suite in SWEEPS:
            out.extend(_sweep(rows, comps, backends, SWEEPS[suite]))
        elif suite in _BUILDERS:
            out.extend(_BUILDERS[suite](rows, comps, backends))
    out.extend(_threads_table(records, comparisons, backends))
    out.extend(_flags_table(records))
    return out


def _params(rows: list[Record], comps: list[Comparison], backends: Sequence[str]) -> list[Table]:
    totals = {(r.module, r.backend): r.params for r in rows if r.parameter is None}
    modules = list(dict.fromkeys(r.module for r in rows))
    torch_b = next((b for b in backends if b.startswith("torch")), None)
    jax_b = next((b for b in backends if b.startswith("jax")), None)
    table = Table("params: parameter count (C=64, K=8)", ["module", "torch", "jax", "extra vs PRCM"])
    base = totals.get(("PRCM", torch_b)) or totals.get(("PRCM", jax_b))
    for m in modules:
        t, j = totals.get((m, torch_b)), totals.get((m, jax_b))
        n = t if t is not None else j
        extra = "baseline" if m == "PRCM" else (f"{n - base:+,}" if n is not None and base is not None else "")
        table.rows.append([m, f"{t:,}" if t is not None else "", f"{j:,}" if j is not None else "", extra])
    breakdown = Table("params: breakdown", ["module", "parameter", "count"])
    seen = set()
    for r in rows:
        if r.parameter and (r.module, r.parameter) not in seen and r.backend == (torch_b or jax_b):
            seen.add((r.module, r.parameter))
            breakdown.rows.append([r.module, r.parameter, f"{r.params:,}"])
    return [table, breakdown]


def _versus_jit(backends: Sequence[str]) -> list[str]:
    return [b for b in backends if b != "jax-jit"] if "jax-jit" in backends else []


def _latency(rows: list[Record], comps: list[Comparison], backends: Sequence[str]) -> list[Table]:
    out = []
    for t in _threads(rows):
        idx = {(r.module, r.backend): r for r in rows if r.threads == t}
        modules = list(dict.fromkeys(r.module for r in rows))
        others = _versus_jit(backends)
        table = Table(f"latency: median ms at (1, 64, 64, 64), {t} thread(s)",
                      ["module", *backends, *[f"{b} / jax-jit" for b in others]],
                      note="ratio [95% CI] from paired rounds; n.s. = not significant; ! = unstable lane (see flags)")  # fmt: skip
        versus = Table(f"latency: each module / PRCM per backend, {t} thread(s)", ["module", *backends])
        for m in modules:
            ratios = [_find(comps, kind="backend", module=m, numerator=b, denominator="jax-jit", threads=t) for b in others]
            table.rows.append([m, *[_ms(idx.get((m, b))) for b in backends], *map(fmt_ratio, ratios)])
            versus.rows.append([m, *["baseline" if m == "PRCM" else fmt_ratio(
                _find(comps, kind="module", backend=b, numerator=m, denominator="PRCM", threads=t)) for b in backends]])  # fmt: skip
        out += [table, versus]
    return out


def _components(rows: list[Record], comps: list[Comparison], backends: Sequence[str]) -> list[Table]:
    out = []
    for t in _threads(rows):
        idx = {(r.op or r.module, r.backend): r for r in rows if r.threads == t}
        table = Table(f"components: median ms of each operation alone, and of the whole module, {t} thread(s)",
                      ["operation", *backends], note="whole / sum: paired ratio of the module to the sum of its parts, per round")  # fmt: skip
        for op in COMPONENTS:
            table.rows.append([op, *[_ms(idx.get((op, b))) for b in backends]])
        for module, parts in SUM_OF_PARTS.items():
            sums = []
            for b in backends:
                part = [idx.get((p, b)) for p in parts]
                sums.append(f"{sum(p.median_ms for p in part):.4f}" if all(p and p.status == "ok" for p in part) else "")
            table.rows.append([f"{module}: sum of parts", *sums])
            table.rows.append([f"{module}: whole module", *[_ms(idx.get((module, b))) for b in backends]])
            table.rows.append([f"{module}: whole / sum", *[fmt_ratio(_find(comps, kind="parts", module=module, backend=b, threads=t))
                                                         for b in backends]])  # fmt: skip
        out.append(table)
    return out


def _sweep(rows: list[Record], comps: list[Comparison], backends: Sequence[str], key: str) -> list[Table]:
    suite = rows[0].suite
    modules = list(dict.fromkeys(r.module for r in rows))
    title = {"channels": "latency vs channels (64x64, K=8)", "resolution": "latency vs resolution (C=64)",
             "num_basis": "latency vs num_basis (C=64, 64x64)", "batch": "latency vs batch (C=64, 64x64)"}[key]  # fmt: skip
    out = []
    for t in _threads(rows):
        idx = {(getattr(r, key), r.module, r.backend): r for r in rows if r.threads == t}
        table = Table(f"{suite}: {title}, {t} thread(s)", [key, "backend", *modules, "AffinePRCM / PRCM", "vs jax-jit (PRCM)"],
                      note="median ms per call; ratios [95% CI] from paired rounds")  # fmt: skip
        for value in sorted({getattr(r, key) for r in rows}):
            for b in backends:
                sel = dict(threads=t, **{key: value})
                affine = _find(comps, kind="module", backend=b, numerator="AffinePRCM", **sel)
                jit = _find(comps, kind="backend", module="PRCM", numerator=b, denominator="jax-jit", **sel)
                table.rows.append([str(value), b, *[_ms(idx.get((value, m, b))) for m in modules], fmt_ratio(affine), fmt_ratio(jit)])
        out.append(table)
    return out


def _mb(n: int | None) -> str:
    return "" if n is None else f"{n / 1e6:.2f}"


#: What each training workload's step does, for its tables.
STEPS = {"train": "forward, loss sum(y * cot), gradients to x and every parameter",
         "backward": "forward returning y, backward pass for the upstream gradient cot, no loss value"}


def _train(rows: list[Record], comps: list[Comparison], backends: Sequence[str]) -> list[Table]:
    out = []
    suite, workload = rows[0].suite, rows[0].workload
    for t in _threads(rows):
        table = Table(f"{suite}: one training step ({STEPS[workload]}), {t} thread(s)",
                      ["input", "module", "backend", "ms", "saved MB", "of which inputs", "GB/s", "copy fraction"],
                      note=f"minimum traffic {MIN_TRAFFIC[workload]:.0f} x the input's size; saved_bytes per backend: see README")  # fmt: skip
        ratios = Table(f"{suite}: step time / jax-jit's, {t} thread(s)", ["input", "module", *[f"{b} / jax-jit" for b in _versus_jit(backends)]])
        for r in (r for r in rows if r.threads == t):
            frac = f"{r.copy_fraction:.0%}" if r.copy_fraction else ""
            table.rows.append([_shape(r), r.module or r.op, r.backend, _ms(r), _mb(r.saved_bytes), _mb(r.saved_input_bytes),
                               f"{r.gbps:.1f}" if r.gbps else "", frac])  # fmt: skip
        for point, module in dict.fromkeys((_point(r), r.module) for r in rows if r.module and r.threads == t):
            b, c, res, _ = point
            cells = [fmt_ratio(_find(comps, kind="backend", module=module, numerator=o, denominator="jax-jit", threads=t,
                                     batch=b, channels=c, resolution=res)) for o in _versus_jit(backends)]  # fmt: skip
            ratios.rows.append([f"({b}, {c}, {res}, {res})", module, *cells])
        out += [table, ratios]
    return out


def _fusion(rows: list[Record], comps: list[Comparison], backends: Sequence[str]) -> list[Table]:
    idx = {(r.module, r.backend): r for r in rows}
    table = Table("fusion: kernels per call at (1, 64, 64, 64)", ["module", *backends],
                  note="jax-jit: XLA ENTRY kernels; jax-eager: JAX operations dispatched; torch-eager: ATen ops "
                       "dispatched (CUDA kernels on GPU); torch-compile: Inductor kernels + library calls")  # fmt: skip
    for m in dict.fromkeys(r.module for r in rows):
        cells = []
        for b in backends:
            r = idx.get((m, b))
            cells.append("" if r is None else str(r.kernels) if r.kernels is not None else r.status)
        table.rows.append([m, *cells])
    return [table]


def _roofline(rows: list[Record], comps: list[Comparison], backends: Sequence[str]) -> list[Table]:
    out = []
    for t in _threads(rows):
        table = Table(f"roofline: the seed point and tensors beyond the caches, float32, {t} thread(s)",
                      ["input", "MB", "what", "variant", "backend", "ms", "GB/s", "copy fraction", "passes", "faults/call"],
                      note=f"minimum bytes: {MIN_TRAFFIC['fresh']:.0f} x size for a block alone (read x for the mean, read x and "
                           f"write y), {MIN_TRAFFIC['loop']:.2f} x per block in a chain of {LOOP} (one read per block for its mean, "
                           "computed from x on the fly, then one read and one write: n + 2 passes for n blocks), copy 2 x; "
                           "copy fraction: GB/s over the best copy at the same size; passes: full-size reads + writes per block "
                           "in the compiled code (XLA's HLO, Inductor's wrapper); faults/call: " + FAULTS)  # fmt: skip
        for r in (r for r in rows if r.threads == t):
            mb = f"{r.batch * r.channels * r.resolution**2 * 4 / 1e6:.0f}"
            table.rows.append([_shape(r), mb, r.module or r.op, r.variant or "", r.backend, _ms(r),
                               f"{r.gbps:.1f}" if r.gbps else "", f"{r.copy_fraction:.0%}" if r.copy_fraction else "",
                               f"{r.passes:.2f}" if r.passes is not None else "", _faults(r)])  # fmt: skip
        out.append(table)
    return out


def _faults(r: Record | None) -> str:
    return f"{r.faults_per_call:,.0f}" if r is not None and r.faults_per_call is not None else ""


def _dispatch(rows: list[Record], comps: list[Comparison], backends: Sequence[str]) -> list[Table]:
    paths = list(dict.fromkeys(r.path for r in rows))
    out = []
    for t in _threads(rows):
        idx = {(r.resolution, r.module, r.path): r for r in rows if r.threads == t}
        table = Table(f"dispatch: jax-jit per call by call path (median ms; ratio to compiled), {t} thread(s)",
                      ["input", "module", *paths],
                      note="compiled = jax.jit(f).lower(params, x).compile() over one nnx.split, the path jax-jit uses")  # fmt: skip
        for res, module in dict.fromkeys((r.resolution, r.module) for r in rows):
            cells = []
            for p in paths:
                c = _find(comps, kind="path", module=module, numerator=p, resolution=res, threads=t)
                cells.append(_ms(idx.get((res, module, p))) + (f" ({fmt_ratio(c)})" if c else ""))
            table.rows.append([f"(1, 64, {res}, {res})", module, *cells])
        out.append(table)
    return out


def _network(rows: list[Record], comps: list[Comparison], backends: Sequence[str]) -> list[Table]:
    out = []
    for t in _threads(rows):
        table = Table(f"network: timm ResNets (torch) and their NNX twins (JAX), {t} thread(s)",
                      ["network", "input", "step", "attention", "params (torch / jax)", *backends, "overhead vs none (per backend)",
                       *[f"{b} / jax-jit" for b in _versus_jit(backends)], f"faults/call ({' / '.join(backends)})"],
                      note="median ms per call; overhead = time with the block / time without it - 1, from paired rounds, 95% CI; "
                           "step: forward = inference in eval mode, train = forward in train mode, loss sum(logits * cot), "
                           "gradients to the input and every parameter; faults/call: " + FAULTS)  # fmt: skip
        keys = dict.fromkeys((r.network, _point(r), r.workload, r.module) for r in rows if r.threads == t)
        for net, point, workload, module in keys:
            sel = [r for r in rows if (r.network, _point(r), r.workload, r.module, r.threads) == (net, point, workload, module, t)]
            idx = {r.backend: r for r in sel}
            params = sorted({f"{r.params:,}" for r in sel if r.params})
            overhead = []
            for b in backends:
                c = _find(comps, kind="module", backend=b, numerator=module, network=net, workload=workload, threads=t,
                          batch=point[0], resolution=point[2])  # fmt: skip
                if c:
                    overhead.append(f"{b}: {c.ratio - 1:+.1%} [{c.ci95[0] - 1:+.1%}, {c.ci95[1] - 1:+.1%}]" + ("" if c.significant else " n.s."))
            ratios = [fmt_ratio(_find(comps, kind="backend", module=module, numerator=o, denominator="jax-jit", network=net,
                                      workload=workload, threads=t, batch=point[0], resolution=point[2]))
                      for o in _versus_jit(backends)]  # fmt: skip
            table.rows.append([net, f"({point[0]}, 3, {point[2]}, {point[2]})", workload, module, " / ".join(params),
                               *[_ms(idx.get(b)) for b in backends], "; ".join(overhead), *ratios,
                               " / ".join(_faults(idx.get(b)) or "-" for b in backends)])  # fmt: skip
        out.append(table)
    return out


_BUILDERS = {"params": _params, "latency": _latency, "components": _components, "train": _train, "backward": _train, "fusion": _fusion,
             "roofline": _roofline, "dispatch": _dispatch, "network": _network}  # fmt: skip


def _threads_table(records: list[Record], comparisons: list[Comparison], backends: Sequence[str]) -> list[Table]:
    comps = [c for c in comparisons if c.kind == "threads" and c.suite in ("latency", "train") and c.workload != "op"]
    if not comps:
        return []
    table = Table("threads: time at fewer threads / time at all threads, per lane (latency and train)",
                  ["suite", "input", "module", *backends],
                  note="unpaired bootstrap (the settings run in separate processes, point by point); < 1: fewer threads is faster")  # fmt: skip
    for suite, point, module in dict.fromkeys((c.suite, _point(c), c.module) for c in comps):
        cells = []
        for b in backends:
            found = [c for c in comps if (c.suite, _point(c), c.module, c.backend) == (suite, point, module, b)]
            cells.append("; ".join(f"{c.numerator.split()[0]}: {fmt_ratio(c)}" for c in found))
        table.rows.append([suite, f"({point[0]}, {point[1]}, {point[2]}, {point[2]})", module, *cells])
    return [table]


def _flags_table(records: list[Record]) -> list[Table]:
    flagged = [r for r in _ok(records) if r.flag]
    if not flagged:
        return []
    shown = sorted(flagged, key=lambda r: -(r.spread or 0))[:FLAGS_SHOWN]
    more = f" ({len(flagged) - len(shown)} more in results.json)" if len(flagged) > len(shown) else ""
    table = Table(f"flags: {len(flagged)} unstable lane(s), the widest first{more}", ["suite", "input", "item", "backend", "threads", "flag"],
                  note="what to do: " + stats.ADVICE)
    for r in shown:
        table.rows.append([r.suite, _shape(r), (r.module or r.op) + (f" ({r.variant or r.path})" if r.variant or r.path else ""),
                           r.backend, str(r.threads), r.flag])  # fmt: skip
    return [table]


# -- findings ---------------------------------------------------------------------------------


def _ratio_list(comps: list[Comparison], label: str) -> str:
    return ", ".join(f"{getattr(c, label)} {fmt_ratio(c)}" for c in comps)


def _winner(c: Comparison) -> str:
    if not c.significant:
        return "no significant difference"
    return f"{c.denominator} faster" if c.ratio > 1 else f"{c.numerator} faster"


def findings(records: list[Record], comparisons: list[Comparison], copy_gbps: dict[str, float]) -> list[str]:
    """Sentences computed from the records and comparisons; none names a winner where the
    interval holds 1 (within the noise threshold)."""
    out = []
    ok = _ok(records)
    for t in _threads(comparisons):
        for other in ("torch-eager", "torch-compile", "jax-eager"):
            comps = [c for c in comparisons if c.suite == "latency" and c.kind == "backend" and c.threads == t
                     and c.numerator == other and c.denominator == "jax-jit"]  # fmt: skip
            if comps:
                out.append(f"Seed point (1, 64, 64, 64), {t} thread(s), {other} / jax-jit: {_ratio_list(comps, 'module')}.")
    for t in _threads(comparisons):
        for b in dict.fromkeys(c.backend for c in comparisons if c.kind == "module"):
            comps = [c for c in comparisons if c.kind == "module" and c.backend == b and c.threads == t
                     and c.numerator == "AffinePRCM" and c.suite in ("latency", *SWEEPS)]  # fmt: skip
            comps = list({_point(c): c for c in reversed(comps)}.values())  # a point shared by suites counts once (latency's)
            if comps:
                up = sum(c.significant and c.ratio > 1 for c in comps)
                down = sum(c.significant and c.ratio < 1 for c in comps)
                lo, hi = min(comps, key=lambda c: c.ratio), max(comps, key=lambda c: c.ratio)
                out.append(f"{b}, {t} thread(s): AffinePRCM / PRCM over {len(comps)} point(s): slower at {up}, faster at {down}, "
                           f"not significant at {len(comps) - up - down}; from {fmt_ratio(lo)} ({_shape(lo)}) to "
                           f"{fmt_ratio(hi)} ({_shape(hi)}).")  # fmt: skip
    for c in (c for c in comparisons if c.kind == "parts"):
        out.append(f"{c.backend}, {c.threads} thread(s): {c.module} costs {fmt_ratio(c)} the sum of its "
                   f"{len(SUM_OF_PARTS[c.module])} parts timed alone.")  # fmt: skip
    out += _train_findings(records, comparisons)
    out += _network_findings(comparisons)
    out += _fault_findings(records)
    kernels = {(r.module, r.backend): r.kernels for r in records if r.suite == "fusion" and r.kernels is not None}
    for backend in dict.fromkeys(b for _, b in kernels):
        counts = [k for (m, b), k in kernels.items() if b == backend]
        out.append(f"{backend}: {min(counts)} to {max(counts)} kernels per call across the six modules.")
    out += _roofline_findings(ok, copy_gbps)
    out += _threads_findings(comparisons)
    for c in (c for c in comparisons if c.kind == "path" and c.numerator == "nnx.jit"):
        base = next((r for r in ok if r.suite == "dispatch" and r.path == "compiled" and r.module == c.module
                     and r.resolution == c.resolution and r.threads == c.threads), None)  # fmt: skip
        extra = f" ({base.median_ms * (c.ratio - 1):.3f} ms added per call)" if base and c.significant and c.ratio > 1 else ""
        out.append(f"nnx.jit / compiled split-state call = {fmt_ratio(c)}{extra} ({c.module}, {_shape(c)}, {c.threads} thread(s)).")
    flagged = [r for r in ok if r.flag]
    if flagged:
        out.append(f"{len(flagged)} of {len(ok)} timed lanes are flagged unstable (spread or two speeds); their intervals "
                   f"already include that noise. {stats.ADVICE[0].upper()}{stats.ADVICE[1:]}.")  # fmt: skip
    bad = [r for r in records if r.status != "ok"]
    if bad:
        reasons = sorted({f"{r.backend}: {r.status} ({r.reason})" for r in bad})
        out.append("Not measured: " + "; ".join(reasons[:6]) + (" ..." if len(reasons) > 6 else ""))
    return out


def _train_findings(records: list[Record], comparisons: list[Comparison]) -> list[str]:
    out = []
    b, c, res = TRAIN_POINT
    for suite in ("train", "backward"):
        at = dict(suite=suite, kind="backend", batch=b, channels=c, resolution=res, denominator="jax-jit")
        mine = [x for x in comparisons if x.suite == suite]
        for t in _threads(mine):
            for module in dict.fromkeys(x.module for x in mine if x.kind == "backend" and x.workload == suite):
                eager = _find(comparisons, module=module, numerator="torch-eager", threads=t, **at)
                compiled = _find(comparisons, module=module, numerator="torch-compile", threads=t, **at)
                if not (eager or compiled):
                    continue
                parts = []
                lane = dict(suite=suite, module=module, threads=t, batch=b, channels=c, resolution=res, status="ok")
                mine_jax = _find(records, backend="jax-jit", **lane)
                for ratio, target, name in ((eager, 3.0, "torch-eager"), (compiled, 2.0, "torch-compile")):
                    if ratio:
                        verdict = "met" if ratio.ci95[0] >= target else "not met"
                        parts.append(f"{name} / jax-jit = {fmt_ratio(ratio)} (target >= {target:.0f}x on the CI's lower bound: {verdict}"
                                     + _bound(_find(records, backend=name, **lane), mine_jax, target) + ")")  # fmt: skip
                what = "Training step" if suite == "train" else "Forward and backward pass for cot (no loss value)"
                out.append(f"{what} at ({b}, {c}, {res}, {res}), {t} thread(s), {module}: " + "; ".join(parts) + ".")
        swept = [r for r in records if r.suite == suite and r.passes is not None and _point(r)[:3] == TRAIN_POINT and r.module == "PRCM"]
        if swept:
            cells = ", ".join(f"{r.backend} {r.passes:g}" for r in {r.backend: r for r in swept}.values())
            out.append(f"Passes over the ({b}, {c}, {res}, {res}) tensor in one compiled PRCM {suite} step (full-size reads + writes "
                       f"in the compiled code): {cells}; the minimum is {MIN_TRAFFIC[suite]:g}.")  # fmt: skip
    saved = [r for r in records if r.suite == "train" and r.saved_bytes is not None and _point(r)[:3] == TRAIN_POINT and r.module == "PRCM"]
    for t in _threads(saved):
        cells = []
        for r in (r for r in saved if r.threads == t):
            inputs = f" ({r.saved_input_bytes / 1e6:.2f} MB of it inputs)" if r.saved_input_bytes is not None else ""
            cells.append(f"{r.backend} {r.saved_bytes / 1e6:.2f} MB{inputs}")
        out.append(f"Kept for the backward pass (PRCM, ({b}, {c}, {res}, {res}), x is {b * c * res * res * 4 / 1e6:.1f} MB): "
                   + ", ".join(cells) + ".")  # fmt: skip
        break
    return out


def _bound(other: Record | None, jax_jit: Record | None, target: float) -> str:
    """What a target asks of the memory system: a step that moved only the minimum traffic at
    this run's copy bandwidth would be ``1 / copy_fraction`` times faster than ``other``, so
    jax-jit is ``target`` times faster only at ``target x`` other's copy fraction or more."""
    if not (other and jax_jit and other.copy_fraction and jax_jit.copy_fraction):
        return ""
    return (f"; bound: the minimum traffic at copy speed is {1 / other.copy_fraction:.1f}x faster than {other.backend}, so "
            f"{target:.0f}x needs jax-jit at >= {target * other.copy_fraction:.0%} of copy speed (it runs at {jax_jit.copy_fraction:.0%})")  # fmt: skip


def _network_findings(comparisons: list[Comparison]) -> list[str]:
    out = []
    comps = [c for c in comparisons if c.suite == "network" and c.kind in ("module", "backend")]
    for key in dict.fromkeys((c.network, c.batch, c.resolution, c.workload, c.threads) for c in comps):
        net, b, res, workload, t = key
        mine = [c for c in comps if (c.network, c.batch, c.resolution, c.workload, c.threads) == key]
        blocks = [f"{c.numerator} on {c.backend} {c.ratio - 1:+.1%} [{c.ci95[0] - 1:+.1%}, {c.ci95[1] - 1:+.1%}]"
                  + ("" if c.significant else " n.s.") for c in mine if c.kind == "module"]  # fmt: skip
        speed = [f"{c.module} {fmt_ratio(c)}" for c in mine if c.kind == "backend" and c.numerator == "torch-eager"
                 and c.denominator == "jax-jit"]  # fmt: skip
        text = f"{net} {workload} at ({b}, 3, {res}, {res}), {t} thread(s):"
        if blocks:
            text += " block overhead vs no attention: " + "; ".join(blocks) + "."
        if speed:
            text += " torch-eager / jax-jit: " + ", ".join(speed) + "."
        out.append(text)
    return out


def _fault_findings(records: list[Record]) -> list[str]:
    """Per network, what its heaviest step maps in afresh per call on each backend."""
    out = []
    timed = [r for r in records if r.suite == "network" and r.faults_per_call is not None]
    for net in dict.fromkeys(r.network for r in timed):
        mine = [r for r in timed if r.network == net and r.module == "none"]
        if not mine:
            continue
        top = max(mine, key=lambda r: (r.workload == "train", r.batch * r.resolution**2, -(r.threads or 0)))
        where = lambda r: (r.workload, r.batch, r.resolution, r.threads)  # noqa: E731
        cells = [f"{r.backend} {_faults(r)}" for r in mine if where(r) == where(top)]
        out.append(f"Minor page faults per call, {net} {top.workload} at ({top.batch}, 3, {top.resolution}, {top.resolution}), "
                   f"{top.threads} thread(s), no attention: " + ", ".join(cells) + f" ({FAULTS}).")  # fmt: skip
    return out


def _roofline_findings(ok: list[Record], copy_gbps: dict[str, float]) -> list[str]:
    out = []
    if copy_gbps:
        out.append("Copy bandwidth (read + write, best of torch out= and JAX donated) measured in this run: "
                   + ", ".join(f"{gbps:.1f} GB/s at {size}" for size, gbps in copy_gbps.items()) + ".")  # fmt: skip
    roof = [r for r in ok if r.suite == "roofline" and r.module and r.copy_fraction and r.batch * r.channels * r.resolution**2 * 4 >= 64e6]
    for key in dict.fromkeys((r.backend, r.variant, r.threads) for r in roof):
        lanes = [r for r in roof if (r.backend, r.variant, r.threads) == key]
        steady = [r for r in lanes if r.flag is None]  # a flagged lane's median may be its fast mode only
        best = max(steady or lanes, key=lambda r: r.copy_fraction)
        out.append(f"{best.backend} ({best.variant}, {best.threads} thread(s), tensors >= 64 MB): best {best.copy_fraction:.0%} of "
                   f"copy bandwidth against {MIN_TRAFFIC[best.variant]:.2f} x size, {best.gbps:.1f} GB/s ({best.module}, batch {best.batch}"
                   f"{'' if steady else '; every lane flagged unstable'}).")  # fmt: skip
    loops = [r for r in ok if r.suite == "roofline" and r.variant == "loop" and r.passes is not None]
    for backend in dict.fromkeys(r.backend for r in loops):
        passes = sorted({round(r.passes, 2) for r in loops if r.backend == backend})
        out.append(f"{backend}: a compiled chain of {LOOP} blocks sweeps the tensor {', '.join(map(str, passes))} times per block "
                   f"(the minimum without algebra across blocks is {MIN_TRAFFIC['loop']:.2f}: one read per block for its mean, "
                   "then one read and one write for the output).")  # fmt: skip
    return out


def _threads_findings(comparisons: list[Comparison]) -> list[str]:
    comps = [c for c in comparisons if c.kind == "threads" and c.workload != "op" and c.network is None
             and c.suite in ("latency", "train", *SWEEPS)]  # the modules' lanes, one kind at a time below  # fmt: skip
    out = []
    for backend in dict.fromkeys(c.backend for c in comps):
        mine = [c for c in comps if c.backend == backend]
        fewer = sum(c.significant and c.ratio < 1 for c in mine)
        more = sum(c.significant and c.ratio > 1 for c in mine)
        denominator = mine[0].denominator
        out.append(f"{backend}: fewer threads is faster than {denominator} in {fewer} of {len(mine)} lanes, slower in {more}, "
                   f"not significant in {len(mine) - fewer - more}.")  # fmt: skip
        for suite in ("latency", "train"):
            for c in (c for c in mine if c.suite == suite and c.module == "PRCM"):
                out.append(f"  {suite} {_shape(c)} PRCM on {backend}: {c.numerator} / {c.denominator} = {fmt_ratio(c)}: {_winner(c)}.")
    return out


# -- files ------------------------------------------------------------------------------------


def write_results(path: Path, meta: dict[str, Any], records: list[Record], comparisons: list[Comparison]) -> None:
    """``results.json``: ``{"meta": ..., "records": [...], "comparisons": [...]}``, written atomically."""
    tmp = path.with_suffix(".json.tmp")
    body = {"meta": meta, "records": [r.as_dict() for r in records], "comparisons": [c.as_dict() for c in comparisons]}
    tmp.write_text(json.dumps(body, indent=1, default=str))
    os.replace(tmp, path)


def markdown(table: Table) -> str:
    """A table as Markdown."""
    lines = [f"### {table.title}", "", "| " + " | ".join(table.headers) + " |", "|" + "---|" * len(table.headers)]
    lines += ["| " + " | ".join(row) + " |" for row in table.rows]
    if table.note:
        lines += ["", f"_{table.note}_"]
    return "\n".join(lines)


def write_report(path: Path, meta: dict[str, Any], records: list[Record], comparisons: list[Comparison],
                 backends: Sequence[str], found: list[str]) -> None:  # fmt: skip
    """``report.md``: the run's settings, the findings, every table, every plot."""
    threads = meta["threads"]
    header = [
        "# prcm benchmark", "",
        f"Device: {meta.get('device')} ({meta.get('device_kind')}); thread settings: {threads['settings']} "
        f"(CPUs {threads['cpu_affinity']}); JAX CPU dispatch "
        f"{'asynchronous' if meta.get('jax_cpu_async_dispatch') else 'synchronous'}; torch {meta['versions'].get('torch')}, "
        f"jax {meta['versions'].get('jax')}, flax {meta['versions'].get('flax')}; {meta.get('precision')}; "
        f"{'quick' if meta['settings'].get('quick') else 'full'} run, {meta.get('elapsed_s')} s"
        + ("; INTERRUPTED, partial results" if meta.get("interrupted") else "") + ".", "",
        f"Ratios: {meta['statistics']['method']}; {meta['statistics']['resamples']} resamples, "
        f"{meta['statistics']['confidence']:.0%} intervals; not significant (n.s.) when the interval reaches within "
        f"{meta['statistics']['noise']:.0%} of 1.", "",
        "Other processes' share of the CPUs while points were timed: "
        + ("; ".join(f"{k}: mean {v['mean']:.0%}, worst point {v['max']:.0%}" for k, v in (meta.get("other_load") or {}).items())
           or "not measured")
        + " (a run is comparable with another taken at a similar load; above about 10% expect every timing, and ratios "
          "between backends, to move).",
        "", "## Findings", "", *[f"- {f}" for f in found], "", "## Tables", "",
    ]  # fmt: skip
    body = "\n\n".join(markdown(t) for t in tables(records, comparisons, backends))
    plots = sorted(p.name for p in path.parent.glob("*.png"))
    tail = ["", "## Plots", "", *[f"![{p}]({p})" for p in plots]] if plots else []
    path.write_text("\n".join(header) + body + "\n" + "\n".join(tail) + "\n")
