"""The suites' tables, from records and comparisons alone (no torch, no jax).

A :class:`Table` is renderer-agnostic: :mod:`bench.report` prints it in the terminal and as
Markdown. Each suite declares its builders (:mod:`bench.suites`); a builder takes the suite's
records, its comparisons (after the analysis's adjustment) and the run's backends. A ratio
prints as ``1.73x [1.65, 1.81]``, with ``n.s.`` where it is not significant and ``unstable``
where the sessions disagree.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from bench import stats
from bench.plan import COMPONENTS, LOOP, MIN_TRAFFIC, SUM_OF_PARTS
from bench.schema import Comparison, Record

__all__ = ["Table", "fmt_ratio", "fmt_overhead", "lane_label", "generic", "params", "latency", "components", "sweep", "block_costs",
           "train", "fusion", "roofline", "dispatch", "network", "threads", "flags", "FAULTS"]  # fmt: skip

#: Unstable lanes listed in the flags table (all are in results.json).
FLAGS_SHOWN = 25
T = TypeVar("T", Record, Comparison)
#: What the ``faults/call`` columns count.
FAULTS = ("minor page faults of the process per timed call, median (a chain of blocks counts once; memory the OS maps in on first touch, 4 KiB a fault "
          "without huge pages: an output or temporary above glibc's 32 MiB mmap threshold is mapped afresh every call)")
#: What each training workload's step does, for its tables.
STEPS = {"train": "forward, loss sum(y * cot), gradients to x and every parameter",
         "backward": "forward returning y, backward pass for the upstream gradient cot, no loss value"}
#: Short names of torch's layouts in tables.
LAYOUT_TAGS = {"channels_first": "", "channels_last": " CL", None: ""}


@dataclass
class Table:
    """A renderer-agnostic table."""

    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    note: str = ""


def fmt_ratio(c: Comparison | None) -> str:
    """``1.73x [1.65, 1.81]``, with `` n.s.`` when not significant; ``unstable`` with each
    session's value when the sessions disagree (no point ratio then).

    Examples:
        >>> c = Comparison("latency", "backend", "PRCM", None, "torch-eager", "jax-jit", 1, 64, 64, 8, 1, 1.01, [0.97, 1.04], False)
        >>> fmt_ratio(c)
        '1.01x [0.97, 1.04] n.s.'
        >>> c.covers = "rounds"
        >>> fmt_ratio(c)
        '1.01x [0.97, 1.04] (one process) n.s.'
        >>> c.unstable, c.sessions = True, [0.9, 1.2, 1.25]
        >>> fmt_ratio(c)
        'unstable: sessions disagree (0.90x, 1.20x, 1.25x)'
    """
    if c is None:
        return ""
    ratio = stats.Ratio(c.ratio, *c.ci95, sessions=tuple(c.sessions or ()), covers=c.covers or "processes", unstable=bool(c.unstable))
    return str(ratio) + ("" if c.significant or c.unstable else " n.s.")


def fmt_overhead(c: Comparison | None) -> str:
    """A ratio as a change in percent: ``+6.4% [+4.4, +8.1]``."""
    if c is None:
        return ""
    if c.unstable:
        return fmt_ratio(c)
    return f"{c.ratio - 1:+.1%} [{(c.ci95[0] - 1) * 100:+.1f}, {(c.ci95[1] - 1) * 100:+.1f}]" + ("" if c.significant else " n.s.")


def lane_label(backend: str | None, layout: str | None = None) -> str:
    """A backend, tagged ``CL`` when torch ran it channels-last.

    Examples:
        >>> lane_label("torch-eager", "channels_last"), lane_label("jax-jit")
        ('torch-eager CL', 'jax-jit')
    """
    return f"{backend}{LAYOUT_TAGS[layout]}"


def _ms(r: Record | None) -> str:
    if r is None:
        return ""
    if r.status != "ok":
        return r.status
    if r.median_ms is None:
        return ""
    return f"{r.median_ms:.4f}" + ("!" if r.flag else "")


def _point(x: Record | Comparison) -> tuple:
    return (x.batch, x.channels, x.resolution, x.num_basis)


def shape(x: Record | Comparison) -> str:
    return f"({x.batch}, {x.channels}, {x.resolution}, {x.resolution})"


def thread_settings(items: Iterable[Record | Comparison]) -> list[int]:
    return sorted({x.threads for x in items if x.threads is not None})


def find(items: Iterable[T], **fields: Any) -> T | None:
    """The first item whose attributes equal ``fields``."""
    return next((c for c in items if all(getattr(c, k) == v for k, v in fields.items())), None)


def _versus_jit(backends: Sequence[str]) -> list[str]:
    return [b for b in backends if b != "jax-jit"] if "jax-jit" in backends else []


def _faults(r: Record | None) -> str:
    return f"{r.faults_per_call:,.0f}" if r is not None and r.faults_per_call is not None else ""


def _mb(n: int | None) -> str:
    return "" if n is None else f"{n / 1e6:.2f}"


def generic(rows: list[Record], comps: list[Comparison], backends: Sequence[str]) -> list[Table]:
    """Any suite: per thread setting, each lane's median ms, then every ratio it reports."""
    out = []
    for t in thread_settings(rows) or [None]:
        mine = [r for r in rows if r.threads == t]
        table = Table(f"{rows[0].suite}: median ms per call" + (f", {t} thread(s)" if t else ""),
                      ["input", "item", "workload", *backends], note="! = unstable lane (see flags)")  # fmt: skip
        for key in dict.fromkeys((_point(r), r.item, r.workload) for r in mine):
            idx = {r.backend: r for r in mine if (_point(r), r.item, r.workload) == key}
            table.rows.append([shape(next(iter(idx.values()))), key[1] or "", key[2] or "", *[_ms(idx.get(b)) for b in backends]])
        ratios = Table(f"{rows[0].suite}: ratios" + (f", {t} thread(s)" if t else ""), ["input", "kind", "ratio", "value"],
                       note="numerator time / denominator time [95% CI]")  # fmt: skip
        for c in (c for c in comps if c.threads == t):
            what = f"{c.module or c.backend}: {lane_label(c.numerator, c.layout if c.kind != 'layout' else None)} / {c.denominator}"
            ratios.rows.append([shape(c), c.kind, what, fmt_ratio(c)])
        out += [table] + ([ratios] if ratios.rows else [])
    return out


