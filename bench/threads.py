"""Thread settings: which ones to run, and a runner per setting.

Both frameworks always get the same setting: ``torch.set_num_threads`` and the size of XLA's
thread pool (XLA sizes it from the process's CPU affinity when JAX starts its backend, so a
worker is pinned to that many CPUs until then, and unpinned after, see :func:`configure`). A setting therefore lives in its own process: the setting that
uses every CPU this process may use runs here, every other one in a worker process started
once (``multiprocessing``, spawn) and fed one point at a time, so the settings take turns
point by point and meet the same machine. A worker that fails or dies is an error of the
run, never a hang.
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import os
import signal
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["cpus", "parse_threads", "configure", "steady_malloc", "release_memory", "ALLOCATOR", "Options", "Pools", "WorkerError"]


def cpus() -> list[int]:
    """The CPUs this process may use."""
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))


def parse_threads(available: int) -> Callable[[str], tuple[int, ...]]:
    """Parse ``--threads``: comma-separated counts or ``all``, each from 1 to ``available``.

    Args:
      available: how many CPUs this process may use.

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


@dataclass(frozen=True)
class Options:
    """What a worker needs to set itself up like this process."""

    threads: int
    device: str
    backends: tuple[str, ...]
    settings: Any  # bench.suites.Settings
    jax_async_dispatch: bool


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
    mallopt = _glibc("mallopt")
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
    malloc_trim = _glibc("malloc_trim")
    return malloc_trim is not None and bool(malloc_trim(0))


def _glibc(name: str) -> Callable[..., int] | None:
    """glibc's function ``name``, or ``None`` on another C library."""
    import ctypes
    import ctypes.util

    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), name)
    except (OSError, AttributeError):
        return None


def configure(threads: int, jax_async_dispatch: bool, *, pin: bool) -> None:
    """Give both frameworks ``threads`` threads, JAX the dispatch mode of the run, and the
    process :func:`steady_malloc`.

    With ``pin``, the process is restricted to ``threads`` CPUs while JAX starts its CPU
    backend (XLA sizes its thread pool from the affinity), then every thread of the process
    may again run on any of this process's CPUs: one thread of computation per framework
    that the OS can move to whichever core another process leaves free.

    Args:
      threads: threads for torch (and, with ``pin``, XLA's pool).
      jax_async_dispatch: keep JAX's asynchronous CPU dispatch.
      pin: size XLA's pool to ``threads`` (must run before JAX starts).
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
    if pin and hasattr(os, "sched_setaffinity"):
        jax.devices("cpu")  # the pool is sized now
        for task in os.listdir("/proc/self/task"):
            try:
                os.sched_setaffinity(int(task), allowed)
            except OSError:  # a thread that has just ended
                pass


def _serve(conn: Any, options: Options) -> None:
    """A worker: set up like the parent at ``options.threads``, then run the points it is sent
    (``(point, compare)``; ``None`` ends it); every answer is ``(True, result)`` or ``(False, the error's text)``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    _die_with_parent()
    try:
        configure(options.threads, options.jax_async_dispatch, pin=True)
        from bench.backends import resolve_device
        from bench.runner import Runner
        from parity.proof.precision import pinned_precision

        pinned_precision().__enter__()  # for the life of the worker
        device, _ = resolve_device(options.device)
        runner, failure = Runner(device, options.backends, options.settings, options.threads), None
    except Exception:
        runner, failure = None, traceback.format_exc()
    while (job := _receive(conn)) is not None:
        point, compare = job
        try:
            conn.send((True, runner.run(point, compare=compare)) if runner else (False, failure))
        except Exception:
            conn.send((False, traceback.format_exc()))


def _die_with_parent() -> None:
    """Have the kernel end this worker when the parent dies (Linux ``PR_SET_PDEATHSIG``): a
    run killed from outside (``kill``, the OOM killer) must not leave its workers timing on a
    shared machine. Elsewhere a worker ends at its next receive (:func:`_receive`)."""
    prctl, parent = _glibc("prctl"), multiprocessing.parent_process()
    pr_set_pdeathsig = 1
    if prctl is not None:
        prctl(pr_set_pdeathsig, signal.SIGKILL)
    if parent is not None and os.getppid() != parent.pid:  # it died before the call above
        os._exit(1)


def _receive(conn: Any) -> Any:
    """The next job, or ``None`` when the parent has gone."""
    try:
        return conn.recv()
    except (EOFError, OSError):
        return None


class WorkerError(RuntimeError):
    """A worker process failed or died; the message names its thread setting."""


class _Worker:
    """One process at one thread setting, fed one point at a time through a pipe."""

    def __init__(self, options: Options) -> None:
        context = multiprocessing.get_context("spawn")
        self.threads = options.threads
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, options), daemon=True)
        self.process.start()
        child.close()

    def run(self, point: Any, compare: bool) -> Any:
        try:
            self.conn.send((point, compare))
            ok, value = self.conn.recv()
        except (EOFError, BrokenPipeError, ConnectionResetError):
            self.process.join(5)
            raise WorkerError(f"the {self.threads}-thread worker died (exit code {self.process.exitcode})") from None
        if not ok:
            raise WorkerError(f"the {self.threads}-thread worker failed:\n{value}")
        return value

    def close(self, kill: bool) -> None:
        if kill or not self.process.is_alive():
            self.process.terminate()
        else:
            self.conn.send(None)
        self.process.join()


class Pools:
    """Runners per thread setting and session: this process's own for ``local`` (session 0),
    a worker for each other.

    Args:
      local: the runner of this process (its setting is ``local.threads``).
      options: how to start a worker (``threads`` is replaced per setting).
    """

    def __init__(self, local: Any, options: Options) -> None:
        self.local, self.options = local, options
        self._workers: dict[tuple[int, int], _Worker] = {}

    def run(self, point: Any, threads: int, session: int = 0, *, compare: bool = True) -> Any:
        """Run ``point`` at ``threads`` in process ``session`` of that setting (session 0 of the
        local setting is this process); the first call for a process starts it. ``compare``
        as :meth:`bench.runner.Runner.run`."""
        if threads == self.local.threads and session == 0:
            return self.local.run(point, compare=compare)
        if (threads, session) not in self._workers:
            self._workers[threads, session] = _Worker(dataclasses.replace(self.options, threads=threads))
        return self._workers[threads, session].run(point, compare)

    def close_sessions(self) -> None:
        """Stop the workers of the extra sessions (session 1 on), which only the headline
        suites use: each holds a whole framework stack in memory."""
        for key in [k for k in self._workers if k[1] > 0]:
            self._workers.pop(key).close(False)

    def close(self, *, kill: bool = False) -> None:
        """Stop the workers (``kill``: without waiting for a point in progress)."""
        for worker in self._workers.values():
            worker.close(kill)
        self._workers.clear()
