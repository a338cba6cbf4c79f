"""The benchmark's figures, from records and comparisons alone (matplotlib; no torch, no jax).
One colour per backend everywhere (a lighter one for torch's channels-last lanes) and one marker
and line style per module; facets where lines would overlap, the legend outside the data,
ratio panels drawn with their 95% interval as a band, hollow markers where not significant;
a comparison whose sessions disagree (``unstable``) is not drawn.

Each suite declares its figures (:mod:`bench.suites`); a figure function takes the output
folder, the suite's records and comparisons and the run's ``meta``, and returns the files it wrote:

* :func:`latency`: every backend against jax-jit per module at the seed point.
* :func:`sweep` (``sweep_<suite>.png``) and :func:`train` (``train.png``, ``train_batch.png``):
  per module, latency vs the swept variable over each backend / jax-jit, then AffinePRCM / PRCM
  per backend; one column per thread setting.
* :func:`fusion`: kernels per call; :func:`roofline`: fraction of the copy reference per
  working set, the last-level cache and DRAM marked.
* :func:`network`: each torch lane / jax-jit per network, step and block, and each block's cost
  inside the network.
* :func:`generic`: any suite's backend ratios; :func:`compare`: a new run against an old one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from prcm.machine import DRAM_FACTOR, last_level
from bench.schema import Comparison, Record
from bench.tables import SWEEPS, lane_label
from prcm.catalog import MODULES

__all__ = ["COLORS", "STYLES", "latency", "sweep", "train", "backward", "fusion", "roofline", "network", "generic", "compare"]

#: One colour per backend (Okabe-Ito, readable by colour-blind readers); torch's channels-last lanes a lighter one.
COLORS = {"torch-eager": "#0072B2", "torch-compile": "#E69F00", "jax-jit": "#009E73", "jax-eager": "#CC79A7",
          "torch-eager CL": "#56B4E9", "torch-compile CL": "#D55E00"}  # fmt: skip
BACKEND_COLORS = ("torch-eager", "torch-compile", "jax-jit", "jax-eager")
_MARKERS = ("o", "s", "^", "v", "D", "P", "X", "*", "h")
_LINES = ("-", "--", ":", "-.", (0, (3, 1, 1, 1, 1, 1)), (0, (1, 1)), (0, (2, 1)), (0, (5, 1, 1, 1)), (0, (1, 2)))
#: One marker and line style per module of the catalog, in its order (and the copy references).
STYLES = {
    **{m: (_MARKERS[i % len(_MARKERS)], _LINES[i % len(_LINES)]) for i, m in enumerate(MODULES)},
    "copy": ("x", (0, (4, 4))),
    "copy in-place": ("+", (0, (2, 4))),
}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _legend(backends: Sequence[str], modules: Sequence[str], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Legend entries: one colour per backend, one marker and line style per module."""
    from matplotlib.lines import Line2D

    handles = {b: Line2D([], [], color=COLORS[b], linewidth=6) for b in COLORS if b in backends}
    for m in (m for m in STYLES if m in modules):
        marker, linestyle = STYLES[m]
        handles[m] = Line2D([], [], color="black", marker=marker, linestyle=linestyle)
    return {**handles, **(extra or {})}


def _save(fig: Any, path: Path, handles: dict[str, Any]) -> Path:
    """Legend to the right of every panel, then save."""
    plt = _pyplot()
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _label(threads: int) -> str:
    return f"{threads} thread" + ("s" if threads != 1 else "")


