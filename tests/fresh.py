"""Run a snippet as a user would: a new process, an empty folder, a fresh ``__main__``.

Starting Python and importing torch, torchvision, timm, jax and flax takes 8-9 s on 2 cores, and
the docs and the README hold dozens of snippets. So a small fork server (this file run as a
script) imports those libraries once, and each snippet runs in a new process forked from it:
what the processes share is the libraries' import (no JAX backend, no torch thread pool and none
of this project's modules exist at fork time); the snippet's own imports, variables, JAX and
torch settings, folder and ``__main__`` are its own, and it exits as ``python -c`` does (threads
joined, ``atexit`` run, the exit status of ``SystemExit`` or 1 after a traceback). A snippet that leans on an
import or a variable of another one fails as it would in ``python -c``.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import traceback
import types
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Done", "run_fresh", "run_module_fresh", "PRELOAD"]

#: What the fork server imports once (third-party only: each snippet imports this project itself).
PRELOAD = ("numpy", "torch", "torchvision", "timm", "jax", "jax.numpy", "flax.nnx", "flax.linen", "optax", "safetensors.torch")
TESTS = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Done:
    """What a snippet's process left: its exit status (negative: killed by that signal) and output."""

    returncode: int
    stdout: str
    stderr: str


def _child(request: dict) -> None:
    """In the forked process: the snippet's files, folder, argv and ``__main__``; then run it."""
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    for name, fd in ((request["out"], 1), (request["err"], 2)):
        os.dup2(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
    os.chdir(request["cwd"])
    sys.argv = request["argv"]
    sys.path[:] = ["", *(p for p in sys.path if p and Path(p).resolve() != TESTS)]  # as `python -c` in cwd
    main = types.ModuleType("__main__")
    main.__dict__["__builtins__"] = __builtins__
    sys.modules["__main__"] = main
    try:
        exec(compile(request["code"], "<string>", "exec"), main.__dict__)
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        if not isinstance(stop.code, int | None):
            print(stop.code, file=sys.stderr)
    except BaseException as err:  # the traceback python -c prints: from the snippet's frame on
        traceback.print_exception(type(err), err, err.__traceback__.tb_next)
        code = 1
    _finish(code)


def _finish(code: int) -> None:
    """Leave as the interpreter does (threads joined, ``atexit`` run, streams flushed), without
    tearing down the libraries' modules one by one (2-3 s with torch and jax loaded, and nothing a
    program may rely on)."""
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def serve() -> None:
    """The fork server: import :data:`PRELOAD`, then for each request line on stdin fork one
    child, send back its pid, wait for it and send back its exit status."""
    reply = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # whatever else the server prints goes to stderr, not into the replies
    for name in PRELOAD:
        __import__(name)
    os.chdir(tempfile.gettempdir())
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            reply.close()
            _child(request)  # never returns: the child ends in os._exit
        print(json.dumps({"pid": pid}), file=reply)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}), file=reply)


_server: subprocess.Popen | None = None


def _server_process() -> subprocess.Popen:
    global _server
    if _server is None or _server.poll() is not None:
        _server = subprocess.Popen([sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                   bufsize=1)  # fmt: skip
        atexit.register(_server.stdin.close)  # the server ends at the end of its input
    return _server


def _reply(server: subprocess.Popen, timeout: float | None) -> dict:
    if timeout is not None and not select.select([server.stdout], [], [], timeout)[0]:
        raise TimeoutError
    line = server.stdout.readline()
    if not line:
        raise RuntimeError(f"the fork server ended (exit status {server.wait()})")
    return json.loads(line)


def run_fresh(code: str, cwd: Path | str | None = None, *, argv: list[str] | None = None, timeout: float = 600) -> Done:
    """Run ``code`` as ``python -c code`` would, in ``cwd`` (default: a new empty folder).

    Args:
      code: the snippet.
      cwd: its working folder.
      argv: its ``sys.argv`` (default ``["-c"]``).
      timeout: seconds before it is killed (exit status ``-9``).
    """
    server = _server_process()
    with tempfile.TemporaryDirectory() as logs:
        out, err = os.path.join(logs, "stdout"), os.path.join(logs, "stderr")
        request = {"code": code, "argv": argv or ["-c"], "cwd": str(cwd or logs), "out": out, "err": err}
        print(json.dumps(request), file=server.stdin, flush=True)
        pid = _reply(server, None)["pid"]
        try:
            status = _reply(server, timeout)
        except TimeoutError:
            os.kill(pid, signal.SIGKILL)
            status = _reply(server, None)
        read = lambda name: Path(name).read_text() if os.path.exists(name) else ""  # noqa: E731
        return Done(status["returncode"], read(out), read(err))


def run_module_fresh(module: str, *args: str, cwd: Path | str | None = None, timeout: float = 600) -> Done:
    """Run ``python -m module args...`` as :func:`run_fresh` runs a snippet."""
    code = f"import runpy; runpy.run_module({module!r}, run_name='__main__', alter_sys=True)"
    return run_fresh(code, cwd, argv=[module, *args], timeout=timeout)


if __name__ == "__main__":
    serve()
