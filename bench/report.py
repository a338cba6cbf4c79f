"""Tables, findings, plots and files from the benchmark's records.

Every number in the report is computed from the records of the run; nothing is canned.
"""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.suites import COMPONENTS, LOOP, Record

__all__ = ["Table", "tables", "findings", "write_results", "write_report", "write_plots", "copy_fractions"]

SWEEPS = {"channels": "channels", "resolution": "resolution", "num_basis": "num_basis", "batch": "batch"}
SUM_OF_PARTS = {  # the seed's components each module is built from
    "PRCM": ("Global Avg Pool", "Basis Projection", "Linear", "Sigmoid", "Unsqueeze x2", "Scale (x*alpha)"),
    "AffinePRCM": ("Global Avg Pool", "Basis Projection", "Linear", "Linear", "Sigmoid", "Unsqueeze x2",
                   "Unsqueeze x2", "Affine (x*alpha+beta)"),
}  # fmt: skip


@dataclass
class Table:
    """A rendered-agnostic table."""

    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    note: str = ""


def _ms(r: Record | None) -> str:
    if r is None:
        return ""
    if r.status != "ok":
        return r.status
    return f"{r.median_ms:.4f}" if r.median_ms is not None else ""


def _ok(records: Iterable[Record]) -> list[Record]:
    return [r for r in records if r.status == "ok" and r.median_ms is not None]


def _ratio(a: Record | None, b: Record | None) -> float | None:
    if a and b and a.status == b.status == "ok" and a.median_ms and b.median_ms:
        return a.median_ms / b.median_ms
    return None


def _ratios(a: Record | None, b: Record | None) -> tuple[float, float] | None:
    """a / b on medians and on p10s, when both were measured."""
    ratio = _ratio(a, b)
    return None if ratio is None else (ratio, a.p10_ms / b.p10_ms)


def _fmt_ratio(value: float | None, suffix: str = "x") -> str:
    return "" if value is None else f"{value:.2f}{suffix}"


def copy_fractions(records: list[Record]) -> dict[str, float]:
    """Set ``copy_fraction`` on every roofline record: its GB/s over the best copy (read + write)
    measured in this run at the same size, so cache-sized and memory-sized tensors each meet
    their own roofline. Returns the copy bandwidth in GB/s by input shape."""
    def size(r: Record) -> tuple:
        return (r.batch, r.channels, r.resolution)

    best: dict[tuple, float] = {}
    for r in records:
        if r.suite == "roofline" and r.op == "copy" and r.gbps:
            best[size(r)] = max(best.get(size(r), 0.0), r.gbps)
    for r in records:
        if r.suite == "roofline" and r.gbps and size(r) in best:
            r.copy_fraction = r.gbps / best[size(r)]
    return {f"{(b, c, res, res)}": gbps for (b, c, res), gbps in best.items()}


def tables(records: list[Record], backends: Sequence[str]) -> list[Table]:
    """One or more tables per suite present in ``records``."""
    out = []
    suites = list(dict.fromkeys(r.suite for r in records))
    for suite in suites:
        rows = [r for r in records if r.suite == suite]
        out.extend(_BUILDERS[suite](rows, backends) if suite in _BUILDERS else [])
    return out


def _params(rows: list[Record], backends: Sequence[str]) -> list[Table]:
    totals = {(r.module, r.backend): r.params for r in rows if r.parameter is None}
    modules = list(dict.fromkeys(r.module for r in rows))
    torch_b = next((b for b in backends if b.startswith("torch")), None)
    table = Table("params: parameter count (C=64, K=8)", ["module", "torch", "jax", "extra vs PRCM"])
    base = totals.get(("PRCM", torch_b)) or totals.get(("PRCM", "jax-jit"))
    for m in modules:
        t, j = totals.get((m, torch_b)), totals.get((m, "jax-jit"))
        n = t if t is not None else j
        extra = "baseline" if m == "PRCM" else (f"{n - base:+,}" if n is not None and base is not None else "")
        table.rows.append([m, f"{t:,}" if t is not None else "", f"{j:,}" if j is not None else "", extra])
    breakdown = Table("params: breakdown", ["module", "parameter", "count"])
    seen = set()
    for r in rows:
        if r.parameter and (r.module, r.parameter) not in seen and r.backend == (torch_b or "jax-jit"):
            seen.add((r.module, r.parameter))
            breakdown.rows.append([r.module, r.parameter, f"{r.params:,}"])
    return [table, breakdown]