def _log_axis(ax: Any, axis: str, fmt: Callable[[float, Any], str]) -> None:
    """A log axis ticked for the range it shows (shared with its neighbours, if any): decades
    beyond three, 1-3 beyond a decade and a half, else 1-2-5, else (fewer than two of those in
    view) evenly spaced values such as 1.2x, 1.4x: at least two labels, never crowded."""
    import numpy as np
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    getattr(ax, f"set_{axis}scale")("log")
    target = ax.yaxis if axis == "y" else ax.xaxis
    lo, hi = sorted(ax.get_ylim() if axis == "y" else ax.get_xlim())  # the view: data, margins and shared axes
    decades = float(np.log10(hi / lo))
    subs = (1.0,) if decades > 3 else (1.0, 3.0) if decades > 1.5 else (1.0, 2.0, 5.0)
    ticks = [m * 10.0**e for e in range(int(np.floor(np.log10(lo))), int(np.ceil(np.log10(hi))) + 1) for m in subs]
    if sum(lo <= t <= hi for t in ticks) >= 2:
        target.set_major_locator(LogLocator(base=10, subs=subs))
    else:
        target.set_major_locator(MaxNLocator(nbins=4, steps=[1, 2, 2.5, 5, 10]))
    target.set_major_formatter(FuncFormatter(fmt))
    target.set_minor_formatter(NullFormatter())


def _ratio_scale(ax: Any, axis: str = "y") -> None:
    """A log axis for ratios, labelled 0.5x, 1x, 2x, ... (call it after drawing)."""
    _log_axis(ax, axis, lambda v, _: f"{v:g}x")


def _ms_axis(ax: Any, label: str) -> None:
    """A log y axis of milliseconds, plainly labelled (call it after drawing)."""
    _log_axis(ax, "y", lambda v, _: f"{v:g}")
    ax.set_ylabel(label, fontsize=8)
    ax.grid(True, alpha=0.3)


def _finish(fig: Any, title: str) -> None:
    """The figure's title above its panels (never over their titles), panels packed below it."""
    height = fig.get_figheight()  # inches: the title takes the top 0.3 whatever the figure's size
    fig.suptitle(title, fontsize=10, y=1 - 0.05 / height, va="top")
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.12 / height))


def _values_axis(ax: Any, values: Sequence[float]) -> None:
    """A log x axis ticked at the swept values."""
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(sorted(set(values))))
    ax.xaxis.set_major_formatter(lambda v, _: f"{v:.3g}")
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())


def _threads(items: Sequence[Record | Comparison]) -> list[int]:
    return sorted({x.threads for x in items if x.threads is not None})


def _drawn(comps: Sequence[Comparison]) -> list[Comparison]:
    """The comparisons a figure shows: not those whose sessions disagree (no point ratio)."""
    return [c for c in comps if not c.unstable]


def _band(ax: Any, xs: list, comps: list[Comparison], color: str, style: tuple) -> None:
    """A ratio line with its CI band; hollow markers where the ratio is not significant."""
    marker, linestyle = style
    ax.plot(xs, [c.ratio for c in comps], color=color, linestyle=linestyle, marker=marker, markersize=5)
    ax.fill_between(xs, [c.ci95[0] for c in comps], [c.ci95[1] for c in comps], color=color, alpha=0.18, linewidth=0)
    weak = [(x, c.ratio) for x, c in zip(xs, comps) if not c.significant]
    if weak:
        ax.plot(*zip(*weak), linestyle="none", marker=marker, markersize=7, markerfacecolor="white", color=color)


def _ratio_axis(ax: Any, ylabel: str) -> None:
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.grid(True, alpha=0.3)


