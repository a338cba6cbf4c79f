"""Findings: sentences computed from a suite's records and comparisons (no torch, no jax).

Each suite declares its finder (:mod:`bench.suites`); a finder takes the suite's records, its
comparisons (after the analysis's adjustment, :func:`bench.analysis.adjust`) and the run's
``meta``, and returns sentences. None names a winner where a ratio is not significant or its
sessions disagree; none states a target: a figure is set beside its physical bound, and
bandwidth is a claim about DRAM only where the working set is DRAM-resident.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench.plan import LOOP, MIN_TRAFFIC, SUM_OF_PARTS
from bench.schema import Comparison, Record
from bench.tables import FAULTS, find, fmt_overhead, fmt_ratio, lane_label, shape, thread_settings

__all__ = ["winner", "latency", "sweep", "components", "train", "fusion", "roofline", "dispatch", "network", "threads",
           "best_layouts", "TRAIN_POINT"]  # fmt: skip

#: The training step's reference point (batch, channels, resolution).
TRAIN_POINT = (8, 64, 56)
Finder = Callable[[list[Record], list[Comparison], dict[str, Any]], list[str]]


def winner(c: Comparison, numerator: str | None = None, denominator: str | None = None) -> str:
    """Which side of a ratio is faster, or that the data cannot tell.

    Examples:
        >>> c = Comparison("latency", "threads", "PRCM", "jax-jit", "1 thread", "2 threads", 1, 64, 64, 8, None, 1.01, [0.97, 1.05], False)
        >>> winner(c)
        'no significant difference'
        >>> c.ratio, c.ci95, c.significant = 1.8, [1.7, 1.9], True
        >>> winner(c)
        '2 threads faster'
    """
    if c.unstable:
        return "sessions disagree"
    if not c.significant:
        return "no significant difference"
    return f"{denominator or c.denominator} faster" if c.ratio > 1 else f"{numerator or c.numerator} faster"


def _ratio_list(comps: list[Comparison], label: str) -> str:
    return ", ".join(f"{getattr(c, label)} {fmt_ratio(c)}" for c in comps)


def latency(records: list[Record], comps: list[Comparison], meta: dict[str, Any]) -> list[str]:
    """Each backend against jax-jit at the seed point, per module."""
    out = []
    for t in thread_settings(comps):
        for other in ("torch-eager", "torch-compile", "jax-eager"):
            mine = [c for c in comps if c.kind == "backend" and c.threads == t and c.numerator == other and c.denominator == "jax-jit"]
            if mine:
                out.append(f"Seed point {shape(mine[0])}, {t} thread(s), {other} / jax-jit: {_ratio_list(mine, 'module')}.")
    return out


def sweep(records: list[Record], comps: list[Comparison], meta: dict[str, Any]) -> list[str]:
    """AffinePRCM / PRCM along a sweep, per backend: its range, end to end (the points share
    their denominators, so a count of points is not evidence)."""
    out = []
    for t in thread_settings(comps):
        for b in dict.fromkeys(c.backend for c in comps if c.kind == "module"):
            mine = [c for c in comps if c.kind == "module" and c.backend == b and c.threads == t and c.numerator == "AffinePRCM"]
            if len(mine) < 2:
                continue
            lo, hi = min(mine, key=lambda c: c.ratio), max(mine, key=lambda c: c.ratio)
            out.append(f"{mine[0].suite} sweep, {b}, {t} thread(s): AffinePRCM / PRCM from {fmt_ratio(lo)} at {shape(lo)} "
                       f"to {fmt_ratio(hi)} at {shape(hi)}.")  # fmt: skip
    return out


def components(records: list[Record], comps: list[Comparison], meta: dict[str, Any]) -> list[str]:
    return [f"{c.backend}, {c.threads} thread(s): {c.module} costs {fmt_ratio(c)} the sum of its {len(SUM_OF_PARTS[c.module])} "
            "parts timed alone." for c in comps if c.kind == "parts"]  # fmt: skip


def _bound(lane: Record | None, copy: Record | None) -> str:
    """A step's time beside the physical bound: the minimum traffic at the copy speed measured
    at the same size and threads, and where the working set sits."""
    if not (lane and copy and lane.bytes and copy.gbps and lane.median_ms):
        return ""
    floor_ms = lane.bytes / (copy.gbps * 1e9) * 1e3
    where = f"working set in {lane.memory_level}: cache bandwidth, not DRAM's" if lane.memory_level not in (None, "DRAM") else \
        f"working set in {lane.memory_level or 'unknown memory'}"  # fmt: skip
    return f"{lane.backend} {lane.median_ms:.3f} ms is {lane.median_ms / floor_ms:.1f}x the {floor_ms:.3f} ms that its minimum traffic takes at copy speed ({where})"


def train(records: list[Record], comps: list[Comparison], meta: dict[str, Any]) -> list[str]:
    """The training step (or the backward pass) at :data:`TRAIN_POINT` against jax-jit, each
    beside its physical bound; passes over the tensor; what each backend keeps."""
    out = []
    b, c, res = TRAIN_POINT
    at = dict(kind="backend", batch=b, channels=c, resolution=res, denominator="jax-jit")
    workload = next((x.workload for x in [*records, *comps] if x.workload in MIN_TRAFFIC), "train")
    for t in thread_settings(comps):
        for module in dict.fromkeys(x.module for x in comps if x.kind == "backend" and x.workload == workload):
            ratios = [x for name in ("torch-eager", "torch-compile") if (x := find(comps, module=module, numerator=name, threads=t, **at))]
            if not ratios:
                continue
            lane = dict(module=module, threads=t, batch=b, channels=c, resolution=res, status="ok")
            copy = find(records, op="copy", threads=t, batch=b, channels=c, resolution=res)
            bounds = [s for name in ("jax-jit", "torch-eager", "torch-compile") if (s := _bound(find(records, backend=name, **lane), copy))]
            what = "Training step" if workload == "train" else "Forward and backward pass for cot (no loss value)"
            out.append(f"{what} at ({b}, {c}, {res}, {res}), {t} thread(s), {module}: "
                       + "; ".join(f"{x.numerator} / jax-jit = {fmt_ratio(x)}" for x in ratios)
                       + (". Bound: " + "; ".join(bounds) if bounds else "") + ".")  # fmt: skip
    swept = [r for r in records if r.passes is not None and (r.batch, r.channels, r.resolution) == TRAIN_POINT and r.module == "PRCM"]
    if swept:
        cells = ", ".join(f"{r.backend} {r.passes:g}" for r in {r.backend: r for r in swept}.values())
        out.append(f"Passes over the ({b}, {c}, {res}, {res}) tensor in one compiled PRCM {workload} step (full-size reads + writes "
                   f"in the compiled code): {cells}; the minimum is {MIN_TRAFFIC[workload]:g}.")  # fmt: skip
    saved = [r for r in records if r.saved_bytes is not None and (r.batch, r.channels, r.resolution) == TRAIN_POINT and r.module == "PRCM"]
    for t in thread_settings(saved)[:1]:
        cells = []
        for r in (r for r in saved if r.threads == t):
            inputs = f" ({r.saved_input_bytes / 1e6:.2f} MB of it inputs)" if r.saved_input_bytes is not None else ""
            cells.append(f"{r.backend} {r.saved_bytes / 1e6:.2f} MB{inputs}")
        out.append(f"Kept for the backward pass (PRCM, ({b}, {c}, {res}, {res}), x is {b * c * res * res * 4 / 1e6:.1f} MB): "
                   + ", ".join(cells) + ".")  # fmt: skip
    return out


def fusion(records: list[Record], comps: list[Comparison], meta: dict[str, Any]) -> list[str]:
    kernels = {(r.module, r.backend): r.kernels for r in records if r.kernels is not None}
    out = []
    for backend in dict.fromkeys(b for _, b in kernels):
        counts = [k for (m, b), k in kernels.items() if b == backend]
        out.append(f"{backend}: {min(counts)} to {max(counts)} kernels per call across the {len(counts)} modules.")
    return out


def roofline(records: list[Record], comps: list[Comparison], meta: dict[str, Any]) -> list[str]:
    """Copy bandwidth per reference and memory level; each variant's best fraction of its
    reference where the working set is DRAM-resident; fractions above 1 named as what they are."""
    ok = [r for r in records if r.status == "ok" and r.gbps]
    out = []
    copies = [r for r in ok if r.op in ("copy", "copy in-place")]
    if copies:
        out.append("Copy bandwidth (read + write, the best of torch and JAX) in this run: "
                   + ", ".join(f"{r.op} {r.gbps:.1f} GB/s at {shape(r)} ({r.memory_level}, {r.threads} thread(s))"
                               for r in _best(copies, lambda r: (r.op, r.batch, r.resolution, r.threads))) + ".")  # fmt: skip
    lanes = [r for r in ok if r.module and r.copy_fraction is not None]
    dram = [r for r in lanes if r.memory_level == "DRAM"]
    for key in dict.fromkeys((r.backend, r.variant, r.threads) for r in dram):
        mine = [r for r in dram if (r.backend, r.variant, r.threads) == key]
        steady = [r for r in mine if r.flag is None]  # a flagged lane's median may be its fast mode only
        best = max(steady or mine, key=lambda r: r.copy_fraction)
        out.append(f"{best.backend} ({best.variant}, {best.threads} thread(s), DRAM-resident working sets): best {best.copy_fraction:.0%} "
                   f"of the {best.reference}'s bandwidth against {MIN_TRAFFIC[best.variant]:.2f} x size, {best.gbps:.1f} GB/s "
                   f"({best.module}, {shape(best)}{'' if steady else '; every lane flagged unstable'}).")  # fmt: skip
    if lanes and not dram:
        largest = max(r.working_set or 0 for r in lanes)
        out.append(f"No working set of this run is DRAM-resident (the largest, {largest / 1e6:.0f} MB, sits in "
                   f"{next(r.memory_level for r in lanes if r.working_set == largest)}): its fractions are cache effects, "
                   "not bounds on DRAM bandwidth.")  # fmt: skip
    above = [r for r in lanes if r.copy_fraction > 1]
    if above:
        cells = ", ".join(f"{r.backend} {r.module} {r.variant} {r.copy_fraction:.2f} ({shape(r)}, {r.memory_level})" for r in above[:6])
        out.append(f"{len(above)} lane(s) exceed their copy reference ({cells}{', ...' if len(above) > 6 else ''}): "
                   "the reference touches the same buffers, so this is a cache effect (part of the working set served "
                   "from a cache) or a bug, never a result.")  # fmt: skip
    loops = [r for r in ok if r.variant == "loop" and r.passes is not None]
    for backend in dict.fromkeys(r.backend for r in loops):
        passes = sorted({round(r.passes, 2) for r in loops if r.backend == backend})
        out.append(f"{backend}: a compiled chain of {LOOP} blocks sweeps the tensor {', '.join(map(str, passes))} times per block "
                   f"(the minimum without algebra across blocks is {MIN_TRAFFIC['loop']:.2f}: one read per block for its mean, "
                   "then one read and one write for the output).")  # fmt: skip
    return out


def _best(records: list[Record], key: Callable[[Record], Any]) -> list[Record]:
    best: dict[Any, Record] = {}
    for r in records:
        if key(r) not in best or r.gbps > best[key(r)].gbps:
            best[key(r)] = r
    return list(best.values())


def dispatch(records: list[Record], comps: list[Comparison], meta: dict[str, Any]) -> list[str]:
    out = []
    for c in (c for c in comps if c.kind == "path" and c.numerator == "nnx.jit"):
        base = find(records, path="compiled", module=c.module, resolution=c.resolution, threads=c.threads, status="ok")
        extra = f" ({base.median_ms * (c.ratio - 1):.3f} ms added per call)" if base and c.significant and c.ratio > 1 else ""
        out.append(f"nnx.jit / compiled split-state call = {fmt_ratio(c)}{extra} ({c.module}, {shape(c)}, {c.threads} thread(s)).")
    return out


def best_layouts(comps: list[Comparison]) -> list[str]:
    """torch's best layout per network, batch, step, thread setting and backend (the block
    ``none`` and every other), or that the layout makes no significant difference."""
    out = []
    layout = [c for c in comps if c.kind == "layout"]
    for key in dict.fromkeys((c.network, c.batch, c.resolution, c.workload, c.threads, c.backend) for c in layout):
        net, b, res, workload, t, backend = key
        mine = [c for c in layout if (c.network, c.batch, c.resolution, c.workload, c.threads, c.backend) == key]
        cells = "; ".join(f"{c.module} {fmt_ratio(c)}: {_layout_winner(c)}" for c in mine)
        out.append(f"{backend} channels-last / channels-first, {net} {workload} at ({b}, 3, {res}, {res}), {t} thread(s): {cells}.")
    return out


def _layout_winner(c: Comparison) -> str:
    return winner(c, "channels-last", "channels-first").replace("faster", "best").replace("no significant difference",
                                                                                          "no significant difference between layouts")


def network(records: list[Record], comps: list[Comparison], meta: dict[str, Any]) -> list[str]:
    """Per network, input, step and thread setting: each block's overhead per backend, torch
    against jax-jit in each layout; torch's best layout; what the heaviest step faults in."""
    out = []
    mine = [c for c in comps if c.kind in ("module", "backend")]
    for key in dict.fromkeys((c.network, c.batch, c.resolution, c.workload, c.threads) for c in mine):
        net, b, res, workload, t = key
        at = [c for c in mine if (c.network, c.batch, c.resolution, c.workload, c.threads) == key]
        blocks = [f"{c.numerator} on {lane_label(c.backend, c.layout)} {fmt_overhead(c)}" for c in at
                  if c.kind == "module" and c.denominator == "none"]  # fmt: skip
        versus_se = [f"{c.numerator} on {lane_label(c.backend, c.layout)} {fmt_ratio(c)}" for c in at
                     if c.kind == "module" and c.denominator == "se"]  # fmt: skip
        speed = [f"{c.module} {lane_label(c.numerator, c.layout)} {fmt_ratio(c)}" for c in at
                 if c.kind == "backend" and c.denominator == "jax-jit" and c.numerator == "torch-eager"]  # fmt: skip
        text = f"{net} {workload} at ({b}, 3, {res}, {res}), {t} thread(s):"
        if blocks:
            text += " block overhead vs no attention: " + "; ".join(blocks) + "."
        if versus_se:
            text += " time with the block / with timm's SE: " + "; ".join(versus_se) + "."
        if speed:
            text += " torch-eager / jax-jit: " + ", ".join(speed) + "."
        out.append(text)
    out += best_layouts(comps)
    timed = [r for r in records if r.faults_per_call is not None]
    for net in dict.fromkeys(r.network for r in timed):
        plain = [r for r in timed if r.network == net and r.module == "none"]
        if not plain:
            continue
        top = max(plain, key=lambda r: (r.workload == "train", r.batch * r.resolution**2, -(r.threads or 0)))
        where = lambda r: (r.workload, r.batch, r.resolution, r.threads)  # noqa: E731
        cells = [f"{lane_label(r.backend, r.layout)} {r.faults_per_call:,.0f}" for r in plain if where(r) == where(top)]
        out.append(f"Minor page faults per call, {net} {top.workload} at ({top.batch}, 3, {top.resolution}, {top.resolution}), "
                   f"{top.threads} thread(s), no attention: " + ", ".join(cells) + f" ({FAULTS}).")  # fmt: skip
    return out


def threads(records: list[Record], comps: list[Comparison], meta: dict[str, Any]) -> list[str]:
    """Fewer threads against the most, at the seed point and the training step (PRCM): each
    lane's ratio and which setting wins there, never a count over lanes."""
    out = []
    for c in comps:
        if c.kind == "threads" and c.module == "PRCM" and c.suite in ("latency", "train") and c.network is None:
            out.append(f"{c.suite} {shape(c)} PRCM on {c.backend}: {c.numerator} / {c.denominator} = {fmt_ratio(c)}: {winner(c)}.")
    return out
