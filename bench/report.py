"""Rendering an analysed run: ``report.md`` and every figure, the terminal's tables, the
README's headline table and the docs' results page. Reads :class:`bench.analysis.Analysis`
only, so any saved run renders again without torch or jax (``python -m bench report RESULTS``).

Every report opens with the answers to the seed's questions (at most ten lines, each with its
95% interval and thread setting), then the machine and the method, then each suite's
findings, tables and figures.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench import stats, tables
from bench.analysis import Analysis, analyse, load_summary
from bench.schema import Results, load, results_file
from bench.suites import SUITES
from prcm import pages
from prcm.machine import commit_line

__all__ = ["render", "write_report", "write_figures", "suite_tables", "markdown", "report_markdown", "headline",
           "headline_markdown", "provenance", "results_page", "run_line", "machine_line", "print_terminal", "README_MARKERS",
           "readme_section", "with_readme_section", "readme_section_matches", "NETWORK_TAG", "render_network_sections"]  # fmt: skip

#: The lines a README's headline section sits between (:func:`with_readme_section`).
README_TAG = "bench:headline"
README_MARKERS = (f"<!-- {README_TAG}:start -->", f"<!-- {README_TAG}:end -->")
#: The tag of a page's block-cost sections, ``<!-- bench:network:start NETWORK, ... -->``
#: (:func:`render_network_sections`).
NETWORK_TAG = "bench:network"


def suite_tables(analysis: Analysis) -> list[tables.Table]:
    """Each suite's tables (a suite this bench does not declare: :func:`bench.tables.generic`),
    then the thread settings and the flagged lanes."""
    out = []
    for name in dict.fromkeys(r.suite for r in analysis.records):
        rows, comps = analysis.suite(name)
        builder = SUITES[name].tables if name in SUITES else tables.generic
        out += builder(rows, comps, analysis.backends)
    out += tables.threads(analysis.records, analysis.comparisons, analysis.backends)
    out += tables.flags(analysis.records, stats.ADVICE)
    return out


def write_figures(analysis: Analysis, out: Path) -> dict[str, list[Path]]:
    """Every figure each suite declares, in ``out``, by suite."""
    written = {}
    for name in dict.fromkeys(r.suite for r in analysis.records):
        rows, comps = analysis.suite(name)
        figures = SUITES[name].figures if name in SUITES else None
        if figures is not None and (paths := figures(out, rows, comps, analysis.meta)):
            written[name] = paths
    return written


def markdown(table: tables.Table) -> str:
    """A table as Markdown."""
    lines = [f"### {table.title}", "", "| " + " | ".join(table.headers) + " |", "|" + "---|" * len(table.headers)]
    lines += ["| " + " | ".join(row) + " |" for row in table.rows]
    if table.note:
        lines += ["", f"_{table.note}_"]
    return "\n".join(lines)


def _bytes(n: int) -> str:
    return f"{n / 2**20:g} MiB" if n >= 2**20 else f"{n / 2**10:g} KiB"


def machine_line(meta: dict[str, Any]) -> str:
    """The machine: CPU model, CPUs, caches, memory (``unknown`` where the run did not record it).

    Examples:
        >>> machine_line({"machine": {"cpu_model": "AMD EPYC", "cpus": 2, "memory_bytes": 24 * 2**30,
        ...               "caches": [{"level": 1, "type": "Data", "bytes": 32768, "shared_by": 1},
        ...                          {"level": 3, "type": "Unified", "bytes": 33554432, "shared_by": 2}]}})
        'AMD EPYC, 2 CPUs, L1d 32 KiB, L3 32 MiB, 24 GiB memory'
    """
    machine = meta.get("machine") or {}
    caches = ", ".join(f"L{c['level']}{'d' if c['type'] == 'Data' else ''} {_bytes(c['bytes'])}" for c in machine.get("caches") or [])
    memory = machine.get("memory_bytes")
    parts = [machine.get("cpu_model") or machine.get("processor") or "unknown CPU",
             f"{machine.get('cpus') or machine.get('cpus_visible') or '?'} CPUs", caches or "caches unknown",
             f"{memory / 2**30:.0f} GiB memory" if memory else ""]  # fmt: skip
    device = meta.get("device")
    if device and device != "cpu":
        parts.insert(0, f"{device} ({meta.get('device_kind')})")
    return ", ".join(p for p in parts if p)


def run_line(meta: dict[str, Any]) -> str:
    """When and what ran: date, commit, versions, quick or full, threads and sessions, time taken."""
    commit = meta.get("commit") or {}
    versions = meta.get("versions") or {}
    settings = meta.get("settings") or {}
    sessions = settings.get("sessions")
    sessions = max(sessions.values()) if isinstance(sessions, dict) and sessions else sessions
    what = [f"{meta.get('date') or meta.get('started') or 'date unknown'}",
            f"commit {commit['hash'][:10]}{' (uncommitted changes)' if commit.get('dirty') else ''}" if commit.get("hash") else "commit unknown",
            ", ".join(f"{k} {v}" for k, v in versions.items() if k in ("torch", "jax", "flax", "python")),
            f"{'quick' if settings.get('quick') else 'full'} run",
            f"thread settings {(meta.get('threads') or {}).get('settings')}",
            f"{sessions} sessions per setting" if sessions else "",
            f"{meta.get('elapsed_s')} s" if meta.get("elapsed_s") is not None else "",
            "INTERRUPTED, partial results" if meta.get("interrupted") else ""]  # fmt: skip
    return "; ".join(w for w in what if w)


def _method(analysis: Analysis) -> list[str]:
    meta = analysis.meta
    statistics = meta.get("statistics") or {}
    load = load_summary(analysis.records) or {}
    return [
        f"Ratios: {statistics.get('method', 'see meta.statistics')}; {statistics.get('confidence', stats.CONFIDENCE):.0%} intervals; "
        f"not significant (n.s.) when the interval reaches within {statistics.get('noise', stats.NOISE):.0%} of 1.",
        "Other processes' share of the CPUs while points were timed: "
        + ("; ".join(f"{k}: mean {v['mean']:.0%}, worst point {v['max']:.0%}" for k, v in load.items()) or "not measured")
        + " (above about 10% expect every timing, and ratios between backends, to move).",
        f"Device: {meta.get('device')} ({meta.get('device_kind')}); JAX CPU dispatch "
        f"{'asynchronous' if meta.get('jax_cpu_async_dispatch') else 'synchronous'}; {meta.get('precision')}.",
        *analysis.notes,
    ]  # fmt: skip


def report_markdown(analysis: Analysis, figures: Iterable[str] = ()) -> str:
    """``report.md``: the answers first, then the run, the method, the findings, every table, every figure."""
    lines = ["# prcm benchmark", "", "## Answers", "", *[f"- {a}" for a in analysis.answers], "",
             f"Machine: {machine_line(analysis.meta)}. Run: {run_line(analysis.meta)}.", "",
             "## Method", "", *[f"- {m}" for m in _method(analysis)], "", "## Findings", ""]  # fmt: skip
    for suite, found in analysis.findings.items():
        lines += [f"### {suite}", "", *[f"- {f}" for f in found], ""]
    lines += ["## Tables", "", "\n\n".join(markdown(t) for t in suite_tables(analysis)), ""]
    if figures := sorted(figures):
        lines += ["## Figures", "", *[f"![{f}]({f})" for f in figures], ""]
    return "\n".join(lines)


def provenance(meta: dict[str, Any]) -> str:
    """One line: the machine (CPU model and cores), the versions, the commit and the date of a run.

    Examples:
        >>> provenance({"machine": {"cpu_model": "AMD EPYC 9B14", "cpus": 2}, "date": "2026-01-02T03:04:05+00:00",
        ...             "commit": {"hash": "0123456789abcdef", "dirty": False}, "versions": {"torch": "2.14.1", "jax": "0.10.2"},
        ...             "settings": {"quick": True, "sessions": 5}})
        'Measured on AMD EPYC 9B14 (2 cores), torch 2.14.1, jax 0.10.2, commit 0123456789, 2026-01-02 (quick run, 5 sessions per thread setting).'
    """
    machine = meta.get("machine") or {}
    cpu = machine.get("cpu_model") or machine.get("processor") or "an unknown CPU"
    cores = machine.get("cpus") or machine.get("cpus_visible")
    versions = meta.get("versions") or {}
    commit = meta.get("commit") or {}
    settings = meta.get("settings") or {}
    sessions = settings.get("sessions")
    sessions = max(sessions.values()) if isinstance(sessions, dict) and sessions else sessions
    where = [f"{cpu} ({cores} cores)" if cores else cpu]
    if meta.get("device") and meta.get("device") != "cpu":
        where.append(f"{meta['device']} ({meta.get('device_kind')})")
    parts = [", ".join(where), *(f"{k} {versions[k]}" for k in ("torch", "jax", "flax") if k in versions),
             commit_line(commit), str(meta.get("date") or meta.get("started") or "date unknown")[:10]]  # fmt: skip
    run = f"{'quick' if settings.get('quick') else 'full'} run" + (f", {sessions} sessions per thread setting" if sessions else "")
    return f"Measured on {', '.join(parts)} ({run})."


def headline(analysis: Analysis) -> str:
    """The headline table: one row per answer with its main figures (95% intervals) and thread
    setting, then :func:`provenance`; rendered from the results alone, so a README can be
    checked against its committed results file (:func:`readme_section_matches`)."""
    rows = ["| question | measured (95% CI) | threads |", "|---|---|---|"]
    for answer in analysis.answers:
        parts = [p for p in answer.parts if p.brief]
        settings = {p.setting for p in parts if p.setting}
        common = answer.setting or (settings.pop() if len(settings) == 1 else "")
        cells = [f"{p.label} {tables.fmt_ratio(p.comparison)}" + (f" ({p.setting})" if p.setting and p.setting != common else "")
                 for p in parts]  # fmt: skip
        rows.append(f"| {answer.question} | {'; '.join([*cells, *([answer.note] if answer.note else [])])} | {common} |")
    return "\n".join([*rows, "", provenance(analysis.meta)])


def headline_markdown(results: Results | Analysis | Path | str) -> str:
    """:func:`headline` of a run: its results, their analysis, or a saved ``results.json``.

    Examples:
        >>> text = headline_markdown(Results({"date": "2026-01-02"}))
        >>> text.splitlines()[0], text.splitlines()[-1]
        ('| question | measured (95% CI) | threads |', 'Measured on an unknown CPU, commit unknown, 2026-01-02 (full run).')
    """
    if isinstance(results, (Path, str)):
        results = load(results)
    return headline(results if isinstance(results, Analysis) else analyse(results))


def readme_section(text: str) -> str:
    """The text between the README's headline markers, without the blank lines around it.

    Raises:
      ValueError: the markers are missing, repeated or out of order.
    """
    found = pages.sections(text, README_TAG)
    if len(found) != 1:
        raise ValueError(f"expected one {README_MARKERS[0]} line and, after it, one {README_MARKERS[1]} line; found {len(found)} sections")
    return found[0][1]


def with_readme_section(text: str, results: Results | Analysis | Path | str) -> str:
    """``text`` (a README) with its headline section replaced by :func:`headline_markdown` of
    ``results``; everything outside the markers is kept as it is.

    Examples:
        >>> readme = "# prcm\\n\\n<!-- bench:headline:start -->\\nold\\n<!-- bench:headline:end -->\\n\\nmore\\n"
        >>> new = with_readme_section(readme, Results({"date": "2026-01-02"}))
        >>> new.startswith("# prcm\\n\\n<!-- bench:headline:start -->\\n| question |"), new.endswith("end -->\\n\\nmore\\n")
        (True, True)
        >>> readme_section_matches(new, Results({"date": "2026-01-02"})), readme_section_matches(readme, Results())
        (True, False)
    """
    readme_section(text)  # exactly one section, or an error before anything is rendered
    return pages.fill(text, README_TAG, lambda _: headline_markdown(results))


def readme_section_matches(text: str, results: Results | Analysis | Path | str) -> bool:
    """Whether a README's headline section is what :func:`headline_markdown` renders from ``results``
    (for a test that fails when the README's table and its committed results file part).

    Raises:
      ValueError: the README has no headline section (see :data:`README_MARKERS`).
    """
    return readme_section(text) == headline_markdown(results).strip("\n")


def render_network_sections(text: str, results: Results | Path | str, source: str | None = None) -> str:
    """``text`` (a markdown page) with each :data:`NETWORK_TAG` section holding what a block costs
    inside the networks its start marker names (:func:`bench.tables.block_costs`), from a saved
    run, and where the figures come from; the rest of the page is kept.

    Args:
      text: the page.
      results: a saved run, its ``results.json`` or its folder.
      source: how the section names the file (default: the path as given).

    Raises:
      ValueError: markers out of order, or a section names no network or one the run did not
        time; before anything is rendered.

    Examples:
        >>> page = "# Page\\n\\n<!-- bench:network:start resnet18 -->\\n<!-- bench:network:end -->\\n"
        >>> render_network_sections(page, Results({"date": "2026-01-02"}))
        Traceback (most recent call last):
        ...
        ValueError: a bench:network section names resnet18, which the run did not time (it timed none)
    """
    if not isinstance(results, Results):
        path = results_file(results)
        source, results = source or path.as_posix(), load(path)
    found = analyse(results)
    rows, comps = found.suite("network")
    timed = list(dict.fromkeys(r.network for r in rows))
    wanted = {args: pages.names(args) for args, _ in pages.sections(text, NETWORK_TAG)}
    for args, names in wanted.items():
        if not names:
            raise ValueError(f"a {NETWORK_TAG} section names no network; name them on its start line, e.g. "
                             f"<!-- {NETWORK_TAG}:start {', '.join(timed) or 'resnet18'} -->")  # fmt: skip
        if missing := [n for n in names if n not in timed]:
            raise ValueError(f"a {NETWORK_TAG} section names {', '.join(missing)}, which the run did not time "
                             f"(it timed {', '.join(timed) or 'none'})")  # fmt: skip
    where = f" From `{source}`." if source else ""

    def section(args: str) -> str:
        mine = [r for r in rows if r.network in wanted[args]]
        return "\n\n".join([*map(markdown, tables.block_costs(mine, comps)), provenance(found.meta) + where])

    return pages.fill(text, NETWORK_TAG, section)


def results_page(analysis: Analysis, figures: dict[str, list[Path]] | None = None, prefix: str = ".") -> str:
    """The docs' results page: the headline table, the answers, the method (with how many
    significant findings to expect to be false), every suite's findings, tables and figures
    (``figures`` by suite, as :func:`write_figures` gives them, linked under ``prefix``)."""
    lines = ["# Results", "", headline(analysis), "", "## Answers", "", *[f"- {a}" for a in analysis.answers], "",
             "## Method", "", *[f"- {m}" for m in _method(analysis)], ""]  # fmt: skip
    for name in dict.fromkeys(r.suite for r in analysis.records):
        rows, comps = analysis.suite(name)
        lines += [f"## {name}", ""]
        if name in SUITES:
            lines += [SUITES[name].doc[:1].upper() + SUITES[name].doc[1:] + ".", ""]
        lines += [f"- {f}" for f in analysis.findings.get(name, [])] + [""]
        builder = SUITES[name].tables if name in SUITES else tables.generic
        lines += ["\n\n".join(markdown(t) for t in builder(rows, comps, analysis.backends)), ""]
        lines += [f"![{Path(f).name}]({prefix}/{Path(f).name})" for f in (figures or {}).get(name, [])] + [""]
    return "\n".join(lines)


def write_report(analysis: Analysis, out: Path, figures: Iterable[Path] = ()) -> Path:
    """``report.md`` in ``out``."""
    path = Path(out) / "report.md"
    path.write_text(report_markdown(analysis, [Path(f).name for f in figures]))
    return path


def render(results: Results | Path | str, out: Path | None = None) -> tuple[Analysis, dict[str, list[Path]], Path]:
    """Analyse a run and write its figures, ``report.md`` and ``results.md`` (the docs' results
    page, :func:`results_page`) to ``out`` (default: the results file's folder; the reports are
    written even when a figure fails). Returns the analysis, the figures by suite and the
    report's path."""
    if not isinstance(results, Results):
        out = Path(out or Path(results).parent)
        results = load(results)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    analysis = analyse(results)
    figures: dict[str, list[Path]] = {}
    try:
        figures = write_figures(analysis, out)
    finally:
        report = write_report(analysis, out, [f for paths in figures.values() for f in paths])
        (out / "results.md").write_text(results_page(analysis, figures))
    return analysis, figures, report


def print_terminal(analysis: Analysis, console: Any) -> None:
    """The tables, the findings, then the answers (last, where the eye lands)."""
    from rich.table import Table as RichTable

    for table in suite_tables(analysis):
        rich_table = RichTable(title=table.title, caption=table.note or None)
        for i, header in enumerate(table.headers):
            rich_table.add_column(header, justify="left" if i == 0 else "right")
        for row in table.rows:
            rich_table.add_row(*row)
        console.print(rich_table)
    console.print("[bold]Findings")
    for found in analysis.findings.values():
        for line in found:
            console.print(f"- {line}")
    for note in analysis.notes:
        console.print(f"- {note}")
    console.print("[bold]Answers")
    for answer in analysis.answers:
        console.print(f"- {answer}")