def _facets(path: Path, title: str, key: str, xlabel: str, records: list[Record], comps: list[Comparison]) -> Path | None:
    """A sweep, one column per thread setting; for each module a latency panel (one line per
    backend) over its backend / jax-jit ratios, then AffinePRCM / PRCM per backend; ratios with
    their 95% interval as a band, hollow markers where not significant."""
    plt = _pyplot()
    threads = _threads(records)
    modules = list(dict.fromkeys(r.module for r in records))
    affine = [c for c in comps if c.kind == "module" and c.numerator == "AffinePRCM" and c.denominator == "PRCM"]
    if len({getattr(r, key) for r in records}) < 2 or not threads:
        return None
    rows = [(m, kind) for m in modules for kind in ("ms", "ratio")] + ([("AffinePRCM", "module")] if affine else [])
    fig, axes = plt.subplots(len(rows), len(threads), figsize=(4.6 * len(threads), 2.1 * len(rows) + 0.6), sharex=True,
                             squeeze=False)  # fmt: skip
    along = lambda xs: sorted(xs, key=lambda x: getattr(x, key))  # noqa: E731
    for col, t in enumerate(threads):
        for row, (module, kind) in enumerate(rows):
            ax = axes[row][col]
            for backend in BACKEND_COLORS:
                if kind == "ms":
                    line = along(r for r in records if (r.module, r.backend, r.threads) == (module, backend, t))
                    marker, linestyle = STYLES[module]
                    ax.plot([getattr(r, key) for r in line], [r.median_ms for r in line], color=COLORS[backend],
                            marker=marker, linestyle=linestyle, markersize=4)  # fmt: skip
                    continue
                if kind == "module":
                    line = along(c for c in affine if c.threads == t and c.backend == backend)
                else:
                    line = along(c for c in comps if c.threads == t and c.kind == "backend" and c.module == module
                                 and c.numerator == backend and c.denominator == "jax-jit")  # fmt: skip
                if line:
                    _band(ax, [getattr(c, key) for c in line], line, COLORS[backend], STYLES[module])
            if kind == "ms":
                _ms_axis(ax, f"{module}\nmedian ms")
            else:
                _ratio_axis(ax, f"{module}\neach backend / jax-jit" if kind == "ratio" else "AffinePRCM / PRCM\nsame backend")
                _ratio_scale(ax)
            if row == 0:
                ax.set_title(_label(t))
        axes[-1][col].set_xlabel(xlabel)
        _values_axis(axes[-1][col], [getattr(r, key) for r in records])
    _finish(fig, title + "; hollow markers: not significant")
    return _save(fig, path, _legend([r.backend for r in records], modules))


def sweep(out: Path, records: list[Record], comps: list[Comparison], meta: dict[str, Any]) -> list[Path]:
    """``sweep_<suite>.png``: a sweep, one column per thread setting."""
    rows = [r for r in records if r.status == "ok" and r.median_ms is not None]
    if not rows:
        return []
    suite = rows[0].suite
    key = SWEEPS[suite][0]
    path = _facets(out / f"sweep_{suite}.png", f"{suite} sweep ({rows[0].device}): latency per module, ratios with 95% CI bands",
                   key, key, rows, _drawn(comps))  # fmt: skip
    return [path] if path else []


#: A dot plot shows ratios from the lowest / CLIP to the highest x CLIP; a wider interval is cut there.
CLIP = 10.0


def _dot_panels(comps: list[Comparison], rows: list[str], row_of: Callable[[Comparison], str], series: list[str],
                series_of: Callable[[Comparison], str], scale: Callable[[float], float], xlabel: str) -> Any:
    """One dot with its 95% interval per row and series (a colour per backend), one panel per
    thread setting; hollow where not significant."""
    plt = _pyplot()
    threads = _threads(comps)
    fig, axes = plt.subplots(1, len(threads), figsize=(4.8 * len(threads), 0.16 * len(rows) * len(series) + 1.8),
                             sharey=True, sharex=True, squeeze=False)  # fmt: skip
    step = 0.7 / max(len(series), 1)
    values = [c.ratio for c in comps] + [1.0]
    window = (min(values) / CLIP, max(values) * CLIP)  # an interval reaching beyond ends at the edge, in a triangle
    for col, t in enumerate(threads):
        ax = axes[0][col]
        for i, name in enumerate(series):
            for y, row in enumerate(rows):
                c = next((c for c in comps if row_of(c) == row and series_of(c) == name and c.threads == t), None)
                if c is None:
                    continue
                at = y + (i - (len(series) - 1) / 2) * step
                value, lo, hi = scale(c.ratio), scale(max(c.ci95[0], window[0])), scale(min(c.ci95[1], window[1]))
                ax.errorbar(value, at, xerr=[[value - lo], [hi - value]], fmt="o", color=COLORS[name],
                            markerfacecolor=COLORS[name] if c.significant else "white", capsize=2, markersize=5)  # fmt: skip
                for bound, edge, marker in ((c.ci95[0], lo, "<"), (c.ci95[1], hi, ">")):
                    if not window[0] <= bound <= window[1]:
                        ax.plot(edge, at, marker, color=COLORS[name], markersize=5)
        for y in range(len(rows) - 1):
            ax.axhline(y + 0.5, color="grey", linewidth=0.5, alpha=0.5)
        ax.axvline(scale(1.0), color="black", linewidth=0.8)
        ax.set(title=_label(t), xlabel=xlabel)
        ax.grid(True, axis="x", alpha=0.3)
        ax.set_yticks(range(len(rows)), rows, fontsize=8)
        ax.set_ylim(len(rows) - 0.5, -0.5)
    return fig, axes


