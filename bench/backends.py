"""The four backends, each turning a :class:`Call` into a timed :class:`Runnable`.

* ``torch-eager``: the function as is (under ``torch.no_grad()`` unless it is a training step).
* ``torch-compile``: ``torch.compile(fullgraph=True, dynamic=False)``; the first call compiles
  (timed apart as ``compile_s``) and yields Inductor's code, whose kernels are counted.
* ``jax-jit``: ``jax.jit(fn).lower(*args).compile()`` ahead of time (``compile_s``), then the
  compiled executable is called directly, the fastest correct dispatch path; its HLO gives
  the kernel count.
* ``jax-eager``: the function called without ``jit``, every JAX operation dispatched on its
  own (what XLA's fusion buys inside one framework, beside ``jax-jit``).

A training step also reports what it keeps for the backward pass (``saved_bytes``), each
backend in its own terms (see :data:`SAVED_BYTES`). A backend that cannot run on this machine
reports why (:func:`unavailable`), and the rest runs.
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

from bench.fusion import cuda_kernels, dispatched_ops, hlo_kernel_count, inductor_kernel_calls, inductor_temp_bytes, jaxpr_ops
from bench.plan import BACKENDS

__all__ = ["SAVED_BYTES", "Call", "Runnable", "Device", "prepare", "unavailable", "resolve_device", "channels_first"]

#: What ``saved_bytes`` counts for a training step, per backend.
SAVED_BYTES = {
    "torch-eager": "distinct storages autograd saves for the backward pass (torch.autograd.graph.saved_tensors_hooks), "
                   "each counted once; the step's own inputs (x, cot, parameters) among them are also given apart",
    "torch-compile": "buffers Inductor's generated step allocates that are not returned (its temporaries; the "
                     "forward and backward run in one graph, so nothing is handed from one to the other)",
    "jax-jit": "temporary buffers of the compiled step (compiled.memory_analysis().temp_size_in_bytes: arguments and "
               "outputs excluded; what XLA keeps between forward and backward inside the fused step)",
    "jax-eager": "residuals jax.vjp keeps for the backward pass (the leaves of the VJP function), each buffer "
                 "counted once; the step's own inputs among them are also given apart",
}  # fmt: skip


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
class Call:
    """One function of a workload with its arguments, for one framework.

    Attributes:
      fn: the function; torch tensors in and out, or JAX arrays in and out.
      args: its arguments, already on the device.
      out: turns an output into channels-first NumPy arrays, for the check against torch-eager.
      train: a training step (autograd on in torch; ``saved_bytes`` is measured).
      before: run before the call whose output is checked (e.g. seeding torch's RNG so that
        dropout draws the reference's mask).
      saved: for an eager training step, ``(saved_bytes, of which inputs)``.
      fallback_random: compile with Inductor's ``fallback_random`` (random ops drawn by eager
        torch's generator, so a seeded step is checkable against torch-eager).
      precompiled: ``fn`` calls ``torch.compile``d code itself (a network compiled, autograd
        around it): torch-compile runs it as is and compiles on its first call.
      inplace: index of an argument eager torch overwrites (a copy in place): a fresh copy of
        it is made before each call, outside the timed span, as JAX's donated input is.
    """

    fn: Callable
    args: tuple
    out: Callable[[Any], list[np.ndarray]]
    train: bool = False
    before: Callable[[], None] | None = None
    saved: Callable[[], tuple[int, int]] | None = None
    fallback_random: bool = False
    precompiled: bool = False
    inplace: int | None = None


@dataclass
class Runnable:
    """One prepared call on one backend.

    Attributes:
      run: one call; takes the value from ``setup`` (or ``None``) and returns the output.
      sync: waits until an output is ready.
      output: the checked output, as channels-first NumPy arrays.
      compile_s: compile time, measured apart (``None`` for eager).
      kernels: kernels per call (see :mod:`bench.fusion`).
      detail: what was counted, for the report.
      setup: untimed per-call preparation (a fresh input to donate), or ``None``.
      saved_bytes: for a training step, ``(saved_bytes, of which inputs or None)``.
      hlo: the compiled HLO text (jax-jit), for pass counting.
      inductor: the wrapper code Inductor generated (torch-compile), for pass counting.
    """

    run: Callable[[Any], Any]
    sync: Callable[[Any], None]
    output: Callable[[], list[np.ndarray]]
    compile_s: float | None
    kernels: int | None
    detail: str
    setup: Callable[[], Any] | None = None
    saved_bytes: tuple[int, int | None] | None = None
    hlo: str | None = None
    inductor: list[str] | None = None


def _checked(call: Call, run: Callable[[Any], Any], setup: Callable[[], Any] | None = None) -> Callable[[], list[np.ndarray]]:
    def output() -> list[np.ndarray]:
        if call.before:
            call.before()
        return call.out(run(setup() if setup else None))

    return output


def _fresh_argument(call: Call, index: int, copy: Callable[[Any], Any]) -> tuple[Callable[[], Any], Callable[[Any], tuple]]:
    """``setup`` making a fresh copy of argument ``index`` (made and synchronised outside the
    timed span), and how to put it in the call's arguments."""
    source = call.args[index]

    def args(fresh: Any) -> tuple:
        return (*call.args[:index], fresh, *call.args[index + 1 :])

    return lambda: copy(source), args


def _torch_eager(call: Call, device: Device) -> Runnable:
    setup, with_fresh = None, lambda _: call.args
    if call.inplace is not None:  # a copy in place: a fresh x each call, as a donated input
        setup, with_fresh = _fresh_argument(call, call.inplace, lambda t: t.clone())

    def run(fresh: Any = None) -> Any:
        args = with_fresh(fresh) if setup else call.args
        if call.train:
            return call.fn(*args)
        with torch.no_grad():
            return call.fn(*args)

    probe = with_fresh(setup()) if setup else call.args
    ops = dispatched_ops(lambda: call.fn(*probe), grad=call.train)
    kernels, detail = sum(ops.values()), "ATen ops: " + ", ".join(f"{k} x{v}" if v > 1 else k for k, v in ops.items())
    if device.kind == "cuda":
        kernels = cuda_kernels(run)
        detail = f"CUDA kernels; {detail}"
    saved = call.saved() if call.train and call.saved else None
    return Runnable(run, device.torch_sync, _checked(call, run, setup), None, kernels, detail, setup, saved_bytes=saved)


def _torch_compile(call: Call, device: Device) -> Runnable:
    from torch._inductor import config as inductor_config
    from torch._inductor.utils import run_and_get_code

    compiled = call.fn if call.precompiled else torch.compile(call.fn, fullgraph=True, dynamic=False)

    def run(_: Any = None) -> Any:
        if call.train:
            return compiled(*call.args)
        with torch.no_grad():
            return compiled(*call.args)

    start = time.perf_counter()
    with inductor_config.patch(fallback_random=call.fallback_random):
        _, code = run_and_get_code(run)
    device.torch_sync()
    compile_s = time.perf_counter() - start
    calls = [c for source in code for c in inductor_kernel_calls(source)]
    saved = (sum(inductor_temp_bytes(source) for source in code), None) if call.train else None
    detail = "Inductor: " + ", ".join(calls)
    return Runnable(run, device.torch_sync, _checked(call, run), compile_s, len(calls), detail, saved_bytes=saved,
                    inductor=list(code))  # fmt: skip


def _jax_jit(call: Call, device: Device, donate: int | None = None) -> Runnable:
    jitted = jax.jit(call.fn, donate_argnums=() if donate is None else (donate,))
    start = time.perf_counter()
    compiled = jitted.lower(*call.args).compile()
    compile_s = time.perf_counter() - start
    text = compiled.as_text()
    if donate is None:
        run = lambda _=None: compiled(*call.args)  # noqa: E731
        setup = None
    else:  # a fresh copy of the donated input each call, made outside the timed region
        setup, with_fresh = _fresh_argument(call, donate, lambda a: jax.block_until_ready(a.copy()))
        run = lambda fresh: compiled(*with_fresh(fresh))  # noqa: E731

    saved = None
    if call.train:
        analysis = compiled.memory_analysis()
        saved = (int(analysis.temp_size_in_bytes), None) if analysis is not None else None
    kernels = hlo_kernel_count(text)
    return Runnable(run, jax.block_until_ready, _checked(call, run, setup), compile_s, kernels, "XLA ENTRY kernels",
                    setup, saved, text)  # fmt: skip


def _jax_eager(call: Call, device: Device) -> Runnable:
    run = lambda _=None: call.fn(*call.args)  # noqa: E731
    ops = jaxpr_ops(call.fn, *call.args)
    detail = "JAX operations dispatched: " + ", ".join(f"{k} x{v}" if v > 1 else k for k, v in ops.items())
    saved = call.saved() if call.train and call.saved else None
    return Runnable(run, jax.block_until_ready, _checked(call, run), None, sum(ops.values()), detail, saved_bytes=saved)


def prepare(backend: str, call: Call, device: Device, *, donate: int | None = None) -> Runnable:
    """Compile (where the backend does) and wrap ``call``.

    Args:
      backend: one of :data:`BACKENDS`.
      call: the function, its arguments and how to read its output.
      device: the device.
      donate: index of an argument to donate (jax-jit only): its buffer is reused for the output.

    Examples:
        >>> import jax.numpy as jnp
        >>> call = Call(lambda x: x * 2, (jnp.ones(3),), out=lambda y: [np.asarray(y)])
        >>> [(a.tolist(), str(a.dtype)) for a in prepare("jax-eager", call, resolve_device("cpu")[0]).output()]
        [([2.0, 2.0, 2.0], 'float32')]
    """
    if backend == "torch-eager":
        return _torch_eager(call, device)
    if backend == "torch-compile":
        return _torch_compile(call, device)
    if backend == "jax-jit":
        return _jax_jit(call, device, donate)
    if backend == "jax-eager":
        return _jax_eager(call, device)
    raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")


def channels_first(arrays: Sequence[Any]) -> list[np.ndarray]:
    """JAX outputs as channels-first NumPy arrays (rank > 2 arrays have their last axis moved to 1)."""
    out = []
    for a in arrays:
        a = np.asarray(a)
        out.append(np.moveaxis(a, -1, 1) if a.ndim > 2 else a)
    return out
