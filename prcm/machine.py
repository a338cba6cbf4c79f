"""The machine a run measured, and where a working set sits in its memory.

What a result means depends on the machine: its CPU model and caches (a tensor that fits in
the last-level cache streams at cache bandwidth, not at DRAM's), the code's commit, the date.
:func:`describe` reads them (Linux's ``/sys`` and ``/proc``, ``git``) for ``results.json``'s
``meta`` (the benchmark's and the parity sweep's saved results); :func:`memory_level` places a
working set. Imports neither torch nor jax.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

__all__ = ["describe", "caches", "cpu_model", "commit", "commit_line", "memory_level", "last_level", "DRAM_FACTOR"]

#: A working set is DRAM-resident, and a bandwidth measured on it a claim about DRAM, from
#: this many times the last-level cache on (below, part of it is served from the cache).
DRAM_FACTOR = 4
_CACHE = Path("/sys/devices/system/cpu/cpu0/cache")


def _size(text: str) -> int:
    """``32K``, ``1024K``, ``32M`` (sysfs's notation) in bytes.

    Examples:
        >>> _size("32K"), _size("32768K"), _size("2M")
        (32768, 33554432, 2097152)
    """
    text = text.strip().upper()
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
    return int(text.rstrip("KMG")) * scale


def caches(root: Path = _CACHE) -> list[dict[str, Any]]:
    """The data and unified caches CPU 0 sees, from the smallest level up: ``level``, ``type``,
    ``bytes`` (one instance) and ``shared_by`` (how many CPUs share that instance). Empty where
    the OS does not say (not Linux)."""
    found = []
    for index in sorted(root.glob("index*")):
        try:
            kind = (index / "type").read_text().strip()
            level = int((index / "level").read_text())
            size = _size((index / "size").read_text())
            shared = (index / "shared_cpu_list").read_text().strip()
        except (OSError, ValueError):
            continue
        if kind in ("Data", "Unified"):
            found.append({"level": level, "type": kind, "bytes": size, "shared_by": len(_cpu_list(shared))})
    return sorted(found, key=lambda c: c["level"])


def _cpu_list(text: str) -> list[int]:
    """``0-3,8`` as ``[0, 1, 2, 3, 8]``."""
    out: list[int] = []
    for part in filter(None, text.split(",")):
        lo, _, hi = part.partition("-")
        out += range(int(lo), int(hi or lo) + 1)
    return out


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what :mod:`platform` says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def commit(where: Path | None = None) -> dict[str, Any] | None:
    """The git commit of the code that ran (``hash``, ``dirty``: uncommitted changes to tracked
    files), or ``None`` outside a git checkout or without git."""
    where = where or Path(__file__).resolve().parent
    try:
        run = lambda *args: subprocess.run(["git", *args], cwd=where, capture_output=True, text=True, timeout=10)  # noqa: E731
        head = run("rev-parse", "HEAD")
        if head.returncode != 0:
            return None
        status = run("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return {"hash": head.stdout.strip(), "dirty": bool(status.stdout.strip())}


def commit_line(found: dict[str, Any] | None) -> str:
    """How a rendered page names the commit of a saved run (:func:`commit`'s dict, or ``None``).

    Examples:
        >>> commit_line({"hash": "0123456789abcdef", "dirty": True}), commit_line(None)
        ('commit 0123456789 with uncommitted changes', 'commit unknown')
    """
    if not found or not found.get("hash"):
        return "commit unknown"
    return f"commit {found['hash'][:10]}{' with uncommitted changes' if found.get('dirty') else ''}"


def describe() -> dict[str, Any]:
    """The machine and the moment, for ``meta``: ``machine`` (platform, CPU model, CPUs, memory,
    caches), ``commit`` and ``date``."""
    return {
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_model": cpu_model(), "cpus": os.cpu_count(), "memory_bytes": _memory_bytes(), "caches": caches()},
        "commit": commit(),
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
    }  # fmt: skip


def last_level(found: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The last-level cache of :func:`caches`' list, or ``None``."""
    return max(found, key=lambda c: c["level"]) if found else None


def memory_level(nbytes: int, found: list[dict[str, Any]]) -> str:
    """Where a working set of ``nbytes`` sits: the first cache level that holds it (``L1`` ..
    ``L3``), ``DRAM`` from :data:`DRAM_FACTOR` x the last-level cache on, and in between
    ``DRAM/L3`` (partly served from that cache); ``unknown`` without cache sizes.

    Examples:
        >>> found = [{"level": 1, "type": "Data", "bytes": 32 << 10, "shared_by": 1},
        ...          {"level": 2, "type": "Unified", "bytes": 1 << 20, "shared_by": 1},
        ...          {"level": 3, "type": "Unified", "bytes": 32 << 20, "shared_by": 2}]
        >>> [memory_level(n, found) for n in (16 << 10, 512 << 10, 12 << 20, 34 << 20, 128 << 20, 64)]
        ['L1', 'L2', 'L3', 'DRAM/L3', 'DRAM', 'L1']
    """
    if not found:
        return "unknown"
    for cache in found:
        if nbytes <= cache["bytes"]:
            return f"L{cache['level']}"
    last = last_level(found)
    return "DRAM" if nbytes >= DRAM_FACTOR * last["bytes"] else f"DRAM/L{last['level']}"
