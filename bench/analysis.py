"""From a run's results to what the report says: every comparison through one multiplicity
adjustment (:func:`adjust`), the roofline placed in the machine's memory (:func:`place`), the
answers to the seed's questions (:func:`answers`) and each suite's findings. Imports neither
torch nor jax: it reads :class:`bench.schema.Results`, whether just measured or loaded from a file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench import findings, stats
from prcm.machine import memory_level
from bench.plan import COPIES, FRAMEWORK, LAYOUTS, reference
from bench.schema import Comparison, Record, Results
from bench.suites import SUITES
from bench.tables import find, fmt_ratio, lane_label, shape
from prcm.catalog import CATALOG
from bench.findings import TRAIN_POINT, winner

__all__ = ["Analysis", "Answer", "Part", "analyse", "adjust", "place", "answers", "load_summary", "MAX_ANSWERS"]

#: Lines a report opens with, at most.
MAX_ANSWERS = 10


def adjust(comparisons: Sequence[Comparison]) -> list[Comparison]:
    """Every comparison of a report (or of a ``compare``), adjusted together for multiplicity:
    the one place significance over a family of comparisons is decided.

    :func:`bench.stats.adjust` (Benjamini-Hochberg at :data:`bench.stats.FDR` over the
    comparisons' p-values) sets each comparison's ``q`` and its significance; the comparisons
    as measured are left as they are. Comparisons without a p-value (a file of an earlier
    bench) keep the significance of their own interval.
    """
    tested = [i for i, c in enumerate(comparisons) if c.p is not None]
    out = [dataclasses.replace(c) for c in comparisons]
    for i, r in zip(tested, stats.adjust([_ratio(comparisons[i]) for i in tested]), strict=True):
        out[i].q, out[i].significant = r.q, bool(r.significant)
    return out


def _ratio(c: Comparison) -> stats.Ratio:
    """The :class:`bench.stats.Ratio` a comparison was made from (its optional fields included)."""
    names = {f.name for f in dataclasses.fields(stats.Ratio)} & {f.name for f in dataclasses.fields(Comparison)}
    fields = {n: getattr(c, n) for n in names if getattr(c, n) is not None}
    if "sessions" in fields:
        fields["sessions"] = tuple(fields["sessions"])
    return stats.Ratio(c.ratio, *c.ci95, **fields)


def multiplicity(comparisons: Sequence[Comparison]) -> str:
    """One sentence: how many comparisons, how many significant, how many unstable, and how
    many of the significant ones to expect to be false (:func:`bench.stats.false_findings`)."""
    n = len(comparisons)
    significant = sum(c.significant for c in comparisons)
    unstable = sum(bool(c.unstable) for c in comparisons)
    text = f"{n} comparisons, {significant} significant" + (f", {unstable} unstable (sessions disagree: no value)" if unstable else "")
    adjusted = [_ratio(c) for c in comparisons if c.q is not None]
    text += (f"; significance over all of them by Benjamini-Hochberg at {stats.FDR:.0%}: expect up to "
             f"{stats.false_findings(adjusted):.1f} of the significant ones to be false")  # fmt: skip
    if unadjusted := n - len(adjusted):
        text += f" ({unadjusted} from an earlier bench carry no p-value and are judged on their own interval)"
    return text + ". Ratios that share a lane move together, so a count of them is not a count of independent evidence."


def place(records: Iterable[Record], meta: dict[str, Any]) -> None:
    """Set each bandwidth record's memory level (of its working set, in this machine's caches),
    its reference (the copy that touches as many buffers) and its fraction of that copy's GB/s
    at the same size and thread setting. Idempotent: recomputed from the records and ``meta``."""
    records = list(records)
    found = (meta.get("machine") or {}).get("caches") or []
    best: dict[tuple, float] = {}
    for r in records:
        if r.working_set:
            r.memory_level = memory_level(r.working_set, found)
        if r.op in COPIES and r.gbps and r.status == "ok":
            key = (r.op, r.batch, r.channels, r.resolution, r.threads)
            best[key] = max(best.get(key, 0.0), r.gbps)
    for r in records:
        if r.gbps and r.op not in COPIES:
            r.reference = reference(r.variant, r.backend) if r.suite == "roofline" else "copy"
            copy = best.get((r.reference, r.batch, r.channels, r.resolution, r.threads))
            r.copy_fraction = r.gbps / copy if copy else None


def load_summary(records: Iterable[Record]) -> dict[str, dict[str, float]] | None:
    """Share of the machine's CPU time other processes used while points were timed, per
    thread setting: mean over the points and the highest point (``None`` off Linux)."""
    loads: dict[int, dict[tuple, float]] = {}
    for r in records:
        if r.load is not None:
            loads.setdefault(r.threads, {})[(r.suite, r.batch, r.channels, r.resolution, r.workload, r.network)] = r.load
    return {f"{t} thread{'s' if t != 1 else ''}": {"mean": round(sum(v.values()) / len(v), 3), "max": round(max(v.values()), 3)}
            for t, v in sorted(loads.items())} or None  # fmt: skip


# -- answers ----------------------------------------------------------------------------------


@dataclass
class Part:
    """One measured figure of an answer: what it is, the comparison, the setting it was taken at."""

    label: str
    comparison: Comparison | None
    setting: str = ""  # empty where the question states it
    brief: bool = True  # shown in the README's headline table

    def __str__(self) -> str:
        return f"{self.label} {fmt_ratio(self.comparison)}" + (f" ({self.setting})" if self.setting else "")


@dataclass
class Answer:
    """One of the seed's questions, answered by measured figures with their 95% intervals."""

    question: str
    parts: list[Part] = field(default_factory=list)
    note: str = ""
    setting: str = ""  # the thread setting of every part, where they share one

    def __str__(self) -> str:
        return f"{self.question}" + (f", {self.setting}" if self.setting else "") + ": " + "; ".join([*map(str, self.parts), *([self.note] if self.note else [])]) + "."


