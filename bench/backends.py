"""The three backends, each turning a function and its arguments into a timed callable.

* ``torch-eager``: the function as is, under ``torch.no_grad()``.
* ``torch-compile``: ``torch.compile(fullgraph=True, dynamic=False)``; the first call
  compiles (timed apart as ``compile_s``) and yields Inductor's code, whose kernels are counted.
* ``jax-jit``: ``jax.jit(fn).lower(*args).compile()`` ahead of time (``compile_s``), then the
  compiled executable is called directly, the fastest correct dispatch path; its HLO gives
  the kernel count.

A backend that cannot run on this machine reports why (:func:`unavailable`), and the rest runs.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
import torch

from bench.fusion import cuda_kernels, dispatched_ops, hlo_kernel_count, inductor_kernel_calls
from parity.arrays import to_numpy

__all__ = ["BACKENDS", "Runnable", "Device", "prepare", "unavailable", "resolve_device"]

BACKENDS: tuple[str, ...] = ("torch-eager", "torch-compile", "jax-jit")


@dataclass(frozen=True)
class Device:
    """Where both frameworks run: ``kind`` is ``cpu`` or ``cuda``."""

    kind: str
    torch: torch.device
    jax: Any  # a jax.Device

    @property
    def name(self) -> str:
        if self.kind == "cuda":
            return torch.cuda.get_device_name(self.torch)
        return "cpu"

    def torch_sync(self, _: Any = None) -> None:
        """Wait for queued torch work (a no-op on the CPU, where torch runs synchronously)."""
        if self.kind == "cuda":
            torch.cuda.synchronize(self.torch)


def resolve_device(requested: str) -> tuple[Device | None, str | None]:
    """The device for ``auto`` / ``cpu`` / ``cuda``, or ``None`` and the reason it is unavailable."""
    gpu = torch.cuda.is_available()
    kind = ("cuda" if gpu else "cpu") if requested == "auto" else requested
    if kind == "cpu":
        return Device("cpu", torch.device("cpu"), jax.devices("cpu")[0]), None
    if not gpu:
        return None, "no CUDA device visible to torch (torch.cuda.is_available() is False)"
    try:
        jax_gpu = jax.devices("gpu")[0]
    except RuntimeError as err:
        return None, f"JAX sees no GPU ({str(err).splitlines()[0]}); install jax[cuda12] for GPU runs"
    return Device("cuda", torch.device("cuda"), jax_gpu), None


def unavailable(backend: str, device: Device) -> str | None:
    """Why ``backend`` cannot run on ``device``, or ``None`` when it can."""
    if backend == "torch-compile" and device.kind == "cpu" and shutil.which("g++") is None and shutil.which("c++") is None:
        return "torch.compile on the CPU needs a C++ compiler (g++), none on PATH"
    if backend == "torch-compile" and device.kind == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError:
            return "torch.compile on the GPU needs triton, which is not installed"
    return None


@dataclass
class Runnable:
    """One prepared function on one backend.

    Attributes:
      run: one call; takes the value from ``setup`` (or ``None``) and returns the output.
      sync: waits until an output is ready.
      output: the output as a channels-first NumPy array, for the check against torch-eager.
      compile_s: compile time, measured apart (``None`` for eager).
      kernels: kernels per call (see :mod:`bench.fusion`).
      detail: what was counted, for the report.
      setup: untimed per-call preparation (a fresh input to donate), or ``None``.
    """

    run: Callable[[Any], Any]
    sync: Callable[[Any], None]
    output: Callable[[], np.ndarray]
    compile_s: float | None
    kernels: int | None
    detail: str
    setup: Callable[[], Any] | None = None


def _torch_eager(fn: Callable, args: Sequence[Any], device: Device, to_first: Callable) -> Runnable:
    def run(_: Any = None) -> Any:
        with torch.no_grad():
            return fn(*args)

    ops = dispatched_ops(lambda: fn(*args))
    kernels, detail = sum(ops.values()), "ATen ops: " + ", ".join(f"{k} x{v}" if v > 1 else k for k, v in ops.items())
    if device.kind == "cuda":
        kernels = cuda_kernels(run)
        detail = f"CUDA kernels; {detail}"
    return Runnable(run, device.torch_sync, lambda: to_first(run()), None, kernels, detail)


def _torch_compile(fn: Callable, args: Sequence[Any], device: Device, to_first: Callable) -> Runnable:
    from torch._inductor.utils import run_and_get_code

    compiled = torch.compile(fn, fullgraph=True, dynamic=False)
    start = time.perf_counter()
    with torch.no_grad():
        _, code = run_and_get_code(compiled, *args)
    device.torch_sync()
    compile_s = time.perf_counter() - start
    calls = [call for source in code for call in inductor_kernel_calls(source)]

    def run(_: Any = None) -> Any:
        with torch.no_grad():
            return compiled(*args)

    return Runnable(run, device.torch_sync, lambda: to_first(run()), compile_s, len(calls), "Inductor: " + ", ".join(calls))


def _jax_jit(fn: Callable, args: Sequence[Any], device: Device, to_first: Callable, donate: int | None = None) -> Runnable:
    jitted = jax.jit(fn, donate_argnums=() if donate is None else (donate,))
    start = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    compile_s = time.perf_counter() - start
    text = compiled.as_text()
    if donate is None:
        run = lambda _=None: compiled(*args)  # noqa: E731
        setup = None
    else:  # a fresh copy of the donated input each call, made outside the timed region
        source = args[donate]
        setup = lambda: jax.block_until_ready(source.copy())  # noqa: E731

        def run(fresh):
            call_args = list(args)
            call_args[donate] = fresh
            return compiled(*call_args)

    output = lambda: to_first(run(setup() if setup else None))  # noqa: E731
    return Runnable(run, jax.block_until_ready, output, compile_s, hlo_kernel_count(text), "XLA ENTRY kernels", setup)


def prepare(
    backend: str, fn: Callable, args: Sequence[Any], device: Device, *, channels_last: bool = False, donate: int | None = None
) -> Runnable:
    """Compile (where the backend does) and wrap ``fn(*args)``.

    Args:
      backend: one of :data:`BACKENDS`.
      fn: the function; torch tensors in, torch tensor out, or JAX arrays in and out.
      args: its arguments, already on the device.
      device: the device.
      channels_last: whether the output is channels-last (Flax layout), for the check.
      donate: index of an argument to donate (jax-jit only): its buffer is reused for the output.
    """
    def to_first(out: Any) -> np.ndarray:
        out = to_numpy(out) if isinstance(out, torch.Tensor) else np.asarray(out)
        return np.moveaxis(out, -1, 1) if channels_last and out.ndim > 2 else out

    if backend == "torch-eager":
        return _torch_eager(fn, args, device, to_first)
    if backend == "torch-compile":
        return _torch_compile(fn, args, device, to_first)
    if backend == "jax-jit":
        return _jax_jit(fn, args, device, to_first, donate)
    raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
