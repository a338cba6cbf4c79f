"""A process set up for timing: its thread setting, JAX's dispatch mode and compilation
cache, and an allocator that does not move a call's time.

Both frameworks always get the same setting: ``torch.set_num_threads`` and the size of XLA's
thread pool (XLA sizes it from the process's CPU affinity when JAX starts its backend, so a
worker is pinned to that many CPUs until then, and unpinned after, see :func:`configure`). A
setting therefore lives in its own processes (:mod:`bench.workers`). Imports torch and jax
only when :func:`configure` runs.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

__all__ = ["cpus", "parse_threads", "configure", "steady_malloc", "release_memory", "glibc", "ALLOCATOR"]


def cpus() -> list[int]:
    """The CPUs this process may use."""
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))


def parse_threads(available: int) -> Callable[[str], tuple[int, ...]]:
    """Parse ``--threads``: comma-separated counts or ``all``, each from 1 to ``available``.

    Args:
      available: how many CPUs this process may use.

    Examples:
        >>> parse_threads(2)("1,all")
        (1, 2)
        >>> parse_threads(2)("all,2")
        (2,)
        >>> parse_threads(2)("0")
        Traceback (most recent call last):
        ...
        argparse.ArgumentTypeError: expected thread counts from 1 to 2 or 'all', comma-separated, got '0'
    """

    def parse(text: str) -> tuple[int, ...]:
        values = []
        for token in (t.strip() for t in text.split(",")):
            value = available if token == "all" else int(token) if token.isdigit() else 0
            if not 1 <= value <= available:
                raise argparse.ArgumentTypeError(
                    f"expected thread counts from 1 to {available} or 'all', comma-separated, got {text!r}"
                    + (f" (this process may use {available} CPUs)" if value > available else "")
                )
            values.append(value)
        return tuple(sorted(set(values)))

    return parse


#: What :func:`steady_malloc` sets, for ``results.json``'s ``meta``.
ALLOCATOR = ("glibc malloc: M_TRIM_THRESHOLD 128 MiB, M_MMAP_THRESHOLD 32 MiB (mallopt), so a freed buffer below 32 MiB "
             "is reused rather than handed back to the OS and faulted in again by the next call; larger ones are "
             "mapped afresh per call, in both frameworks")  # fmt: skip


def steady_malloc() -> bool:
    """Keep freed memory in glibc's heap, so that a call's time does not depend on where
    the heap's top happens to lie.

    Both frameworks allocate their outputs on the CPU with ``malloc``. With glibc's
    defaults, whether a freed megabyte goes back to the OS (and the next call pays a page
    fault per 4 KiB to get it back) depends on what else sits above it in the heap: the same
    eager AffinePRCM call at the seed point took 0.13 ms or 0.9 ms depending on whether an
    earlier input copy was still alive. Raising the trim threshold (and fixing the mmap
    threshold at 32 MiB) removes that bimodality for every tensor below 32 MiB. Above it glibc still maps each allocation afresh (what the
    roofline's ``fresh`` variant shows, in both frameworks, against ``donated``); 32 MiB is
    the ceiling of glibc's own dynamic threshold, fixed here so it does not move during the
    run. Returns whether it was set (glibc only).
    """
    mallopt = glibc("mallopt")
    if mallopt is None:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_trim_threshold, 128 << 20)) and bool(mallopt(m_mmap_threshold, 32 << 20))


def release_memory() -> bool:
    """Hand the heap's free pages back to the OS (glibc's ``malloc_trim``), between points.

    :func:`steady_malloc` keeps freed buffers for the next call, which is what a point's
    timing wants and what a run of many points cannot afford: each process would keep the
    high-water mark of every point it ran (a training step at batch 16 left 2.2 GB where 1.0
    GB was live), and six processes at the training sweep's batch 32 outgrew 24 GiB. Returns
    whether anything was released (glibc only).
    """
    malloc_trim = glibc("malloc_trim")
    return malloc_trim is not None and bool(malloc_trim(0))


def glibc(name: str) -> Callable[..., int] | None:
    """glibc's function ``name``, or ``None`` on another C library."""
    import ctypes
    import ctypes.util

    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), name)
    except (OSError, AttributeError):
        return None


def configure(threads: int, jax_async_dispatch: bool, *, pin: bool, jax_cache: str | None = None) -> None:
    """Give both frameworks ``threads`` threads, JAX the dispatch mode of the run (and its
    compilation cache), and the process :func:`steady_malloc`.

    With ``pin``, the process is restricted to ``threads`` CPUs while JAX starts its CPU
    backend (XLA sizes its thread pool from the affinity), then every thread of the process
    may again run on any of this process's CPUs: one thread of computation per framework
    that the OS can move to whichever core another process leaves free.

    Args:
      threads: threads for torch (and, with ``pin``, XLA's pool).
      jax_async_dispatch: keep JAX's asynchronous CPU dispatch.
      pin: size XLA's pool to ``threads`` (must run before JAX starts).
      jax_cache: a folder for JAX's persistent compilation cache, every compilation kept: the
        run's later sessions load what its first compiled (as torch.compile's own cache does),
        so a session costs its timing, not its compiles (``None``: JAX's default).
    """
    import torch

    steady_malloc()
    allowed = cpus()
    if pin and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, allowed[:threads])
    torch.set_num_threads(threads)
    import jax

    # A synchronised per-call latency gains nothing from handing each CPU call to a worker
    # thread; on this kind of machine the hand-off alone costs tens of microseconds.
    jax.config.update("jax_cpu_enable_async_dispatch", jax_async_dispatch)
    if jax_cache is not None:
        jax.config.update("jax_compilation_cache_dir", jax_cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    if pin and hasattr(os, "sched_setaffinity"):
        jax.devices("cpu")  # the pool is sized now
        for task in os.listdir("/proc/self/task"):
            try:
                os.sched_setaffinity(int(task), allowed)
            except OSError:  # a thread that has just ended
                pass