def _latency(rows: list[Record], backends: Sequence[str]) -> list[Table]:
    idx = {(r.module, r.backend): r for r in rows}
    modules = list(dict.fromkeys(r.module for r in rows))
    others = [b for b in backends if b != "jax-jit"] if "jax-jit" in backends else []
    table = Table("latency: median ms at (1, 64, 64, 64)", ["module", *backends, *[f"{b} / jax-jit" for b in others]],
                  note="p10-p90 spreads are in results.json")  # fmt: skip
    versus = Table("latency: each module vs PRCM, per backend", ["module", *backends])
    for m in modules:
        ratios = [_ratio(idx.get((m, b)), idx.get((m, "jax-jit"))) for b in others]
        table.rows.append([m, *[_ms(idx.get((m, b))) for b in backends], *map(_fmt_ratio, ratios)])
        versus.rows.append([m, *[
            "baseline" if m == "PRCM" else _fmt_ratio(None if r is None else (r - 1) * 100, "%")
            for r in (_ratio(idx.get((m, b)), idx.get(("PRCM", b))) for b in backends)
        ]])  # fmt: skip
    return [table, versus]


def _components(rows: list[Record], backends: Sequence[str]) -> list[Table]:
    idx = {(r.op or r.module, r.backend): r for r in rows}
    table = Table("components: median ms of each operation alone, and of the whole module", ["operation"] + list(backends))
    for op in COMPONENTS:
        table.rows.append([op] + [_ms(idx.get((op, b))) for b in backends])
    for module, parts in SUM_OF_PARTS.items():
        sums, wholes = [], []
        for b in backends:
            part = [idx.get((p, b)) for p in parts]
            ok = all(p is not None and p.status == "ok" for p in part)
            sums.append(f"{sum(p.median_ms for p in part):.4f}" if ok else "")
            wholes.append(idx.get((module, b)))
        table.rows.append([f"{module}: sum of parts"] + sums)
        table.rows.append([f"{module}: whole module"] + [_ms(w) for w in wholes])
        table.rows.append([f"{module}: whole / sum"] + [
            _fmt_ratio(w.median_ms / float(s)) if w is not None and w.status == "ok" and s else ""
            for w, s in zip(wholes, sums)
        ])  # fmt: skip
    return [table]


def _sweep(rows: list[Record], backends: Sequence[str], key: str) -> list[Table]:
    modules = list(dict.fromkeys(r.module for r in rows))
    idx = {(getattr(r, key), r.module, r.backend): r for r in rows}
    title = {"channels": "channels: latency vs channels (64x64, K=8)", "resolution": "resolution: latency vs resolution (C=64)",
             "num_basis": "num_basis: latency vs num_basis (C=64, 64x64)", "batch": "batch: latency vs batch (C=64, 64x64)"}[key]  # fmt: skip
    table = Table(title, [key, "backend", *modules, "Affine/PRCM", "overhead ms"],
                  note="median ms per call; overhead = AffinePRCM - PRCM")  # fmt: skip
    for value in sorted({getattr(r, key) for r in rows}):
        for b in backends:
            a, p = idx.get((value, "AffinePRCM", b)), idx.get((value, "PRCM", b))
            ratio = _ratio(a, p)
            table.rows.append([str(value), b, *[_ms(idx.get((value, m, b))) for m in modules], _fmt_ratio(ratio),
                               f"{a.median_ms - p.median_ms:+.4f}" if ratio is not None else ""])  # fmt: skip
    return [table]


