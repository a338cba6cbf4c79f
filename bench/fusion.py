"""Counting the kernels one call launches, per backend.

* jax-jit: instructions of the ENTRY computation of the optimised HLO that launch work
  (fusions, custom calls, unfused dots, reductions, copies, ...); parameters, constants,
  bitcasts and tuple plumbing do not. Opcodes are parsed, not guessed from metadata.
* torch-eager: ATen operators dispatched per call (a ``TorchDispatchMode``); on a GPU also
  the CUDA kernels the profiler records.
* torch-compile: the kernel calls in the wrapper Inductor generated (``cpp_fused_*`` /
  ``triton_*`` kernels and ``extern_kernels.*`` library calls).
* jax-eager: the operations dispatched one by one (top-level equations of the function's
  jaxpr; a ``jit``-wrapped ``jnp`` function is one dispatch).

Beyond counting, the compiled code tells how often a kernel sweeps a large tensor
(:func:`hlo_full_size_passes`) and what an Inductor step allocates (:func:`inductor_temp_bytes`).
"""

from __future__ import annotations

import ast
import math
import re
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["hlo_entry_opcodes", "hlo_kernel_count", "hlo_full_size_passes", "dispatched_ops", "cuda_kernels",
           "inductor_kernel_calls", "inductor_temp_bytes", "inductor_full_size_passes", "jaxpr_ops"]

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


def _entry_instructions(hlo_text: str) -> Iterator[tuple[str, str]]:
    """``(name, the rest after " = ")`` of each instruction of the ENTRY computation."""
    lines = hlo_text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("ENTRY ")), None)
    if start is None:
        raise ValueError("no ENTRY computation in the HLO text")
    for line in lines[start + 1 :]:
        if line.startswith("}"):
            return
        body = line.strip().removeprefix("ROOT ").strip()
        if " = " in body:
            name, rest = body.split(" = ", 1)
            yield name, rest


def hlo_entry_opcodes(hlo_text: str) -> Counter[str]:
    """Opcode counts of the ENTRY computation of an HLO module's text.

    Args:
      hlo_text: ``compiled.as_text()`` (or any HLO module text).

    Examples:
        >>> text = '''ENTRY %main (p: f32[4]) -> (f32[4], f32[]) {
        ...   %p = f32[4]{0} parameter(0), metadata={op_name="fusion(x)"}
        ...   %f = f32[4]{0} fusion(%p), kind=kLoop, calls=%c
        ...   %r = f32[] reduce(%p, %z), dimensions={0}, to_apply=%add
        ...   ROOT %t = (f32[4]{0}, f32[]) tuple(%f, %r)
        ... }'''
        >>> sorted(hlo_entry_opcodes(text).items())
        [('fusion', 1), ('parameter', 1), ('reduce', 1), ('tuple', 1)]
    """
    counts: Counter[str] = Counter()
    for name, text in _entry_instructions(hlo_text):
        opcode = re.match(r"[\w\-]+", _skip_shape(text))
        if opcode is None:
            raise ValueError(f"cannot parse HLO instruction {name}: {text.strip()[:80]}")
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


def dispatched_ops(call: Callable[[], Any], *, grad: bool = False) -> Counter[str]:
    """ATen operators dispatched by one call (views included; with ``grad``, the backward's too).

    Args:
      call: the call.
      grad: run with autograd on (a training step); otherwise under ``torch.no_grad()``.

    Examples:
        >>> sorted(dispatched_ops(lambda: torch.ones(3).sigmoid()).items())
        [('ones', 1), ('sigmoid', 1)]
    """
    with torch.set_grad_enabled(grad), _CountOps() as mode:
        call()
    return mode.ops


def cuda_kernels(call: Callable[[], Any]) -> int:
    """CUDA kernels launched by one call, from the profiler (GPU only)."""
    from torch.profiler import ProfilerActivity, profile

    with torch.no_grad(), profile(activities=[ProfilerActivity.CUDA]) as prof:
        call()
        torch.cuda.synchronize()
    return sum(1 for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA)


_CALL = re.compile(r"\n\s*def call\(self, args\):|^def call\(args\):|\ndef call\(args\):")


def _call_body(wrapper_code: str) -> str:
    """What follows the ``call`` function's header in Inductor's wrapper (all of it without one)."""
    match = _CALL.search(wrapper_code)
    return wrapper_code[match.end() :] if match else wrapper_code


_KERNEL_CALL = re.compile(r"^\s+(?:\w+\s*=\s*)?((?:cpp_fused|triton)\w*|extern_kernels\.\w+|torch\.ops\.[\w.]+)\s*[.(]")