def _forest(path: Path, title: str, comps: list[Comparison], label: Callable[[Comparison], str]) -> list[Path]:
    """Each backend (and torch layout) / jax-jit per row, one column per thread setting."""
    comps = [c for c in _drawn(comps) if c.kind == "backend" and c.denominator == "jax-jit" and c.workload != "op"]
    if not comps:
        return []
    name = lambda c: lane_label(c.numerator, c.layout)  # noqa: E731
    series = [b for b in COLORS if any(name(c) == b for c in comps)]
    fig, axes = _dot_panels(comps, list(dict.fromkeys(label(c) for c in comps)), label, series, name,
                            lambda r: r, "time / jax-jit's (95% CI); right of 1x: jax-jit faster")  # fmt: skip
    for ax in axes[0]:
        _ratio_scale(ax, "x")
    _finish(fig, title + "; hollow markers: not significant")
    return [_save(fig, path, {f"{b} / jax-jit": h for b, h in _legend(series, []).items()})]


def _at(c: Comparison | Record) -> str:
    return f"({c.batch}, {c.channels}, {c.resolution}, {c.resolution})"


def latency(out: Path, records: list[Record], comps: list[Comparison], meta: dict[str, Any]) -> list[Path]:
    """``latency.png``: every backend against jax-jit per module at the seed point."""
    where = _at(comps[0]) if comps else ""
    return _forest(out / "latency.png", f"latency at the seed point {where}", comps, lambda c: c.module)


def generic(out: Path, records: list[Record], comps: list[Comparison], meta: dict[str, Any]) -> list[Path]:
    """``<suite>.png``: any suite's backend ratios against jax-jit, per item and point."""
    if not comps:
        return []
    return _forest(out / f"{comps[0].suite}.png", f"{comps[0].suite}: each backend against jax-jit", comps,
                   lambda c: f"{c.module} {_at(c)}")  # fmt: skip


def train(out: Path, records: list[Record], comps: list[Comparison], meta: dict[str, Any]) -> list[Path]:
    """``train.png`` (each backend / jax-jit at every training point) and ``train_batch.png``
    (the batch sweep at 64 x 56 x 56)."""
    written = _forest(out / "train.png", "one training step (forward, loss, gradients to x and every parameter)", comps,
                      lambda c: f"{c.module} {_at(c)}")  # fmt: skip
    at = lambda x: x.resolution == 56 and x.channels == 64  # noqa: E731
    rows = [r for r in records if at(r) and r.module and r.status == "ok" and r.median_ms is not None]
    path = _facets(out / "train_batch.png", "train: one training step vs batch (64 x 56 x 56), ratios with 95% CI bands",
                   "batch", "batch (64 x 56 x 56)", rows, [c for c in _drawn(comps) if at(c)]) if rows else None  # fmt: skip
    return written + ([path] if path else [])