def _threads(t: int | None) -> str:
    return f"{t} thread" + ("s" if t != 1 else "")


def _fastest(records: list[Record], **lane: Any) -> int | None:
    """The thread setting at which the lane ran fastest (its lowest median)."""
    timed = [r for r in records if r.status == "ok" and r.median_ms is not None and r.threads is not None
             and all(getattr(r, k) == v for k, v in lane.items())]  # fmt: skip
    return min(timed, key=lambda r: r.median_ms).threads if timed else None


def _seed_answers(records: list[Record], comps: list[Comparison], backends: Sequence[str]) -> list[Answer]:
    """AffinePRCM's cost over PRCM per backend, and each backend against XLA per module, at the seed point."""
    out = []
    lat = [c for c in comps if c.suite == "latency"]
    rec = [r for r in records if r.suite == "latency"]
    if not lat:
        return out
    cost = Answer(f"What AffinePRCM costs over PRCM at the seed point {shape(lat[0])}, per backend at its fastest setting")
    for b in backends:
        t = _fastest(rec, module="PRCM", backend=b)
        if c := find(lat, kind="module", backend=b, numerator="AffinePRCM", denominator="PRCM", threads=t):
            cost.parts.append(Part(b, c, _threads(t)))
    out.append(cost)
    t = _fastest(rec, module="PRCM", backend="jax-jit")
    for num, question in (("jax-eager", "What XLA's fusion buys over eager JAX (jax-eager / jax-jit)"),
                          ("torch-eager", "Eager PyTorch against XLA (torch-eager / jax-jit)"),
                          ("torch-compile", "torch.compile against XLA (torch-compile / jax-jit)")):  # fmt: skip
        mine = [c for c in lat if c.kind == "backend" and c.numerator == num and c.denominator == "jax-jit" and c.threads == t]
        order = list(CATALOG)  # the catalog's order, modules registered at run time included
        mine.sort(key=lambda c: order.index(c.module) if c.module in order else len(order))
        if mine:
            out.append(Answer(f"{question} per module", [Part(c.module, c, brief=c.module in ("PRCM", "AffinePRCM")) for c in mine],
                              setting=_threads(t)))
    return out


def _kernels(records: list[Record]) -> Answer | None:
    counted = [r for r in records if r.suite == "fusion" and r.kernels is not None]
    if not counted:
        return None
    cells = []
    for b in dict.fromkeys(r.backend for r in counted):
        counts = [r.kernels for r in counted if r.backend == b]
        cells.append(f"{b} {min(counts)}" + (f"-{max(counts)}" if max(counts) > min(counts) else ""))
    return Answer("Kernels (or operations) one call launches at the seed point", note=", ".join(cells))