def params(rows: list[Record], comps: list[Comparison], backends: Sequence[str]) -> list[Table]:
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


def latency(rows: list[Record], comps: list[Comparison], backends: Sequence[str]) -> list[Table]:
    out = []
    for t in thread_settings(rows):
        idx = {(r.module, r.backend): r for r in rows if r.threads == t}
        modules = list(dict.fromkeys(r.module for r in rows))
        others = _versus_jit(backends)
        table = Table(f"latency: median ms at {shape(rows[0])}, {t} thread(s)",
                      ["module", *backends, *[f"{b} / jax-jit" for b in others]],
                      note="ratio [95% CI] over sessions; n.s. = not significant; ! = unstable lane (see flags)")  # fmt: skip
        versus = Table(f"latency: each module / PRCM per backend, {t} thread(s)", ["module", *backends])
        for m in modules:
            ratios = [find(comps, kind="backend", module=m, numerator=b, denominator="jax-jit", threads=t) for b in others]
            table.rows.append([m, *[_ms(idx.get((m, b))) for b in backends], *map(fmt_ratio, ratios)])
            versus.rows.append([m, *["baseline" if m == "PRCM" else fmt_ratio(
                find(comps, kind="module", backend=b, numerator=m, denominator="PRCM", threads=t)) for b in backends]])  # fmt: skip
        out += [table, versus]
    return out


def components(rows: list[Record], comps: list[Comparison], backends: Sequence[str]) -> list[Table]:
    out = []
    for t in thread_settings(rows):
        idx = {(r.item, r.backend): r for r in rows if r.threads == t}
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
            table.rows.append([f"{module}: whole / sum", *[fmt_ratio(find(comps, kind="parts", module=module, backend=b, threads=t))
                                                         for b in backends]])  # fmt: skip
        out.append(table)
    return out


#: The swept variable of each sweep suite, and its table's title.
SWEEPS = {"channels": ("channels", "latency vs channels (64x64, K=8)"), "resolution": ("resolution", "latency vs resolution (C=64)"),
          "num_basis": ("num_basis", "latency vs num_basis (C=64, 64x64)"), "batch": ("batch", "latency vs batch (C=64, 64x64)")}  # fmt: skip