def _fusion(rows: list[Record], backends: Sequence[str]) -> list[Table]:
    idx = {(r.module, r.backend): r for r in rows}
    table = Table("fusion: kernels per call at (1, 64, 64, 64)", ["module"] + list(backends),
                  note="jax-jit: XLA ENTRY kernels; torch-eager: ATen ops dispatched (CUDA kernels on GPU); "
                       "torch-compile: Inductor kernels + library calls")  # fmt: skip
    for m in dict.fromkeys(r.module for r in rows):
        table.rows.append([m] + [
            str(idx[(m, b)].kernels) if (m, b) in idx and idx[(m, b)].kernels is not None else (idx[(m, b)].status if (m, b) in idx else "")
            for b in backends
        ])  # fmt: skip
    return [table]


def _roofline(rows: list[Record], backends: Sequence[str]) -> list[Table]:
    table = Table("roofline: the seed point and (1..16, 64, 256, 256), float32",
                  ["batch", "MB", "what", "variant", "backend", "ms", "GB/s", "copy fraction"],
                  note="minimum bytes: read x for the mean, read x and write y for the scale (3 x size); copy fraction: "
                       "GB/s over the best copy at the same size; copy: read + "
                       "write; fresh = new output each call; donated = input buffer reused for the output (jax-jit); "
                       f"loop = module applied {LOOP}x in one call, per application (jax-jit: input donated)")  # fmt: skip
    for r in rows:
        mb = f"{r.batch * r.channels * r.resolution**2 * 4 / 1e6:.0f}"
        gbps = f"{r.gbps:.1f}" if r.gbps else ""
        frac = f"{r.copy_fraction:.0%}" if r.copy_fraction else ""
        table.rows.append([str(r.batch), mb, r.module or r.op, r.variant or "", r.backend, _ms(r), gbps, frac])
    return [table]


def _dispatch(rows: list[Record], backends: Sequence[str]) -> list[Table]:
    paths = list(dict.fromkeys(r.path for r in rows))
    idx = {(r.resolution, r.module, r.path): r for r in rows}
    table = Table("dispatch: jax-jit per call by call path (median ms)", ["input", "module"] + paths,
                  note="compiled = jax.jit(f).lower(state, x).compile() over one nnx.split, the path jax-jit uses")  # fmt: skip
    for res, module in dict.fromkeys((r.resolution, r.module) for r in rows):
        table.rows.append([f"(1, 64, {res}, {res})", module] + [_ms(idx.get((res, module, p))) for p in paths])
    return [table]


_BUILDERS = {
    "params": _params, "latency": _latency, "components": _components, "fusion": _fusion, "roofline": _roofline,
    "dispatch": _dispatch, **{s: (lambda rows, backends, key=k: _sweep(rows, backends, key)) for s, k in SWEEPS.items()},
}  # fmt: skip