def _train_answer(records: list[Record], comps: list[Comparison]) -> Answer | None:
    b, c, res = TRAIN_POINT
    at = dict(suite="train", kind="backend", batch=b, channels=c, resolution=res, denominator="jax-jit")
    mine = [x for x in comps if all(getattr(x, k) == v for k, v in at.items())]
    if not mine:
        return None
    t = _fastest([r for r in records if r.suite == "train"], module="PRCM", backend="jax-jit", batch=b, resolution=res, channels=c)
    answer = Answer(f"One training step at ({b}, {c}, {res}, {res}) against jax-jit", setting=_threads(t))
    for module in ("PRCM", "AffinePRCM"):
        for num in ("torch-eager", "torch-compile"):
            if x := find(mine, module=module, numerator=num, threads=t):
                answer.parts.append(Part(f"{module} {num} / jax-jit", x))
    return answer if answer.parts else None


def _torch_best(records: list[Record], comps: list[Comparison], **lane: Any) -> tuple[str, str | None, str] | None:
    """torch's fastest configuration of a network lane: its backend, its layout and how the
    answers name it. Where that backend's two layouts differ by nothing significant (or their
    sessions disagree), torch's default layout stands for both and the name says so: the data
    cannot pick one."""
    torch = [r for r in records if r.status == "ok" and r.median_ms is not None and FRAMEWORK.get(r.backend) == "torch"
             and all(getattr(r, k) == v for k, v in lane.items())]  # fmt: skip
    if not torch:
        return None
    best = min(torch, key=lambda r: r.median_ms)
    versus = find(comps, kind="layout", backend=best.backend, **lane)
    if versus is None or (versus.significant and not versus.unstable):
        return best.backend, best.layout, lane_label(best.backend, best.layout)
    default = min((r for r in torch if r.layout == LAYOUTS[0]), key=lambda r: r.median_ms, default=best)  # its fastest backend
    versus = find(comps, kind="layout", backend=default.backend, **lane) or versus
    return default.backend, default.layout, f"{default.backend}, either layout: {winner(versus, 'channels-last', 'channels-first')}"


def _network_answers(records: list[Record], comps: list[Comparison]) -> list[Answer]:
    """Per network at its largest input: the block's cost inside it per backend, and torch's
    best configuration against the twin, in inference and a training step."""
    out = []
    nets = [r for r in records if r.suite == "network" and r.status == "ok" and r.median_ms is not None]
    for net in dict.fromkeys(r.network for r in nets):
        mine = [r for r in nets if r.network == net]
        big = max(mine, key=lambda r: (r.batch * r.resolution**2))
        blocks = [r.module for r in mine if r.module not in ("none", "se")]
        block = "AffinePRCM" if "AffinePRCM" in blocks else next(iter(blocks), None)  # the seed's question first
        answer = Answer(f"{net} at ({big.batch}, 3, {big.resolution}, {big.resolution})")
        for workload in ("forward", "train"):
            step = "inference" if workload == "forward" else "training step"
            at = dict(network=net, batch=big.batch, resolution=big.resolution, workload=workload)
            t = _fastest(mine, backend="jax-jit", module=block, **at)
            best = _torch_best(mine, comps, module=block, threads=t, **at)
            if best is None:
                continue
            backend, layout, name = best
            for b, lay in ((backend, layout), ("jax-jit", None)):
                if c := find(comps, kind="module", backend=b, layout=lay, numerator=block, denominator="none", threads=t, **at):
                    answer.parts.append(Part(f"{step}: {block} / none on {lane_label(b, lay)}", c, _threads(t),
                                             brief=b != "jax-jit"))
            if c := find(comps, kind="backend", module=block, numerator=backend, layout=layout, denominator="jax-jit",
                         threads=t, **at):  # fmt: skip
                answer.parts.append(Part(f"{step}: torch's best ({name}) / jax-jit", c, _threads(t)))
        if answer.parts:
            out.append(answer)
    return out


def _layout_answer(comps: list[Comparison]) -> Answer | None:
    """torch's best layout per network and step, at the largest input and each backend's plain network."""
    layout = [c for c in comps if c.kind == "layout" and c.module == "none"]
    if not layout:
        return None
    answer = Answer("torch's best layout in the networks (channels-last / channels-first, plain network)")
    for key in dict.fromkeys((c.network, c.workload, c.backend) for c in layout):
        mine = [c for c in layout if (c.network, c.workload, c.backend) == key]
        c = max(mine, key=lambda c: (c.batch * c.resolution**2, -(c.threads or 0)))
        verdict = winner(c, "channels-last", "channels-first").replace(" faster", " best")
        setting = _threads(c.threads) + ("" if c.unstable else f": {verdict}")
        answer.parts.append(Part(f"{c.network} {c.workload} (batch {c.batch}) {c.backend}", c, setting,
                                 brief=c.backend == "torch-eager"))
    return answer