def inductor_kernel_calls(wrapper_code: str) -> list[str]:
    """Kernel calls in the ``call`` function of an Inductor wrapper, in order.

    Examples:
        >>> inductor_kernel_calls('''def call(args):
        ...     buf0 = empty_strided_cpu((2, 64), (64, 1), torch.float32)
        ...     cpp_fused_mean_0(buf0, arg1_1)
        ...     extern_kernels.mm(buf0, arg0_1, out=buf2)
        ...     triton_poi_fused_1.run(buf2, stream=stream0)
        ...     return (buf2, )''')
        ['cpp_fused_mean_0', 'extern_kernels.mm', 'triton_poi_fused_1']
    """
    body = _call_body(wrapper_code)
    calls = []
    for line in body.splitlines():
        if re.match(r"^\S", line) or re.match(r"^    def ", line) and calls:
            break
        found = _KERNEL_CALL.match(line)
        if found:
            calls.append(found.group(1))
    return calls


_ALLOC = re.compile(r"^\s+(\w+) = empty_strided_\w+\(\(([^)]*)\), \([^)]*\), torch\.(\w+)\)")
_ALIAS = re.compile(r"^\s+(\w+) = (?:reinterpret_tensor\()?(\w+)[,;)]")
_RETURN = re.compile(r"^\s+return \((.*)\)")


def inductor_temp_bytes(wrapper_code: str) -> int:
    """Bytes of the buffers an Inductor wrapper's ``call`` allocates and does not return.

    A buffer reused for another (``buf5 = buf4; del buf4  # reuse``) or viewed
    (``reinterpret_tensor(buf3, ...)``) counts once, as its first allocation; a buffer that
    ends up returned is an output, not a temporary.

    Args:
      wrapper_code: the generated wrapper (one of ``run_and_get_code``'s sources).

    Examples:
        >>> inductor_temp_bytes('''def call(args):
        ...     buf0 = empty_strided_cpu((8, 64), (64, 1), torch.float32)
        ...     buf1 = empty_strided_cpu((8, 64, 56, 56), (200704, 3136, 56, 1), torch.float32)
        ...     buf2 = buf0; del buf0  # reuse
        ...     buf3 = empty_strided_cpu((2, 8), (8, 1), torch.float32)
        ...     return (buf1, buf2, )''')
        64
    """
    body = _call_body(wrapper_code)
    sizes: dict[str, int] = {}
    root: dict[str, str] = {}
    returned: set[str] = set()
    for line in body.splitlines():
        if re.match(r"^\S", line):
            break
        if found := _ALLOC.match(line):
            name, shape, dtype = found.groups()
            numel = math.prod(int(d) for d in shape.replace(" ", "").split(",") if d)
            sizes[name] = numel * getattr(torch, dtype).itemsize
            root[name] = name
        elif found := _ALIAS.match(line):
            name, source = found.groups()
            if source in root:
                root[name] = root[source]
        elif found := _RETURN.match(line):
            returned |= {root.get(n.strip(), n.strip()) for n in found.group(1).split(",") if n.strip()}
            break
    return sum(size for name, size in sizes.items() if name not in returned)


