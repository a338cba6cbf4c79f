"""Worker processes: one per thread setting and session, fed one point at a time.

The setting that uses every CPU this process may use runs its first session here; every
other setting and session runs in a worker process (``multiprocessing``, spawn) set up like
this one (:func:`bench.threads.configure`), so the settings take turns point by point and meet
the same machine, and every session is a process of its own (what a process fixes for its
life, where its code and buffers lie, varies between sessions as between runs). A worker that
fails or dies is an error of the run, never a hang.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
import traceback
from dataclasses import dataclass
from typing import Any

from bench.threads import glibc, configure

__all__ = ["Options", "Pools", "WorkerError"]


@dataclass(frozen=True)
class Options:
    """What a worker needs to set itself up like this process."""

    threads: int
    device: str
    backends: tuple[str, ...]
    settings: Any  # bench.plan.Settings
    jax_async_dispatch: bool
    jax_cache: str | None = None


def _serve(conn: Any, options: Options) -> None:
    """A worker: set up like the parent at ``options.threads``, then run the points it is sent
    (``(point, compare)``; ``None`` ends it); every answer is ``(True, result)`` or ``(False, the error's text)``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    _die_with_parent()
    try:
        configure(options.threads, options.jax_async_dispatch, pin=True, jax_cache=options.jax_cache)
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
    prctl, parent = glibc("prctl"), multiprocessing.parent_process()
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

    def close_session(self, session: int) -> None:
        """Stop the workers of one session once it has run every point: each holds a whole
        framework stack in memory."""
        for key in [k for k in self._workers if k[1] == session]:
            self._workers.pop(key).close(False)

    def close(self, *, kill: bool = False) -> None:
        """Stop the workers (``kill``: without waiting for a point in progress)."""
        for worker in self._workers.values():
            worker.close(kill)
        self._workers.clear()