def findings(records: list[Record], copy_gbps: dict[str, float]) -> list[str]:
    """Sentences computed from the records."""
    out = []
    ok = _ok(records)
    seed = {(r.module, r.backend): r for r in ok if r.suite == "latency"}
    for other in ("torch-eager", "torch-compile"):
        ratios = {m: _ratios(seed.get((m, other)), seed.get((m, "jax-jit"))) for m, _ in seed}
        ratios = {m: r for m, r in ratios.items() if r}
        if ratios:
            lo, hi = min(ratios, key=ratios.get), max(ratios, key=ratios.get)
            p10 = [r[1] for r in ratios.values()]
            out.append(f"At the seed point {other} / jax-jit = {ratios[lo][0]:.2f}x ({lo}) to {ratios[hi][0]:.2f}x ({hi}) "
                       f"on medians; {min(p10):.2f}x to {max(p10):.2f}x on p10 (the least disturbed calls).")  # fmt: skip
    for backend in dict.fromkeys(r.backend for r in ok):
        ratios = []
        for suite in ("latency", *SWEEPS):
            idx = {(r.module, r.batch, r.channels, r.resolution, r.num_basis): r for r in ok if r.suite == suite and r.backend == backend}
            ratios += [_ratios(rec, idx.get(("PRCM", *cfg))) for (m, *cfg), rec in idx.items() if m == "AffinePRCM"]
        ratios = [r for r in ratios if r]
        if ratios:
            med, p10 = [r[0] for r in ratios], [r[1] for r in ratios]
            out.append(f"{backend}: AffinePRCM / PRCM = {min(med):.2f}x to {max(med):.2f}x over {len(ratios)} point(s) "
                       f"(median {statistics.median(med):.2f}x); on p10 {min(p10):.2f}x to {max(p10):.2f}x.")  # fmt: skip
    comps = {(r.op or r.module, r.backend): r for r in ok if r.suite == "components"}
    for backend in dict.fromkeys(b for _, b in comps):
        parts = [comps.get((p, backend)) for p in SUM_OF_PARTS["AffinePRCM"]]
        whole = comps.get(("AffinePRCM", backend))
        if whole and all(parts):
            total = sum(p.median_ms for p in parts)
            out.append(f"{backend}: AffinePRCM costs {whole.median_ms / total:.2f}x the sum of its {len(parts)} parts "
                       f"({whole.median_ms:.4f} vs {total:.4f} ms).")  # fmt: skip
    kernels = {(r.module, r.backend): r.kernels for r in records if r.suite == "fusion" and r.kernels is not None}
    for backend in dict.fromkeys(b for _, b in kernels):
        counts = [k for (m, b), k in kernels.items() if b == backend]
        out.append(f"{backend}: {min(counts)} to {max(counts)} kernels per call across the six modules.")
    roof = [r for r in ok if r.suite == "roofline" and r.module and r.copy_fraction and r.bytes >= 3 * 64e6]
    if copy_gbps:
        sizes = ", ".join(f"{gbps:.1f} GB/s at {mb}" for mb, gbps in copy_gbps.items())
        out.append(f"Copy bandwidth (read + write, best of torch out= and JAX donated) measured in this run: {sizes}.")
    for backend in dict.fromkeys(r.backend for r in roof):
        for variant in dict.fromkeys(r.variant for r in roof if r.backend == backend):
            best = max((r for r in roof if r.backend == backend and r.variant == variant), key=lambda r: r.copy_fraction)
            out.append(f"{backend} ({variant}, tensors >= 64 MB): best {best.copy_fraction:.0%} of copy bandwidth, "
                       f"{best.gbps:.1f} GB/s ({best.module}, batch {best.batch}).")  # fmt: skip
    disp = {(r.resolution, r.module, r.path): r for r in ok if r.suite == "dispatch"}
    for (res, module, path), r in disp.items():
        base = disp.get((res, module, "compiled"))
        if path == "nnx.jit" and base:
            out.append(f"nnx.jit adds {r.median_ms - base.median_ms:.3f} ms per call over the compiled split-state path "
                       f"({module}, resolution {res}: {r.median_ms:.3f} vs {base.median_ms:.3f} ms).")  # fmt: skip
    bad = [r for r in records if r.status not in ("ok",)]
    if bad:
        reasons = sorted({f"{r.backend}: {r.status} ({r.reason})" for r in bad})
        out.append("Not measured: " + "; ".join(reasons[:6]) + (" ..." if len(reasons) > 6 else ""))
    return out


def write_results(path: Path, meta: dict[str, Any], records: list[Record]) -> None:
    """``results.json``: ``{"meta": ..., "records": [...]}``, written atomically."""
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"meta": meta, "records": [r.as_dict() for r in records]}, indent=1, default=str))
    os.replace(tmp, path)


def _markdown(table: Table) -> str:
    lines = [f"### {table.title}", "", "| " + " | ".join(table.headers) + " |", "|" + "---|" * len(table.headers)]
    lines += ["| " + " | ".join(row) + " |" for row in table.rows]
    if table.note:
        lines += ["", f"_{table.note}_"]
    return "\n".join(lines)