def sweep(rows: list[Record], comps: list[Comparison], backends: Sequence[str]) -> list[Table]:
    suite = rows[0].suite
    key, title = SWEEPS[suite]
    modules = list(dict.fromkeys(r.module for r in rows))
    out = []
    for t in thread_settings(rows):
        idx = {(getattr(r, key), r.module, r.backend): r for r in rows if r.threads == t}
        table = Table(f"{suite}: {title}, {t} thread(s)", [key, "backend", *modules, "AffinePRCM / PRCM", "vs jax-jit (PRCM)"],
                      note="median ms per call; ratios [95% CI] over sessions")  # fmt: skip
        for value in sorted({getattr(r, key) for r in rows}):
            for b in backends:
                sel = dict(threads=t, **{key: value})
                affine = find(comps, kind="module", backend=b, numerator="AffinePRCM", **sel)
                jit = find(comps, kind="backend", module="PRCM", numerator=b, denominator="jax-jit", **sel)
                table.rows.append([str(value), b, *[_ms(idx.get((value, m, b))) for m in modules], fmt_ratio(affine), fmt_ratio(jit)])
        out.append(table)
    return out


def _level(r: Record) -> str:
    return r.memory_level or ""


def train(rows: list[Record], comps: list[Comparison], backends: Sequence[str]) -> list[Table]:
    out = []
    suite, workload = rows[0].suite, next(r.workload for r in rows if r.module)
    for t in thread_settings(rows):
        table = Table(f"{suite}: one training step ({STEPS[workload]}), {t} thread(s)",
                      ["input", "module", "backend", "ms", "saved MB", "of which inputs", "GB/s", "copy fraction", "memory"],
                      note=f"minimum traffic {MIN_TRAFFIC[workload]:.0f} x the input's size; copy fraction: GB/s over the copy "
                           "at the same size; memory: where the step's working set sits (a cache-resident step's copy "
                           "speed is the cache's, not DRAM's); saved_bytes per backend: see meta.saved_bytes")  # fmt: skip
        ratios = Table(f"{suite}: step time / jax-jit's, {t} thread(s)", ["input", "module", *[f"{b} / jax-jit" for b in _versus_jit(backends)]])
        for r in (r for r in rows if r.threads == t):
            frac = f"{r.copy_fraction:.0%}" if r.copy_fraction else ""
            table.rows.append([shape(r), r.item, r.backend, _ms(r), _mb(r.saved_bytes), _mb(r.saved_input_bytes),
                               f"{r.gbps:.1f}" if r.gbps else "", frac, _level(r)])  # fmt: skip
        for point, module in dict.fromkeys((_point(r), r.module) for r in rows if r.module and r.threads == t):
            b, c, res, _ = point
            cells = [fmt_ratio(find(comps, kind="backend", module=module, numerator=o, denominator="jax-jit", threads=t,
                                    batch=b, channels=c, resolution=res)) for o in _versus_jit(backends)]  # fmt: skip
            ratios.rows.append([f"({b}, {c}, {res}, {res})", module, *cells])
        out += [table, ratios]
    return out


def fusion(rows: list[Record], comps: list[Comparison], backends: Sequence[str]) -> list[Table]:
    idx = {(r.module, r.backend): r for r in rows}
    table = Table(f"fusion: kernels per call at {shape(rows[0])}", ["module", *backends],
                  note="jax-jit: XLA ENTRY kernels; jax-eager: JAX operations dispatched; torch-eager: ATen ops "
                       "dispatched (CUDA kernels on GPU); torch-compile: Inductor kernels + library calls")  # fmt: skip
    for m in dict.fromkeys(r.module for r in rows):
        cells = []
        for b in backends:
            r = idx.get((m, b))
            cells.append("" if r is None else str(r.kernels) if r.kernels is not None else r.status)
        table.rows.append([m, *cells])
    return [table]