def backward(out: Path, records: list[Record], comps: list[Comparison], meta: dict[str, Any]) -> list[Path]:
    """``train_backward.png``: the backward pass for cot against jax-jit."""
    return _forest(out / "train_backward.png", "forward returning y, backward pass for the upstream gradient cot (no loss value)",
                   comps, lambda c: f"{c.module} {_at(c)}")  # fmt: skip


def fusion(out: Path, records: list[Record], comps: list[Comparison], meta: dict[str, Any]) -> list[Path]:
    """``fusion.png``: kernels per call, per module and backend."""
    plt = _pyplot()
    counted = [r for r in records if r.kernels is not None]
    if not counted:
        return []
    modules = list(dict.fromkeys(r.module for r in counted))
    backends = [b for b in BACKEND_COLORS if any(r.backend == b for r in counted)]
    fig, ax = plt.subplots(figsize=(8, 3.8))
    width = 0.8 / len(backends)
    handles = {}
    for i, backend in enumerate(backends):
        counts = {r.module: r.kernels for r in counted if r.backend == backend}
        handles[backend] = ax.bar([m + i * width for m in range(len(modules))], [counts.get(m, 0) for m in modules], width,
                                  color=COLORS[backend])  # fmt: skip
    ax.set_xticks([m + width * (len(backends) - 1) / 2 for m in range(len(modules))], modules, rotation=20, fontsize=8)
    ax.set(ylabel="kernels (or operations) per call", title=f"fusion: what one call launches at {_at(counted[0])}")
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    return [_save(fig, out / "fusion.png", handles)]


def roofline(out: Path, records: list[Record], comps: list[Comparison], meta: dict[str, Any]) -> list[Path]:
    """``roofline.png``: each lane's fraction of its copy reference against its working set, a
    panel per variant and thread setting; the last-level cache and the DRAM-resident range
    (from :data:`~prcm.machine.DRAM_FACTOR` x it) marked, a fraction above 1 drawn red."""
    plt = _pyplot()
    roof = [r for r in records if r.status == "ok" and r.copy_fraction is not None and r.module and r.working_set]
    if not roof:
        return []
    threads = _threads(roof)
    variants = [v for v in ("fresh", "loop", "donated") if any(r.variant == v for r in roof)]
    fig, axes = plt.subplots(len(threads), len(variants), figsize=(4.2 * len(variants), 3.3 * len(threads)), sharey=True,
                             sharex=True, squeeze=False)  # fmt: skip
    sizes = [r.working_set / 1e6 for r in roof]
    llc = last_level((meta.get("machine") or {}).get("caches") or [])
    top = max(1.1, max(r.copy_fraction for r in roof) * 1.05)
    for row, t in enumerate(threads):
        for col, variant in enumerate(variants):
            ax = axes[row][col]
            if llc:
                ax.axvline(llc["bytes"] / 1e6, color="grey", linestyle=":", linewidth=1)
                ax.axvspan(DRAM_FACTOR * llc["bytes"] / 1e6, max(sizes) * 2, color="grey", alpha=0.12, linewidth=0)
            for module, backend in dict.fromkeys((r.module, r.backend) for r in roof if r.threads == t):
                line = sorted((r for r in roof if (r.module, r.backend, r.threads, r.variant) == (module, backend, t, variant)),
                              key=lambda r: r.working_set)  # fmt: skip
                if line:
                    marker, linestyle = STYLES[module]
                    dodge = 1.06 ** (BACKEND_COLORS.index(backend) - 1.5)  # side by side at one size
                    xs = [r.working_set / 1e6 * dodge for r in line]
                    ax.plot(xs, [r.copy_fraction for r in line], color=COLORS[backend], marker=marker, linestyle=linestyle,
                            markersize=6)  # fmt: skip
                    over = [(x, r.copy_fraction) for x, r in zip(xs, line) if r.copy_fraction > 1]
                    if over:
                        ax.plot(*zip(*over), linestyle="none", marker="o", markersize=11, markerfacecolor="none", color="red")
            ax.axhline(1.0, color="black", linewidth=0.8)
            ax.set(title=f"{variant}, {_label(t)}", ylim=(0, top))
            ax.yaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
            ax.grid(True, alpha=0.3)
            _values_axis(ax, sizes)
            if col == 0:
                ax.set_ylabel("fraction of the copy touching\nthe same buffers (min. traffic)", fontsize=8)
            if row == len(threads) - 1:
                ax.set_xlabel("working set (MB)")
    where = f"dotted: last-level cache ({llc['bytes'] / 2**20:.0f} MiB); shaded: DRAM-resident (>= {DRAM_FACTOR}x it); " if llc else ""
    _finish(fig, f"roofline: achieved bandwidth / a copy touching the same buffers\n{where}red ring: above 1 (a cache effect, not a result)")
    return [_save(fig, out / "roofline.png", _legend([r.backend for r in roof], [r.module for r in roof]))]