def write_report(path: Path, meta: dict[str, Any], records: list[Record], backends: Sequence[str], found: list[str]) -> None:
    """``report.md``: the findings, then every table."""
    header = [
        "# prcm benchmark", "",
        f"Device: {meta.get('device')} ({meta.get('device_kind')}); threads: {meta['threads']['requested']} "
        f"(torch {meta['threads']['torch']}, CPUs {meta['threads']['cpu_affinity']}); "
        f"JAX CPU dispatch {'asynchronous' if meta.get('jax_cpu_async_dispatch') else 'synchronous'}; "
        f"torch {meta['versions'].get('torch')}, jax {meta['versions'].get('jax')}, flax {meta['versions'].get('flax')}; "
        f"{meta.get('precision')}; {'quick' if meta['settings'].get('quick') else 'full'} run"
        + ("; INTERRUPTED, partial results" if meta.get("interrupted") else "") + ".",
        "", "## Findings", "", *[f"- {f}" for f in found], "", "## Tables", "",
    ]  # fmt: skip
    body = "\n\n".join(_markdown(t) for t in tables(records, backends))
    plots = sorted(p.name for p in path.parent.glob("*.png"))
    tail = ["", "## Plots", "", *[f"![{p}]({p})" for p in plots]] if plots else []
    path.write_text("\n".join(header) + body + "\n" + "\n".join(tail) + "\n")


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_plots(out: Path, records: list[Record]) -> list[Path]:
    """One PNG per sweep (latency vs the swept variable, a line per module x backend, p10-p90 band),
    a fusion chart and a roofline chart."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    ok = _ok(records)
    for suite, key in SWEEPS.items():
        rows = [r for r in ok if r.suite == suite]
        if not rows:
            continue
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for module, backend in dict.fromkeys((r.module, r.backend) for r in rows):
            line = sorted((r for r in rows if r.module == module and r.backend == backend), key=lambda r: getattr(r, key))
            xs = [getattr(r, key) for r in line]
            ax.plot(xs, [r.median_ms for r in line], marker="o", label=f"{module} / {backend}")
            ax.fill_between(xs, [r.p10_ms for r in line], [r.p90_ms for r in line], alpha=0.2)
        ax.set(xlabel=key, ylabel="latency per call (ms)", yscale="log", title=f"{suite} sweep ({rows[0].device})")
        ax.legend(fontsize=7)
        written.append(_save(fig, out / f"sweep_{suite}.png"))
    fusion = [r for r in records if r.suite == "fusion" and r.kernels is not None]
    if fusion:
        modules = list(dict.fromkeys(r.module for r in fusion))
        backends = list(dict.fromkeys(r.backend for r in fusion))
        fig, ax = plt.subplots(figsize=(8, 4))
        width = 0.8 / len(backends)
        for i, backend in enumerate(backends):
            counts = {r.module: r.kernels for r in fusion if r.backend == backend}
            ax.bar([m + i * width for m in range(len(modules))], [counts.get(m, 0) for m in modules], width, label=backend)
        ax.set_xticks([m + width * (len(backends) - 1) / 2 for m in range(len(modules))], modules, rotation=20, fontsize=8)
        ax.set(ylabel="kernels per call", title="fusion: kernels launched per call")
        ax.legend()
        written.append(_save(fig, out / "fusion.png"))
    roof = [r for r in ok if r.suite == "roofline" and r.gbps]
    if roof:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for label in dict.fromkeys((r.module or r.op, r.backend, r.variant) for r in roof):
            line = sorted((r for r in roof if (r.module or r.op, r.backend, r.variant) == label), key=lambda r: r.batch)
            ax.plot([r.bytes / 1e6 for r in line], [r.gbps for r in line], marker="o", label=" / ".join(filter(None, label)))
        ax.set(xlabel="minimum MB moved per application", ylabel="GB/s", xscale="log", title="roofline")
        ax.legend(fontsize=6)
        written.append(_save(fig, out / "roofline.png"))
    return written
