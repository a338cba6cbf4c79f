"""The results schema: what one run of the benchmark leaves behind, and how it is read back.

``results.json`` is ``{"schema": VERSION, "meta": {...}, "records": [...], "comparisons": [...]}``:
a :class:`Record` per lane (one thing timed or counted at one point and thread setting), a
:class:`Comparison` per ratio, and ``meta`` (machine, versions, commit, settings). This module
imports neither torch nor jax (nor numpy): everything that renders, analyses or compares runs
reads files through :func:`load`, which refuses what it cannot read with an error that says why.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["VERSION", "Record", "Comparison", "Results", "SchemaError", "load", "save", "loads", "dumps", "results_file"]

#: The version :func:`save` writes. 1: the files of earlier benches, without a ``schema`` key
#: (read with the fields they lack set to ``None``); 2: adds ``layout``, per-round timings
#: (``round_ms``, ``round_sessions``), the roofline's ``working_set``/``reference``/``memory_level``, and
#: the comparisons' ``layout`` and the statistics' ``p``, ``q``, ``dof``, ``sessions``, ``covers``,
#: ``unstable`` (an unstable comparison's ``ratio`` is ``null``).
VERSION = 2
#: Parts of a results file that must be there.
_TOP = ("meta", "records", "comparisons")


@dataclass
class Record:
    """One lane: one flat row of ``results.json``; fields that do not apply are ``None``.

    The timing fields (``median_ms``, ``p10_ms``, ``p90_ms``) pool every call of every session;
    ``round_ms`` holds each round's median call and ``round_sessions`` its process, which is
    what a later comparison of two runs resamples.
    """

    suite: str
    backend: str | None
    device: str
    module: str | None = None
    network: str | None = None
    op: str | None = None
    workload: str | None = None
    variant: str | None = None
    layout: str | None = None
    path: str | None = None
    parameter: str | None = None
    threads: int | None = None
    batch: int | None = None
    channels: int | None = None
    resolution: int | None = None
    num_basis: int | None = None
    median_ms: float | None = None
    p10_ms: float | None = None
    p90_ms: float | None = None
    repeat: int | None = None
    rounds: int | None = None
    sessions: int | None = None
    round_ms: list[float] | None = None
    round_sessions: list[int] | None = None
    spread: float | None = None
    load: float | None = None
    flag: str | None = None
    params: int | None = None
    kernels: int | None = None
    kernel_detail: str | None = None
    passes: float | None = None
    bytes: int | None = None
    working_set: int | None = None
    gbps: float | None = None
    reference: str | None = None
    copy_fraction: float | None = None
    memory_level: str | None = None
    saved_bytes: int | None = None
    saved_input_bytes: int | None = None
    faults_per_call: float | None = None
    compile_s: float | None = None
    check_eps: float | None = None
    status: str = "ok"
    reason: str | None = None

    @property
    def item(self) -> str | None:
        """What was run: the module (or attention block) or the operation."""
        return self.module or self.op

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Comparison:
    """One ratio, numerator time / denominator time, with its 95% interval.

    ``kind`` is ``backend`` (two backends, one module: ``module`` set), ``module`` (a module
    against the suite's baseline on one backend: ``backend`` set; in the ``network`` suite an
    attention block against the same network without one, ``none``), ``parts`` (a module
    against the sum of its component operations), ``path`` (a JAX dispatch path against the
    compiled call), ``layout`` (torch channels-last against channels-first, ``backend`` and
    ``module`` set), ``threads`` (one lane at a thread setting against the same lane at the
    most threads; timed apart, so unpaired, and ``threads`` is ``None``) or ``run`` (a lane of
    a new run against the same lane of an old one, ``python -m bench compare``).

    ``layout`` is the numerator's memory layout where the suite times several (torch
    ``channels_first`` / ``channels_last``). ``p``, ``dof``, ``sessions`` (each session's
    ratio), ``covers`` (what the interval covers: ``processes``, ``assumed`` or ``rounds``) and
    ``unstable`` (the sessions disagree: ``ratio`` is NaN, saved as ``null``) come from
    :class:`bench.stats.Ratio` (:meth:`from_ratio`); ``q``, the Benjamini-Hochberg adjusted
    p-value, is set over a report's comparisons by :func:`bench.analysis.adjust`.
    """

    suite: str
    kind: str
    module: str | None
    backend: str | None
    numerator: str
    denominator: str
    batch: int | None
    channels: int | None
    resolution: int | None
    num_basis: int | None
    threads: int | None
    ratio: float
    ci95: list[float]
    significant: bool
    workload: str | None = None
    variant: str | None = None
    network: str | None = None
    layout: str | None = None
    paired: bool = True
    p: float | None = None
    q: float | None = None
    dof: float | None = None
    sessions: list[float] | None = None
    covers: str | None = None
    unstable: bool | None = None

    @classmethod
    def from_ratio(cls, ratio: Any, **fields: Any) -> Comparison:
        """A comparison from a :class:`bench.stats.Ratio` and the fields that place it.

        Besides the value, interval and significance, every field of the ratio whose name is
        an optional field here (``p``, ``q``, ``dof``, ``sessions``, ``covers``, ``unstable``) is carried over, so
        what the statistics add reaches ``results.json`` and the renderers without an edit here.

        Examples:
            >>> from bench.stats import Ratio
            >>> c = Comparison.from_ratio(Ratio(1.5, 1.4, 1.6), suite="latency", kind="backend", module="PRCM", backend=None,
            ...                           numerator="torch-eager", denominator="jax-jit", batch=1, channels=64, resolution=64,
            ...                           num_basis=8, threads=1)
            >>> c.ratio, c.ci95, c.significant
            (1.5, [1.4, 1.6], True)
        """
        extra = {f.name: _plain(getattr(ratio, f.name)) for f in dataclasses.fields(ratio) if f.name in _FROM_RATIO}
        return cls(**fields, ratio=float(ratio.value), ci95=[float(ratio.lo), float(ratio.hi)],
                   significant=bool(ratio.significant), **extra)  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


#: The optional fields :meth:`Comparison.from_ratio` takes from a ratio when it has them.
_FROM_RATIO = ("p", "q", "dof", "sessions", "covers", "unstable")


def _plain(value: Any) -> Any:
    """A statistic as JSON can hold it (numpy scalars and arrays to Python numbers and lists)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


