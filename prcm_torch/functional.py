"""The math the PyTorch modules share: squeeze (spatial mean) and recalibrate.

Inputs are channels-first, ``(B, C, *spatial)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from prcm.validate import check_input

__all__ = ["spatial_mean", "recalibrate", "validate_input"]


def validate_input(owner: str, x: Tensor, weight: Tensor) -> None:
    """Check rank, channels (``weight.shape[-1]``) and dtype of ``x`` before any work.

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
      x: ``(B, C, *spatial)``.

    Returns:
      ``(B, C)`` in ``x.dtype``.

    >>> spatial_mean(torch.ones(2, 3, 4, 5, dtype=torch.float16)).shape
    torch.Size([2, 3])
    """
    acc = torch.promote_types(x.dtype, torch.float32)
    return x.mean(dim=tuple(range(2, x.ndim)), dtype=acc).to(x.dtype)


def recalibrate(x: Tensor, scale: Tensor | None = None, shift: Tensor | None = None) -> Tensor:
    """``x * scale + shift`` with ``(B, C)`` factors broadcast over the spatial axes.

    Args:
      x: ``(B, C, *spatial)``.
      scale: ``(B, C)`` multiplicative factor, or ``None``.
      shift: ``(B, C)`` additive term, or ``None``.

    >>> recalibrate(torch.ones(2, 3, 4), scale=torch.full((2, 3), 2.0)).shape
    torch.Size([2, 3, 4])
    """
    spatial = (1,) * (x.ndim - 2)
    if scale is not None:
        x = x * scale.reshape(*scale.shape, *spatial)
    if shift is not None:
        x = x + shift.reshape(*shift.shape, *spatial)
    return x
