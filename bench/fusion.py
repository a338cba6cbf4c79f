"""Counting the kernels one call launches, per backend.

* jax-jit: instructions of the ENTRY computation of the optimised HLO that launch work
  (fusions, custom calls, unfused dots, reductions, copies, ...); parameters, constants,
  bitcasts and tuple plumbing do not. Opcodes are parsed, not guessed from metadata.
* torch-eager: ATen operators dispatched per call (a ``TorchDispatchMode``); on a GPU also
  the CUDA kernels the profiler records.
* torch-compile: the kernel calls in the wrapper Inductor generated (``cpp_fused_*`` /
  ``triton_*`` kernels and ``extern_kernels.*`` library calls).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["hlo_entry_opcodes", "hlo_kernel_count", "dispatched_ops", "cuda_kernels", "inductor_kernel_calls"]

#: HLO opcodes in ENTRY that move no data and launch nothing.
FREE_OPCODES = frozenset({"parameter", "constant", "bitcast", "tuple", "get-tuple-element", "after-all", "partition-id", "replica-id"})  # fmt: skip


def _skip_shape(text: str) -> str:
    """Drop the result shape at the start of ``text`` (a tuple shape is parenthesised)."""
    if not text.startswith("("):
        return text.split(" ", 1)[1]
    depth = 0
    for i, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0:
            return text[i + 1 :].lstrip()
    raise ValueError(f"unbalanced shape in HLO line: {text[:80]}")


def hlo_entry_opcodes(hlo_text: str) -> Counter[str]:
    """Opcode counts of the ENTRY computation of an HLO module's text.

    Args:
      hlo_text: ``compiled.as_text()`` (or any HLO module text).

    >>> text = '''ENTRY %main (p: f32[4]) -> (f32[4], f32[]) {
    ...   %p = f32[4]{0} parameter(0), metadata={op_name="fusion(x)"}
    ...   %f = f32[4]{0} fusion(%p), kind=kLoop, calls=%c
    ...   %r = f32[] reduce(%p, %z), dimensions={0}, to_apply=%add
    ...   ROOT %t = (f32[4]{0}, f32[]) tuple(%f, %r)
    ... }'''
    >>> sorted(hlo_entry_opcodes(text).items())
    [('fusion', 1), ('parameter', 1), ('reduce', 1), ('tuple', 1)]
    """
    lines = hlo_text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("ENTRY ")), None)
    if start is None:
        raise ValueError("no ENTRY computation in the HLO text")
    counts: Counter[str] = Counter()
    for line in lines[start + 1 :]:
        if line.startswith("}"):
            break
        body = line.strip().removeprefix("ROOT ").strip()
        if " = " not in body:
            continue
        rest = _skip_shape(body.split(" = ", 1)[1])
        opcode = re.match(r"[\w\-]+", rest)
        if opcode is None:
            raise ValueError(f"cannot parse HLO instruction: {line.strip()[:80]}")
        counts[opcode.group(0)] += 1
    return counts


def hlo_kernel_count(hlo_text: str) -> int:
    """Kernel-launching instructions in ENTRY (everything but :data:`FREE_OPCODES`)."""
    return sum(n for op, n in hlo_entry_opcodes(hlo_text).items() if op not in FREE_OPCODES)


class _CountOps(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[str(func.overloadpacket.__name__)] += 1
        return func(*args, **(kwargs or {}))


def dispatched_ops(call: Callable[[], Any]) -> Counter[str]:
    """ATen operators dispatched by one call (views included).

    >>> sorted(dispatched_ops(lambda: torch.ones(3).sigmoid()).items())
    [('ones', 1), ('sigmoid', 1)]
    """
    with torch.no_grad(), _CountOps() as mode:
        call()
    return mode.ops


def cuda_kernels(call: Callable[[], Any]) -> int:
    """CUDA kernels launched by one call, from the profiler (GPU only)."""
    from torch.profiler import ProfilerActivity, profile

    with torch.no_grad(), profile(activities=[ProfilerActivity.CUDA]) as prof:
        call()
        torch.cuda.synchronize()
    return sum(1 for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA)


_KERNEL_CALL = re.compile(r"^\s+(?:\w+\s*=\s*)?((?:cpp_fused|triton)\w*|extern_kernels\.\w+|torch\.ops\.[\w.]+)\s*[.(]")


def inductor_kernel_calls(wrapper_code: str) -> list[str]:
    """Kernel calls in the ``call`` function of an Inductor wrapper, in order.

    >>> inductor_kernel_calls('''def call(args):
    ...     buf0 = empty_strided_cpu((2, 64), (64, 1), torch.float32)
    ...     cpp_fused_mean_0(buf0, arg1_1)
    ...     extern_kernels.mm(buf0, arg0_1, out=buf2)
    ...     triton_poi_fused_1.run(buf2, stream=stream0)
    ...     return (buf2, )''')
    ['cpp_fused_mean_0', 'extern_kernels.mm', 'triton_poi_fused_1']
    """
    match = re.search(r"\n\s*def call\(self, args\):|^def call\(args\):|\ndef call\(args\):", wrapper_code)
    body = wrapper_code[match.end():] if match else wrapper_code
    calls = []
    for line in body.splitlines():
        if re.match(r"^\S", line) or re.match(r"^    def ", line) and calls:
            break
        found = _KERNEL_CALL.match(line)
        if found:
            calls.append(found.group(1))
    return calls