@dataclass
class Results:
    """A run: ``meta``, its records and its comparisons (as measured, before any adjustment)."""

    meta: dict[str, Any] = field(default_factory=dict)
    records: list[Record] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)
    version: int = VERSION

    def as_dict(self) -> dict[str, Any]:
        return {"schema": VERSION, "meta": self.meta, "records": [r.as_dict() for r in self.records],
                "comparisons": [c.as_dict() for c in self.comparisons]}  # fmt: skip


class SchemaError(ValueError):
    """A results file this bench cannot read; the message says what was expected."""


def dumps(results: Results) -> str:
    """``results`` as the text of ``results.json`` (non-finite numbers as ``null``, so any JSON reader takes it)."""
    return json.dumps(_finite(results.as_dict()), indent=1, default=str)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def save(path: Path, results: Results) -> None:
    """Write ``results`` to ``path`` atomically (a reader never sees half a file)."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(dumps(results))
    os.replace(tmp, path)


def results_file(path: Path | str) -> Path:
    """A results file, or the ``results.json`` in a folder (what every command's RESULTS may be)."""
    path = Path(path)
    return path / "results.json" if path.is_dir() else path


def load(path: Path | str) -> Results:
    """Read a results file written by :func:`save` (or by an earlier bench, schema 1).

    Raises:
      SchemaError: the file is missing, not JSON, of a newer schema, or holds fields this
        bench does not know; the message names the file and what was expected.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise SchemaError(f"cannot read results file {path}: {err.strerror or err}") from None
    return loads(text, source=str(path))


def loads(text: str, *, source: str = "results") -> Results:
    """Parse the text of a results file; see :func:`load`.

    Examples:
        >>> r = loads(dumps(Results({"suites": ["latency"]}, [Record("latency", "jax-jit", "cpu", module="PRCM")])))
        >>> r.version, r.records[0].module, r.meta["suites"]
        (2, 'PRCM', ['latency'])
        >>> loads('{"schema": 9, "meta": {}, "records": [], "comparisons": []}')
        Traceback (most recent call last):
        ...
        bench.schema.SchemaError: results: schema 9 is newer than this bench reads (1 to 2); update prcm to read it
    """
    try:
        body = json.loads(text)
    except json.JSONDecodeError as err:
        raise SchemaError(f"{source} is not a results file: not JSON ({err})") from None
    if not isinstance(body, dict) or any(k not in body for k in _TOP):
        got = sorted(body) if isinstance(body, dict) else type(body).__name__
        raise SchemaError(f"{source} is not a results file: expected an object with {', '.join(_TOP)}, got {got}")
    version = body.get("schema", 1)
    if not isinstance(version, int) or version < 1:
        raise SchemaError(f"{source}: expected an integer schema version >= 1, got {version!r}")
    if version > VERSION:
        raise SchemaError(f"{source}: schema {version} is newer than this bench reads (1 to {VERSION}); update prcm to read it")
    if not isinstance(body["meta"], dict):
        raise SchemaError(f"{source}: expected meta to be an object, got {type(body['meta']).__name__}")
    records = [_row(Record, r, source, "records", i) for i, r in enumerate(_list(body, "records", source))]
    comparisons = [_row(Comparison, c, source, "comparisons", i) for i, c in enumerate(_list(body, "comparisons", source))]
    return Results(body["meta"], records, comparisons, version)


def _list(body: dict[str, Any], key: str, source: str) -> list[Any]:
    if not isinstance(body[key], list):
        raise SchemaError(f"{source}: expected {key} to be a list, got {type(body[key]).__name__}")
    return body[key]


def _row(cls: type, row: Any, source: str, key: str, index: int) -> Any:
    """One record or comparison; unknown fields, missing required ones or a wrong type are an error."""
    if not isinstance(row, dict):
        raise SchemaError(f"{source}: {key}[{index}] should be an object, got {type(row).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    if unknown := sorted(set(row) - set(known)):
        raise SchemaError(f"{source}: {key}[{index}] has fields this bench does not know: {', '.join(unknown)}")
    required = [n for n, f in known.items() if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing := [n for n in required if n not in row]:
        raise SchemaError(f"{source}: {key}[{index}] lacks {', '.join(missing)}")
    if cls is Comparison:
        ci = row["ci95"]
        if not (isinstance(ci, list) and len(ci) == 2):
            raise SchemaError(f"{source}: {key}[{index}].ci95 should be [lo, hi], got {ci!r}")
        row = {**row, "ci95": [math.inf if v is None else v for v in ci],  # an unbounded interval was saved as null
               "ratio": math.nan if row["ratio"] is None else row["ratio"]}  # so was an unstable ratio
    return cls(**row)
