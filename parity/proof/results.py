"""What a ``python -m parity`` run measured, saved and rendered again: ``--out FILE`` writes every
case's figures with the run's provenance (:func:`save`); ``python -m parity render FILE PAGE ...``
writes the tables of the docs' pages from that file alone (:func:`render_page`), so a parity
figure in the docs is never typed, and a test fails when a page and its committed run part.
(The command itself is :func:`prcm.pages.render_command`.)

A page asks for a table with a section (:mod:`prcm.pages`)::

    <!-- parity:networks:start resnet18,resnet50 -->
    <!-- parity:networks:end -->

and the networks listed there get one row each: the range over the run's attentions and inputs,
judged by the limits the run used (saved with it).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from prcm import pages
from prcm.machine import commit_line, describe

__all__ = ["TAG", "record", "save", "load", "network_table", "render_page"]

#: The tag of a page's network-parity sections.
TAG = "parity:networks"
_VERSIONED = ("torch", "torchvision", "timm", "jax", "jaxlib", "flax", "numpy")


def record(result: Any) -> dict[str, Any]:
    """One case's figures as plain data (a :class:`~parity.proof.check.Result` or a
    :class:`~parity.proof.networks.NetworkResult`), with whether it passed."""
    return {**dataclasses.asdict(result), "ok": result.ok}


def save(path: Path | str, *, modules: Iterable[Any] = (), networks: Iterable[Any] = (), limits: dict[str, float] | None = None,
         argv: Sequence[str] | None = None) -> Path:  # fmt: skip
    """Write a run's results (module and network cases) and its provenance (command, versions of
    the loaded frameworks, machine, commit, date, the limits that judged it) as JSON.

    Args:
      path: the file to write (its folder is made).
      modules: results of the module sweep.
      networks: results of the network cases.
      limits: the network limits (``typical``, ``worst``: JAX's error over torch's).
      argv: the command's arguments (default ``sys.argv[1:]``).
    """
    versions = {name: getattr(sys.modules[name], "__version__", None) for name in _VERSIONED if name in sys.modules}
    meta = {"command": " ".join(["python -m parity", *(sys.argv[1:] if argv is None else argv)]),
            "versions": {"python": sys.version.split()[0], **versions}, "limits": limits or {}, **describe()}  # fmt: skip
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"meta": meta, "modules": [record(r) for r in modules], "networks": [record(r) for r in networks]}
    path.write_text(json.dumps(data, indent=1) + "\n")
    return path


def load(path: Path | str) -> dict[str, Any]:
    """A saved run, checked for every field a rendering reads.

    Raises:
      ValueError: not a results file of ``python -m parity --out``, naming the file.
    """
    want = "a results file of 'python -m parity --out' (an object with meta, modules, networks)"
    try:
        data = json.loads(Path(path).read_text())
        if not isinstance(data, dict) or not {"meta", "modules", "networks"} <= data.keys():
            raise ValueError(f"got {type(data).__name__} with keys {sorted(data) if isinstance(data, dict) else []}")
        for case in data["networks"]:
            _ = (case["case"]["network"], case["case"]["attention"], case["case"]["batch"], case["case"]["image"],
                 case["case"]["train"], case["exact"].values(), case["crossed"][1], case["ok"])  # fmt: skip
            for check in case["checks"].values():
                _ = (check["worst"][1], check["ratio"][0], check["typical"])
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as err:
        raise ValueError(f"{path}: expected {want}; {type(err).__name__}: {err}") from None
    return data


def _span(values: list[float], digits: int) -> str:
    low, high = min(values), max(values)
    text = lambda v: f"{v:.{digits}f}" if v < 100 else f"{v:.0f}"  # noqa: E731
    return text(low) if text(low) == text(high) else f"{text(low)}-{text(high)}"


def _pair(cases: list[dict[str, Any]], check: str) -> str:
    found = [c["checks"][check]["worst"] for c in cases if check in c["checks"]]
    return " / ".join(_span([f[i] for f in found], 1) for i in (0, 1)) if found else "-"


def network_table(data: dict[str, Any], networks: Sequence[str]) -> str:
    """The markdown table of ``networks`` in a saved run, one row per network, then where it comes from.

    Each row: the cases and how many passed; eval logits' and the worst gradient tensor's error,
    torch float32 / JAX float32 against float64 (eps x max|ref|, the range over cases); JAX's
    error over torch's, typical and on the worst tensor (with its limits); ReLU kinks crossed in
    the train step; the round trips.

    Raises:
      ValueError: no network, or one the run did not check.

    Examples:
        >>> check = {"tensors": 1, "worst": [2.0, 3.0], "median": [1.0, 1.0], "ratio": [1.5, "logits"], "typical": 1.5}
        >>> case = {"case": {"network": "resnet18", "attention": "none", "batch": 2, "image": 64, "train": False},
        ...         "checks": {"eval": check}, "exact": {"a": True}, "crossed": [0, 0], "ok": True}
        >>> meta = {"command": "python -m parity", "date": "2026-12-03T10:00:00", "limits": {"typical": 3.1, "worst": 10.5}}
        >>> data = {"meta": meta, "modules": [], "networks": [case]}
        >>> print(network_table(data, ["resnet18"]))  # doctest: +ELLIPSIS
        | network | cases passed | eval logits, torch / JAX | gradients, worst tensor, torch / JAX | JAX / torch, typical (limit 3.1) | JAX / torch, worst tensor (limit 10.5) | kinks crossed, torch / JAX | round trips |
        |---|---|---|---|---|---|---|---|
        | resnet18 | 1 of 1 (1 attention, 2x64) | 2.0 / 3.0 | - | 1.50 | 1.50 (eval, none) | - | exact |
        <BLANKLINE>
        Rendered from ... (`python -m parity`; commit unknown, 2026-12-03, versions unknown) by `python -m parity render`; ...
    """
    if not networks:
        raise ValueError("expected the networks of a table after the start marker, e.g. <!-- parity:networks:start resnet18,resnet50 -->")
    limits = data["meta"].get("limits") or {}
    limit = lambda name: f" (limit {limits[name]:g})" if name in limits else ""  # noqa: E731
    rows = [f"| network | cases passed | eval logits, torch / JAX | gradients, worst tensor, torch / JAX | JAX / torch, "
            f"typical{limit('typical')} | JAX / torch, worst tensor{limit('worst')} | kinks crossed, torch / JAX "
            "| round trips |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for network in networks:
        cases = [c for c in data["networks"] if c["case"]["network"] == network]
        if not cases:
            ran = sorted({c["case"]["network"] for c in data["networks"]})
            raise ValueError(f"expected a network the run checked ({', '.join(ran) or 'none'}), got {network!r}")
        attentions = sorted({c["case"]["attention"] for c in cases})
        inputs = sorted({f"{c['case']['batch']}x{c['case']['image']}" for c in cases})
        typical = max(check["typical"] for c in cases for check in c["checks"].values())
        ratio, where = max(((check["ratio"][0], f"{name}, {c['case']['attention']}") for c in cases for name, check in c["checks"].items()),
                           key=lambda found: found[0])  # the first on a tie
        trained = [c for c in cases if c["case"]["train"]]
        kinks = " / ".join(_span([c["crossed"][i] for c in trained], 0) for i in (0, 1)) if trained else "-"
        inexact = sum(not ok for c in cases for ok in c["exact"].values())
        rows.append(f"| {network} | {sum(c['ok'] for c in cases)} of {len(cases)} ({len(attentions)} attention"
                    f"{'s' * (len(attentions) > 1)}, {', '.join(inputs)}) | {_pair(cases, 'eval')} | {_pair(cases, 'grad')} "
                    f"| {typical:.2f} | {ratio:.2f} ({where}) | {kinks} | {'exact' if not inexact else f'{inexact} not exact'} |")  # fmt: skip
    return "\n".join([*rows, "", _provenance(data["meta"])])


def _provenance(meta: dict[str, Any]) -> str:
    commit = meta.get("commit") or {}
    versions = meta.get("versions") or {}
    shown = ", ".join(f"{name} {versions[name]}" for name in ("torch", "timm", "jax", "flax") if versions.get(name))
    where = commit_line(commit)
    source = meta.get("path", "a saved run")
    return (f"Rendered from {source} (`{meta.get('command', 'python -m parity')}`; {where}, {str(meta.get('date', 'date unknown'))[:10]}, "
            f"{shown or 'versions unknown'}) by `python -m parity render`; errors in float32 eps x max|ref| of each tensor, "
            "against a float64 copy of the torch model.")  # fmt: skip


def render_page(text: str, results: Path | str | dict[str, Any], source: str | None = None) -> str:
    """``text`` (a markdown page) with each of its :data:`TAG` sections rendered from ``results``
    (a saved run or its path) by :func:`network_table`; the rest of the page is kept.

    Args:
      text: the page.
      results: a saved run, or its path.
      source: how the tables name the file (default: the path as given).

    Raises:
      ValueError: markers out of order, or a section names no network or one the run did not
        check; before anything is rendered.
    """
    data = load(results) if isinstance(results, (Path, str)) else results
    name = source or (Path(results).as_posix() if isinstance(results, (Path, str)) else None)
    data = {**data, "meta": {**data["meta"], **({"path": f"`{name}`"} if name else {})}}
    wanted = [args for args, _ in pages.sections(text, TAG)]
    tables = {args: network_table(data, pages.names(args)) for args in wanted}
    return pages.fill(text, TAG, tables.__getitem__)