def _overhead(path: Path, comps: list[Comparison]) -> list[Path]:
    """Each attention block's cost inside a network: time with it / time without it - 1, per torch lane and jax-jit."""
    comps = _drawn(comps)
    if not comps:
        return []
    label = lambda c: f"{c.network} {c.workload} {c.numerator} ({c.batch}, 3, {c.resolution}, {c.resolution})"  # noqa: E731
    name = lambda c: lane_label(c.backend, c.layout)  # noqa: E731
    series = [b for b in COLORS if any(name(c) == b for c in comps)]
    fig, _ = _dot_panels(comps, list(dict.fromkeys(label(c) for c in comps)), label, series, name,
                         lambda r: (r - 1) * 100, "time with the block / without, - 1 (%, 95% CI)")  # fmt: skip
    _finish(fig, "what an attention block costs inside a network; hollow markers: not significant")
    return [_save(fig, path, _legend(series, []))]


def network(out: Path, records: list[Record], comps: list[Comparison], meta: dict[str, Any]) -> list[Path]:
    """``network.png`` (each torch lane, in each layout, / jax-jit) and ``network_overhead.png``."""
    label = lambda c: f"{c.network} {c.workload} {c.module} ({c.batch}, 3, {c.resolution}, {c.resolution})"  # noqa: E731
    return (_forest(out / "network.png", "timm networks against their NNX twins (CL: torch channels-last)", comps, label)
            + _overhead(out / "network_overhead.png", [c for c in comps if c.kind == "module"]))


def compare(path: Path, comps: list[Comparison], title: str) -> list[Path]:
    """Every shared lane's NEW / OLD with its 95% interval, sorted: green where the new run is
    faster, red where slower, grey where not significant (hollow), on a log axis."""
    plt = _pyplot()
    shown = sorted(_drawn(comps), key=lambda c: c.ratio)
    if not shown:
        return []
    fig, ax = plt.subplots(figsize=(9, 3.8))
    colour = lambda c: "grey" if not c.significant else "#009E73" if c.ratio < 1 else "#D55E00"  # noqa: E731
    for i, c in enumerate(shown):
        ax.plot([i, i], c.ci95, color=colour(c), linewidth=1, alpha=0.6)
        ax.plot(i, c.ratio, "o", markersize=3, color=colour(c), markerfacecolor=colour(c) if c.significant else "white")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set(xlabel=f"shared lanes, sorted by new / old ({len(shown)})", ylabel="new time / old time (95% CI)")
    ax.set_ylim(max(min(c.ci95[0] for c in shown) * 0.9, 1e-3), min(max(c.ci95[1] for c in shown) * 1.1, 1e3))
    _ratio_scale(ax)
    ax.grid(True, alpha=0.3)
    _finish(fig, title)
    from matplotlib.lines import Line2D

    handles = {label: Line2D([], [], color=c, marker="o", linestyle="none", markerfacecolor=f)
               for label, c, f in (("new faster", "#009E73", "#009E73"), ("new slower", "#D55E00", "#D55E00"),
                                   ("not significant", "grey", "white"))}  # fmt: skip
    return [_save(fig, path, handles)]