def _name(node: ast.AST) -> str | None:
    """The buffer a kernel argument refers to (``buf3``, or the first argument of ``reinterpret_tensor``)."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Call) and node.args:
        return _name(node.args[0])
    return None


def inductor_full_size_passes(wrapper_code: str, numel: int) -> int:
    """How many times the kernels of an Inductor wrapper's ``call`` touch a buffer of ``numel``
    elements: one pass per such argument of each kernel or library call (the same yardstick
    as :func:`hlo_full_size_passes`; an in-place argument counts once).

    Args:
      wrapper_code: the generated wrapper.
      numel: elements of the large tensor (the module's input).

    Examples:
        >>> inductor_full_size_passes('''def call(args):
        ...     arg0_1, arg1_1 = args
        ...     assert_size_stride(arg1_1, (8, 64), (64, 1), 'input')
        ...     buf0 = empty_strided_cpu((8, ), (1, ), torch.float32)
        ...     cpp_fused_mean_0(arg1_1, buf0)
        ...     buf1 = empty_strided_cpu((8, 64), (64, 1), torch.float32)
        ...     cpp_fused_mul_1(arg1_1, buf0, buf1)
        ...     buf2 = buf1; del buf1  # reuse
        ...     cpp_fused_neg_2(buf2)
        ...     return (buf2, )''', 8 * 64)
        4
    """
    body = _call_body(wrapper_code)
    sizes: dict[str, int] = {}
    passes = 0
    for line in body.splitlines():
        if re.match(r"^\S", line):
            break
        try:
            tree = ast.parse(line.strip())
        except SyntaxError:
            continue
        node = tree.body[0] if tree.body else None
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Name) and node.value.id in sizes:
            sizes[node.targets[0].id] = sizes[node.value.id]  # buf3 = buf1; del buf1  # reuse
            continue
        call = node.value if isinstance(node, (ast.Expr, ast.Assign)) and isinstance(node.value, ast.Call) else None
        if call is None:
            continue
        func = ast.unparse(call.func)
        if func == "assert_size_stride":
            sizes[_name(call.args[0])] = math.prod(ast.literal_eval(call.args[1]))
        elif func == "assert_size_stride_grouped":
            for arg, shape in zip(call.args[0].elts, ast.literal_eval(call.args[1])):
                sizes[_name(arg)] = math.prod(shape)
        elif func.startswith("empty_strided") and isinstance(node, ast.Assign):
            sizes[node.targets[0].id] = math.prod(ast.literal_eval(call.args[0]))
        elif _KERNEL_CALL.match(line):
            args = [*call.args, *(k.value for k in call.keywords if k.arg == "out")]
            passes += sum(sizes.get(_name(a)) == numel for a in args)
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) and node.targets[0].id not in sizes:
            source = _name(call) if func == "reinterpret_tensor" else None
            if source in sizes:
                sizes[node.targets[0].id] = sizes[source]
    return passes


_DTYPE_BYTES = {"f64": 8, "s64": 8, "u64": 8, "c64": 8, "f32": 4, "s32": 4, "u32": 4, "bf16": 2, "f16": 2, "s16": 2,
                "u16": 2, "s8": 1, "u8": 1, "pred": 1}  # fmt: skip
_SHAPE = re.compile(r"^(\w+)\[([\d,]*)\]")


def _shape_bytes(text: str) -> int | None:
    found = _SHAPE.match(text)
    if not found or found.group(1) not in _DTYPE_BYTES:
        return None
    return math.prod(int(d) for d in found.group(2).split(",") if d) * _DTYPE_BYTES[found.group(1)]


def hlo_full_size_passes(hlo_text: str, nbytes: int) -> int:
    """How many times the ENTRY kernels read or write an array of ``nbytes`` bytes: each
    launching instruction counts one pass per such operand and one for such a result.

    Args:
      hlo_text: ``compiled.as_text()``.
      nbytes: the size of the large tensor (the module's input).

    Examples:
        >>> text = '''ENTRY %main (x: f32[8,64]) -> f32[8,64] {
        ...   %x = f32[8,64]{1,0} parameter(0)
        ...   %r = f32[8]{0} fusion(%x), kind=kInput, calls=%c
        ...   ROOT %y = f32[8,64]{1,0} fusion(%x, %r), kind=kLoop, calls=%d
        ... }'''
        >>> hlo_full_size_passes(text, 8 * 64 * 4)  # read x for r; read x and write y
        3
    """
    sizes: dict[str, int | None] = {}
    passes = 0
    for name, rest in _entry_instructions(hlo_text):
        sizes[name] = _shape_bytes(rest)
        instruction = _skip_shape(rest)
        opcode = re.match(r"[\w\-]+", instruction)
        if opcode is None or opcode.group(0) in FREE_OPCODES:
            continue
        operands = re.findall(r"%[\w.\-]+", instruction.split("(", 1)[1].split(")", 1)[0])
        passes += sum(sizes.get(op) == nbytes for op in operands) + (sizes[name] == nbytes)
    return passes


def jaxpr_ops(fn: Callable[..., Any], *args: Any) -> Counter[str]:
    """Operations an eager call of ``fn`` dispatches: the top-level equations of its jaxpr
    (a ``jit``-wrapped function such as many ``jnp`` functions is one dispatch, named ``jit(name)``).

    Args:
      fn: the function.
      *args: its arguments.

    Examples:
        >>> import jax.numpy as jnp
        >>> sorted(jaxpr_ops(lambda x: jnp.sin(x) * 2.0, jnp.ones(3)).items())
        [('mul', 1), ('sin', 1)]
    """
    import jax

    ops: Counter[str] = Counter()
    for eqn in jax.make_jaxpr(fn)(*args).jaxpr.eqns:
        name = eqn.primitive.name
        ops[f"jit({eqn.params['name']})" if name in ("pjit", "jit") and "name" in eqn.params else name] += 1
    return ops