def _threads_answer(comps: list[Comparison]) -> Answer | None:
    mine = [c for c in comps if c.kind == "threads" and c.suite == "latency" and c.module == "PRCM"]
    if not mine:
        return None
    c0 = mine[0]
    answer = Answer(f"Which thread setting wins at the seed point (PRCM, {c0.numerator} / {c0.denominator})")
    for c in mine:
        answer.parts.append(Part(c.backend, c, "" if c.unstable else winner(c), brief=c.backend in ("torch-eager", "jax-jit")))
    return answer


def answers(records: list[Record], comps: list[Comparison], backends: Sequence[str]) -> list[Answer]:
    """At most :data:`MAX_ANSWERS` answers to the seed's questions, each with its 95% interval
    and thread setting: what AffinePRCM costs over PRCM per backend; what XLA's fusion buys over
    eager execution per module (and eager and compiled torch against it); the kernels a call
    launches; the training step; the block inside networks, with torch's best configuration;
    which thread setting wins; torch's best layout in networks. A suite that did not run
    answers nothing."""
    found = [*_seed_answers(records, comps, backends), _kernels(records), _train_answer(records, comps),
             *_network_answers(records, comps), _threads_answer(comps), _layout_answer(comps)]  # fmt: skip
    return [a for a in found if a is not None and (a.parts or a.note)][:MAX_ANSWERS]


# -- the whole analysis -----------------------------------------------------------------------


@dataclass
class Analysis:
    """What the renderers show: the run's ``meta``, its records (placed in memory), its
    comparisons after the adjustment, the answers, and each suite's findings."""

    meta: dict[str, Any]
    records: list[Record]
    comparisons: list[Comparison]
    answers: list[Answer]
    findings: dict[str, list[str]]
    notes: list[str]

    @property
    def backends(self) -> list[str]:
        return list(self.meta.get("backends") or dict.fromkeys(r.backend for r in self.records if r.backend))

    def suite(self, name: str) -> tuple[list[Record], list[Comparison]]:
        """One suite's records and its comparisons (``threads`` comparisons excluded)."""
        return ([r for r in self.records if r.suite == name],
                [c for c in self.comparisons if c.suite == name and c.kind != "threads"])  # fmt: skip


def analyse(results: Results) -> Analysis:
    """Everything the report says about ``results``: comparisons adjusted together (:func:`adjust`),
    records placed in memory (:func:`place`), answers and findings."""
    records = [dataclasses.replace(r) for r in results.records]
    place(records, results.meta)
    comparisons = adjust(results.comparisons)
    backends = results.meta.get("backends") or list(dict.fromkeys(r.backend for r in records if r.backend))
    found: dict[str, list[str]] = {}
    stable = [c for c in comparisons if not c.unstable]  # an unstable ratio has no value: no finding rests on it
    for name in dict.fromkeys(r.suite for r in records):
        suite = SUITES.get(name)
        if suite is not None and suite.findings is not None:
            found[name] = suite.findings([r for r in records if r.suite == name],
                                         [c for c in stable if c.suite == name and c.kind != "threads"], results.meta)  # fmt: skip
    if threads := findings.threads(records, [c for c in stable if c.kind == "threads"], results.meta):
        found["threads"] = threads
    notes = [multiplicity(comparisons)]
    ok = [r for r in records if r.status == "ok" and r.median_ms is not None]
    if flagged := [r for r in ok if r.flag]:
        notes.append(f"{len(flagged)} of {len(ok)} timed lanes are flagged unstable (spread or two speeds); their intervals "
                     f"already include that noise. {stats.ADVICE[0].upper()}{stats.ADVICE[1:]}.")  # fmt: skip
    if bad := sorted({f"{r.backend}: {r.status} ({r.reason})" for r in records if r.status != "ok"}):
        notes.append("Not measured: " + "; ".join(bad[:6]) + (" ..." if len(bad) > 6 else ""))
    return Analysis(results.meta, records, comparisons, answers(records, comparisons, backends), found, notes)