def roofline(rows: list[Record], comps: list[Comparison], backends: Sequence[str]) -> list[Table]:
    out = []
    for t in thread_settings(rows):
        table = Table(f"roofline: achieved bandwidth against a copy of the same working set, float32, {t} thread(s)",
                      ["input", "working set MB", "memory", "what", "variant", "backend", "ms", "GB/s", "reference",
                       "fraction", "passes", "faults/call"],
                      note=f"minimum bytes: {MIN_TRAFFIC['fresh']:.0f} x size for a block alone (read x for the mean, read x and "
                           f"write y), {MIN_TRAFFIC['loop']:.2f} x per block in a chain of {LOOP} (n + 2 passes for n blocks), "
                           "copy 2 x; working set: the full-size buffers a call touches (x and y; one where jax-jit donates x); "
                           "reference: the best copy touching as many buffers at the same size and threads (copy: x into a "
                           "second buffer; copy in-place: one buffer, made afresh before each call as a donated input is); "
                           "fraction: GB/s over the reference's, a physical bound only where the working set is DRAM-resident "
                           "(memory DRAM: at least 4x the last-level cache); '!' after a fraction above 1: a cache effect or a "
                           "bug, never a result; passes: full-size reads + writes per block in the compiled code; "
                           "faults/call: " + FAULTS)  # fmt: skip
        for r in (r for r in rows if r.threads == t):
            fraction = "" if r.copy_fraction is None else f"{r.copy_fraction:.0%}" + ("!" if r.copy_fraction > 1 else "")
            table.rows.append([shape(r), _mb(r.working_set), _level(r), r.item, r.variant or "", r.backend, _ms(r),
                               f"{r.gbps:.1f}" if r.gbps else "", r.reference or "", fraction,
                               f"{r.passes:.2f}" if r.passes is not None else "", _faults(r)])  # fmt: skip
        out.append(table)
    return out


def dispatch(rows: list[Record], comps: list[Comparison], backends: Sequence[str]) -> list[Table]:
    paths = list(dict.fromkeys(r.path for r in rows))
    out = []
    for t in thread_settings(rows):
        idx = {(r.resolution, r.module, r.path): r for r in rows if r.threads == t}
        table = Table(f"dispatch: jax-jit per call by call path (median ms; ratio to compiled), {t} thread(s)",
                      ["input", "module", *paths],
                      note="compiled = jax.jit(f).lower(params, x).compile() over one nnx.split, the path jax-jit uses")  # fmt: skip
        for res, module in dict.fromkeys((r.resolution, r.module) for r in rows):
            cells = []
            for p in paths:
                c = find(comps, kind="path", module=module, numerator=p, resolution=res, threads=t)
                cells.append(_ms(idx.get((res, module, p))) + (f" ({fmt_ratio(c)})" if c else ""))
            table.rows.append([f"(1, 64, {res}, {res})", module, *cells])
        out.append(table)
    return out


def _network_rows(rows: list[Record], t: int | None) -> Iterator[tuple[str, tuple, str, str, list[Record], dict[str, Any]]]:
    """Each (network, input, step, attention) timed at thread setting ``t``: its records and the
    fields that find its comparisons."""
    for net, point, workload, module in dict.fromkeys((r.network, _point(r), r.workload, r.module) for r in rows if r.threads == t):
        sel = [r for r in rows if (r.network, _point(r), r.workload, r.module, r.threads) == (net, point, workload, module, t)]
        yield net, point, workload, module, sel, dict(network=net, workload=workload, threads=t, batch=point[0], resolution=point[2])


def network(rows: list[Record], comps: list[Comparison], backends: Sequence[str]) -> list[Table]:
    out = []
    lanes = list(dict.fromkeys((r.backend, r.layout) for r in rows))
    labels = [lane_label(*lane) for lane in lanes]
    torch_lanes = [lane for lane in lanes if lane[0] != "jax-jit"]
    for t in thread_settings(rows):
        table = Table(f"network: timm networks (torch) and their NNX twins (JAX), {t} thread(s)",
                      ["network", "input", "step", "attention", "params (torch / jax)", *labels, "overhead vs none (per backend)",
                       "time / timm's SE (per backend)",
                       *[f"{lane_label(*lane)} / jax-jit" for lane in torch_lanes], "CL / channels-first (per torch backend)",
                       f"faults/call ({' / '.join(labels)})"],
                      note="median ms per call; CL: model and input in torch.channels_last (JAX runs channels-last); "
                           "overhead = time with the block / time without it - 1, 95% CI; step: forward = inference in eval "
                           "mode, train = forward in train mode, loss sum(logits * cot), gradients to the input and every "
                           "parameter; faults/call: " + FAULTS)  # fmt: skip
        for net, point, workload, module, sel, at in _network_rows(rows, t):
            idx = {(r.backend, r.layout): r for r in sel}
            params_ = sorted({f"{r.params:,}" for r in sel if r.params})
            overhead = [f"{lane_label(*lane)}: {fmt_overhead(c)}" for lane in lanes
                        if (c := find(comps, kind="module", backend=lane[0], layout=lane[1], numerator=module, denominator="none", **at))]  # fmt: skip
            versus_se = [f"{lane_label(*lane)}: {fmt_ratio(c)}" for lane in lanes
                         if (c := find(comps, kind="module", backend=lane[0], layout=lane[1], numerator=module, denominator="se", **at))]  # fmt: skip
            ratios = [fmt_ratio(find(comps, kind="backend", module=module, numerator=b, layout=layout, denominator="jax-jit", **at))
                      for b, layout in torch_lanes]  # fmt: skip
            layout = [f"{b}: {fmt_ratio(c)}" for b in dict.fromkeys(b for b, _ in torch_lanes)
                      if (c := find(comps, kind="layout", backend=b, module=module, **at))]  # fmt: skip
            table.rows.append([net, f"({point[0]}, 3, {point[2]}, {point[2]})", workload, module, " / ".join(params_),
                               *[_ms(idx.get(lane)) for lane in lanes], "; ".join(overhead), "; ".join(versus_se), *ratios, "; ".join(layout),
                               " / ".join(_faults(idx.get(lane)) or "-" for lane in lanes)])  # fmt: skip
        out.append(table)
    return out


