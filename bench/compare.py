"""Two saved runs side by side (``python -m bench compare OLD NEW``), as pyperf's
``compare_to`` and asv's ``compare`` do: every lane both timed, NEW / OLD with a 95% interval
over both runs' sessions and rounds (:func:`bench.stats.unpaired_ratio`), significance
decided over all of them at once (:func:`bench.analysis.adjust`), a one-line summary and a
figure. What differs between the runs (machine, versions, device, commit, settings) is stated
first. Imports neither torch nor jax.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench import stats
from bench.analysis import adjust
from bench.report import machine_line, markdown, run_line
from bench.schema import Comparison, Record, Results
from bench.tables import Table, fmt_ratio, lane_label, shape

__all__ = ["Compared", "Agreement", "compare", "agreement", "differences", "summary", "write"]

#: What identifies a comparison across runs.
_RATIO_KEY = ("suite", "kind", "module", "backend", "numerator", "denominator", "batch", "channels", "resolution", "num_basis",
              "threads", "workload", "variant", "network", "layout")  # fmt: skip
#: What identifies a lane across runs.
_KEY = ("suite", "module", "op", "network", "workload", "variant", "layout", "path", "backend", "threads", "batch", "channels",
        "resolution", "num_basis")  # fmt: skip


@dataclass
class Compared:
    """The comparison of two runs: one ``run`` comparison per shared lane (adjusted together),
    the records behind each, what differs between the runs, and lanes that could not be compared."""

    old: Results
    new: Results
    comparisons: list[Comparison] = field(default_factory=list)
    pairs: list[tuple[Record, Record]] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    agreement: Agreement | None = None


@dataclass
class Agreement:
    """How two runs' own comparisons (each run's report, adjusted over that report) agree.

    Attributes:
      shared: comparisons both runs made (same ratio, item, point and thread setting).
      overlap: of those stable in both, how many have overlapping 95% intervals.
      opposite: significant in both runs, with opposite winners.
      unstable: unstable (sessions disagree) in either run.
      disjoint: the comparisons whose intervals do not overlap, as ``(old, new)``.
    """

    shared: int = 0
    overlap: int = 0
    opposite: int = 0
    unstable: int = 0
    disjoint: list[tuple[Comparison, Comparison]] = field(default_factory=list)

    def __str__(self) -> str:
        stable = self.shared - self.unstable
        share = f" ({self.overlap / stable:.1%})" if stable else ""
        return (f"the runs' own reports share {self.shared} comparisons: intervals overlap at {self.overlap} of the {stable} "
                f"stable in both{share}, {self.unstable} unstable in either run, {self.opposite} significant in opposite directions")  # fmt: skip


def agreement(old: Results, new: Results) -> Agreement:
    """Compare the comparisons each run reported (after each report's own adjustment): as
    issue 23 asks of two back-to-back runs, their intervals should overlap and no ratio should
    be significant in opposite directions.

    Examples:
        >>> agreement(Results(), Results()).shared
        0
    """
    key = lambda c: tuple(getattr(c, k) for k in _RATIO_KEY)  # noqa: E731
    before = {key(c): c for c in adjust(old.comparisons)}
    found = Agreement()
    for c in adjust(new.comparisons):
        if (o := before.get(key(c))) is None:
            continue
        found.shared += 1
        if o.unstable or c.unstable:
            found.unstable += 1
            continue
        if o.ci95[0] <= c.ci95[1] and c.ci95[0] <= o.ci95[1]:
            found.overlap += 1
        else:
            found.disjoint.append((o, c))
        found.opposite += o.significant and c.significant and (o.ratio > 1) != (c.ratio > 1)
    return found


def _key(r: Record) -> tuple:
    return tuple(getattr(r, k) for k in _KEY)


def _timed(r: Record) -> bool:
    return r.status == "ok" and bool(r.round_ms) and r.threads is not None


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between two runs' ``meta``: machine, device, versions, commit, settings.

    Examples:
        >>> differences({"versions": {"jax": "0.9"}, "device": "cpu"}, {"versions": {"jax": "0.10"}, "device": "cpu"})
        ['versions differ: jax 0.9 -> 0.10']
    """
    out = []
    if machine_line(old) != machine_line(new):
        out.append(f"machines differ: {machine_line(old)} -> {machine_line(new)}")
    if (old.get("device"), old.get("device_kind")) != (new.get("device"), new.get("device_kind")):
        out.append(f"devices differ: {old.get('device')} ({old.get('device_kind')}) -> {new.get('device')} ({new.get('device_kind')})")
    ov, nv = old.get("versions") or {}, new.get("versions") or {}
    if changed := [f"{k} {ov.get(k)} -> {nv.get(k)}" for k in dict.fromkeys([*ov, *nv]) if ov.get(k) != nv.get(k)]:
        out.append("versions differ: " + ", ".join(changed))
    oc, nc = (old.get("commit") or {}).get("hash"), (new.get("commit") or {}).get("hash")
    if oc != nc:
        out.append(f"commits differ: {(oc or 'unknown')[:10]} -> {(nc or 'unknown')[:10]}")
    os_, ns = old.get("settings") or {}, new.get("settings") or {}
    if os_.get("quick") != ns.get("quick"):
        out.append(f"run kinds differ: {'quick' if os_.get('quick') else 'full'} -> {'quick' if ns.get('quick') else 'full'}")
    return out


def compare(old: Results, new: Results) -> Compared:
    """NEW / OLD for every lane timed in both runs (same suite, item, variant, layout, backend,
    thread setting and point), unpaired over each run's sessions and rounds."""
    result = Compared(old, new, differences=differences(old.meta, new.meta))
    before = {_key(r): r for r in old.records if _timed(r)}
    raw = []
    for r in new.records:
        if not _timed(r) or (o := before.get(_key(r))) is None:
            continue
        ratio = stats.unpaired_ratio(np.asarray(r.round_ms)[:, None], np.asarray(o.round_ms)[:, None],
                                     sessions_a=np.asarray(r.round_sessions), sessions_b=np.asarray(o.round_sessions))  # fmt: skip
        raw.append(Comparison.from_ratio(ratio, suite=r.suite, kind="run", module=r.item, backend=r.backend, numerator="new",
                                         denominator="old", batch=r.batch, channels=r.channels, resolution=r.resolution,
                                         num_basis=r.num_basis, threads=r.threads, workload=r.workload, variant=r.variant,
                                         network=r.network, layout=r.layout, paired=False))  # fmt: skip
        result.pairs.append((o, r))
    result.comparisons = adjust(raw)
    result.agreement = agreement(old, new)
    untimed = [r for r in (*old.records, *new.records) if r.status == "ok" and r.median_ms is not None and not r.round_ms]
    if untimed:
        result.skipped.append(f"{len(untimed)} timed lanes hold no per-round timings (written by an earlier bench, schema "
                              f"{min(old.version, new.version)}): no interval can be formed for them")  # fmt: skip
    return result


def summary(compared: Compared) -> str:
    """One line: how many shared lanes the new run is faster and slower at, and where the data
    cannot tell; the geometric mean of the ratios (descriptive only).

    Examples:
        >>> c = Compared(Results(), Results())
        >>> summary(c)
        'no lane was timed in both runs'
    """
    comps = compared.comparisons
    if not comps:
        return "no lane was timed in both runs"
    unstable = sum(bool(c.unstable) for c in comps)
    faster = sum(c.significant and c.ratio < 1 and not c.unstable for c in comps)
    slower = sum(c.significant and c.ratio > 1 and not c.unstable for c in comps)
    stable = [c.ratio for c in comps if not c.unstable]
    mean = math.exp(sum(map(math.log, stable)) / len(stable)) if stable else math.nan
    return (f"{len(comps)} shared lanes: new faster at {faster}, slower at {slower}, not significant at "
            f"{len(comps) - faster - slower - unstable}" + (f", unstable at {unstable}" if unstable else "")
            + f" (Benjamini-Hochberg at {stats.FDR:.0%}: up to {stats.FDR * (faster + slower):.1f} of the {faster + slower} "
            "significant expected false)"
            + f"; geometric mean of new / old {mean:.3f}x (descriptive: the lanes share machines and moments)")  # fmt: skip


def _table(compared: Compared, only_significant: bool) -> Table:
    table = Table("new / old per shared lane" + (", significant only" if only_significant else ""),
                  ["suite", "item", "variant", "backend", "threads", "input", "old ms", "new ms", "new / old (95% CI)"],
                  note="unpaired over both runs' sessions and rounds; < 1: the new run is faster")  # fmt: skip
    rows = sorted(zip(compared.comparisons, compared.pairs), key=lambda cp: (bool(cp[0].unstable), cp[0].ratio))
    for c, (o, n) in rows:
        if only_significant and not c.significant:
            continue
        table.rows.append([c.suite, c.module or "", c.variant or c.workload or "", lane_label(c.backend, c.layout), str(c.threads),
                           shape(c), f"{o.median_ms:.4f}", f"{n.median_ms:.4f}", fmt_ratio(c)])  # fmt: skip
    return table


def markdown_of(compared: Compared, figures: list[Path] = ()) -> str:
    """``compare.md``: the summary, what differs, then every shared lane."""
    lines = ["# prcm benchmark: compare", "", summary(compared), "",
             f"- old: {run_line(compared.old.meta)}; {machine_line(compared.old.meta)}",
             f"- new: {run_line(compared.new.meta)}; {machine_line(compared.new.meta)}",
             *[f"- {d}" for d in compared.differences or ["same machine, device, versions and commit"]],
             *[f"- {s}" for s in compared.skipped], *_agreement_lines(compared), "", markdown(_table(compared, False)), ""]  # fmt: skip
    lines += [f"![{Path(f).name}]({Path(f).name})" for f in figures]
    return "\n".join(lines) + "\n"


def _agreement_lines(compared: Compared) -> list[str]:
    """The agreement of the runs' own comparisons, and the ones whose intervals do not overlap."""
    found = compared.agreement
    if found is None or not found.shared:
        return []
    lines = [f"- {found}"]
    lines += [f"  - {o.suite} {o.kind} {o.numerator} / {o.denominator} ({o.module or o.backend}, {shape(o)}, {o.threads} thread(s)): "
              f"old {fmt_ratio(o)}, new {fmt_ratio(n)}" for o, n in found.disjoint[:20]]  # fmt: skip
    return lines


def write(compared: Compared, out: Path) -> list[Path]:
    """``compare.png`` and ``compare.md`` in ``out``."""
    from bench import plots

    out.mkdir(parents=True, exist_ok=True)
    counts = summary(compared).split(";")[0]
    title = counts + (f"\n{'; '.join(compared.differences)}" if compared.differences else "")
    figures = plots.compare(out / "compare.png", compared.comparisons, title)
    path = out / "compare.md"
    path.write_text(markdown_of(compared, figures))
    return [*figures, path]


def print_terminal(compared: Compared, console: Any, shown: int = 40) -> None:
    """What differs, the significant changes (at most ``shown``), then the summary line."""
    from rich.table import Table as RichTable

    for line in compared.differences + compared.skipped:
        console.print(f"[yellow]{line}")
    table = _table(compared, True)
    rich_table = RichTable(title=table.title + (f" (first {shown})" if len(table.rows) > shown else ""), caption=table.note)
    for i, header in enumerate(table.headers):
        rich_table.add_column(header, justify="left" if i == 0 else "right")
    for row in table.rows[:shown]:
        rich_table.add_row(*row)
    if table.rows:
        console.print(rich_table)
    for line in _agreement_lines(compared):
        console.print(line)
    console.print(summary(compared))
