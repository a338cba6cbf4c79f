"""The math the PyTorch modules share: squeeze (spatial mean), gate and recalibrate.

Inputs are channels-first, ``(B, C, *spatial)``, of any rank >= 3. The functions are written
so that ``torch.jit.script``, ``torch.fx.symbolic_trace`` and ``torch.export`` (with a dynamic
batch) all go through them: shapes are never turned into Python ints on the traced path, and
the Python checks run in eager mode only (:func:`eager_checks`).
"""

# no `from __future__ import annotations`: TorchScript reads these annotations as types
from typing import Optional

import torch
import torch.fx
import torch.nn.functional as F
from torch import Tensor

from prcm.validate import check_factors, check_input, check_rank

__all__ = ["spatial_mean", "recalibrate", "gate", "activation", "validate_input", "eager_checks"]

_is_fx_symbolic_tracing = getattr(torch.fx._symbolic_trace, "is_fx_symbolic_tracing", torch.fx._symbolic_trace.is_fx_tracing)


@torch.jit.unused
def eager_checks() -> bool:
    """Whether Python input checks should run: not while Dynamo (``torch.compile``,
    ``torch.export``) or FX traces, where they would specialise symbolic sizes into
    constants. TorchScript skips them through ``torch.jit.is_scripting()`` at the call site.

    >>> eager_checks()
    True
    """
    return not (torch.compiler.is_compiling() or _is_fx_symbolic_tracing())


@torch.jit.unused
def validate_input(owner: str, x: Tensor, weight: Tensor) -> None:
    """Check type, rank, channels (``weight.shape[-1]``) and dtype of ``x`` before any work.

    Args:
      owner: class name for the message.
      x: the input, ``(B, C, *spatial)``.
      weight: a parameter whose last axis is the channel axis; its dtype must match ``x``
        unless autocast is on.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{owner}: expected a torch.Tensor input, got {type(x).__name__}")
    check_input(owner, x.shape, str(x.dtype), x.is_floating_point(), weight.shape[-1], channels_last=False)
    if x.dtype != weight.dtype and not torch.is_autocast_enabled(x.device.type):
        raise TypeError(
            f"{owner}: the input is {x.dtype} but the parameters are {weight.dtype}; "
            f"convert one of them (module.to({x.dtype}) or x.to({weight.dtype}))"
        )


def spatial_mean(x: Tensor) -> Tensor:
    """Mean over every spatial axis, accumulated in at least float32.

    Args:
      x: ``(B, C, *spatial)``, at least one non-empty spatial axis.

    Returns:
      ``(B, C)`` in ``x.dtype``.

    >>> tuple(spatial_mean(torch.ones(2, 3, 4, 5, dtype=torch.float16)).shape)
    (2, 3)
    >>> spatial_mean(torch.ones(2, 3))
    Traceback (most recent call last):
    ...
    ValueError: spatial_mean: expected an input (B, C, *spatial) with at least one spatial axis (3 or more dimensions), got shape (2, 3)
    """
    if not torch.jit.is_scripting() and eager_checks():
        check_rank("spatial_mean", x.shape, channels_last=False)
    acc = torch.promote_types(x.dtype, torch.float32)
    return x.flatten(2).mean(dim=-1, dtype=acc).to(x.dtype)


def recalibrate(x: Tensor, scale: Optional[Tensor] = None, shift: Optional[Tensor] = None) -> Tensor:
    """``x * scale + shift`` with ``(B, C)`` factors broadcast over the spatial axes.

    Args:
      x: ``(B, C, *spatial)``.
      scale: ``(B, C)`` multiplicative factor, or ``None``.
      shift: ``(B, C)`` additive term, or ``None``.

    >>> tuple(recalibrate(torch.ones(2, 3, 4), scale=torch.full((2, 3), 2.0)).shape)
    (2, 3, 4)
    >>> recalibrate(torch.ones(2, 3, 4), shift=torch.ones(3))
    Traceback (most recent call last):
    ...
    ValueError: recalibrate: expected (B, C) = (2, 3) factors for an input (B, C, *spatial) of shape (2, 3, 4), got shift (3,)
    """
    if not torch.jit.is_scripting() and eager_checks():
        check_factors("recalibrate", x.shape, channels_last=False,
                      scale=None if scale is None else scale.shape, shift=None if shift is None else shift.shape)  # fmt: skip
    y = x.flatten(2)  # (B, C, N): a view, whatever the rank, so no shape is read on the traced path
    if scale is not None:
        y = y * scale.unsqueeze(-1)
    if shift is not None:
        y = y + shift.unsqueeze(-1)
    return y.view_as(x)


def gate(z: Tensor, name: str) -> Tensor:
    """The gate ``name`` of :data:`prcm.validate.GATES` applied to the logits ``z``.

    Args:
      z: the logits, any shape.
      name: ``'sigmoid'`` or ``'hard_sigmoid'`` (``relu6(z + 3) / 6``: torch's ``hardsigmoid``, and
        ``jax.nn.hard_sigmoid``'s formula; at ±3 its slope is 0).

    >>> gate(torch.tensor([-4.0, 0.0, 1.5]), "hard_sigmoid").tolist()
    [0.0, 0.5, 0.75]
    """
    if name == "sigmoid":
        return z.sigmoid()
    if name == "hard_sigmoid":  # not F.hardsigmoid, whose backward multiplies by 1/6 rounded to float32 in every dtype
        return F.relu6(z + 3.0) / 6.0
    raise ValueError("gate: expected 'sigmoid' or 'hard_sigmoid', got '" + name + "'")


def activation(z: Tensor, name: str) -> Tensor:
    """The hidden activation ``name`` of :data:`prcm.validate.ACTIVATIONS` applied to ``z``.

    Args:
      z: any shape.
      name: ``'relu'``, ``'silu'`` or ``'hard_swish'``.

    >>> activation(torch.tensor([-1.0, 3.0]), "hard_swish").tolist()
    [-0.3333333432674408, 3.0]
    """
    if name == "relu":
        return F.relu(z)
    if name == "silu":
        return F.silu(z)
    if name == "hard_swish":
        return F.hardswish(z)
    raise ValueError("activation: expected 'relu', 'silu' or 'hard_swish', got '" + name + "'")