def block_costs(rows: list[Record], comps: list[Comparison]) -> list[Table]:
    """What each attention block costs inside a network: its parameters, its time over the same
    network without attention and over timm's SE, per backend (one table per thread setting)."""
    out = []
    lanes = list(dict.fromkeys((r.backend, r.layout) for r in rows))
    for t in thread_settings(rows):
        table = Table(f"block cost inside the networks, {t} thread(s)",
                      ["network", "input", "step", "attention", "params", *[f"{lane_label(*lane)} vs none" for lane in lanes],
                       "time / timm's SE (per backend)"],
                      note="params: the whole network with that attention (none: without any); vs none: time with the block / "
                           "time without it - 1, 95% CI over sessions; time / timm's SE: the same network with timm's "
                           "squeeze-and-excitation in the block's place; CL: torch.channels_last; forward = inference in "
                           "eval mode, train = one training step")  # fmt: skip
        for net, point, workload, module, sel, at in _network_rows(rows, t):
            versus = {den: [find(comps, kind="module", backend=b, layout=lay, numerator=module, denominator=den, **at) for b, lay in lanes]
                      for den in ("none", "se")}  # fmt: skip
            table.rows.append([net, f"({point[0]}, 3, {point[2]}, {point[2]})", workload, module,
                               " / ".join(f"{p:,}" for p in sorted({r.params for r in sel if r.params})), *map(fmt_overhead, versus["none"]),
                               "; ".join(f"{lane_label(*lane)}: {fmt_ratio(c)}" for lane, c in zip(lanes, versus["se"]) if c)])  # fmt: skip
        out.append(table)
    return out


def threads(records: list[Record], comparisons: list[Comparison], backends: Sequence[str]) -> list[Table]:
    """Each lane at fewer threads against itself at the most (latency and train)."""
    comps = [c for c in comparisons if c.kind == "threads" and c.suite in ("latency", "train") and c.workload != "op"]
    if not comps:
        return []
    table = Table("threads: time at fewer threads / time at all threads, per lane (latency and train)",
                  ["suite", "input", "module", *backends],
                  note="unpaired (the settings run in separate processes, point by point), over sessions; < 1: fewer threads is faster")  # fmt: skip
    for suite, point, module in dict.fromkeys((c.suite, _point(c), c.module) for c in comps):
        cells = []
        for b in backends:
            found = [c for c in comps if (c.suite, _point(c), c.module, c.backend) == (suite, point, module, b)]
            cells.append("; ".join(f"{c.numerator.split()[0]}: {fmt_ratio(c)}" for c in found))
        table.rows.append([suite, f"({point[0]}, {point[1]}, {point[2]}, {point[2]})", module, *cells])
    return [table]


def flags(records: list[Record], advice: str) -> list[Table]:
    """The unstable lanes, the widest first."""
    flagged = [r for r in records if r.status == "ok" and r.median_ms is not None and r.flag]
    if not flagged:
        return []
    shown = sorted(flagged, key=lambda r: -(r.spread or 0))[:FLAGS_SHOWN]
    more = f" ({len(flagged) - len(shown)} more in results.json)" if len(flagged) > len(shown) else ""
    table = Table(f"flags: {len(flagged)} unstable lane(s), the widest first{more}", ["suite", "input", "item", "backend", "threads", "flag"],
                  note="what to do: " + advice)
    for r in shown:
        what = r.item + (f" ({r.variant or r.path})" if r.variant or r.path else "")
        table.rows.append([r.suite, shape(r), what, lane_label(r.backend, r.layout), str(r.threads), r.flag])
    return [table]
