"""Argument and input validation shared by the PyTorch and Flax modules.

Every check runs before any computation and raises an error that names what was
expected and what came. The functions take plain Python values (shapes, dtype names),
so both frameworks call the same code.
"""

from __future__ import annotations

import numbers
import operator
from collections.abc import Sequence
from typing import Any

__all__ = ["check_basis_config", "check_se_config", "check_input", "check_rank", "check_factors", "check_rate"]


def _check_int(owner: str, name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{owner}: {name} must be an int >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{owner}: {name} must be >= {minimum}, got {value}")


def check_basis_config(owner: str, channels: int | None, num_basis: int, dropout_rate: float) -> None:
    """Validate the constructor arguments of the PRCM variants.

    Args:
      owner: class name used in the message.
      channels: number of channels (``None`` where it is inferred from the input).
      num_basis: number of basis vectors ``K``.
      dropout_rate: dropout probability on the coefficients, in ``[0, 1)``.

    >>> check_basis_config("PRCM", 64, 8, 0.5)
    >>> check_basis_config("PRCM", 64, 0, 0.5)
    Traceback (most recent call last):
    ...
    ValueError: PRCM: num_basis must be >= 1, got 0
    """
    if channels is not None:
        _check_int(owner, "channels", channels, 1)
    _check_int(owner, "num_basis", num_basis, 1)
    if isinstance(dropout_rate, bool) or not isinstance(dropout_rate, numbers.Real):
        raise TypeError(f"{owner}: dropout_rate must be a float in [0, 1), got {dropout_rate!r}")
    if not 0.0 <= dropout_rate < 1.0:
        raise ValueError(f"{owner}: dropout_rate must be in [0, 1), got {dropout_rate}")


def check_se_config(owner: str, channels: int | None, reduction: int) -> None:
    """Validate the constructor arguments of the Squeeze-and-Excitation module.

    Args:
      owner: class name used in the message.
      channels: number of channels (``None`` where it is inferred from the input).
      reduction: channel reduction of the bottleneck; ``channels // reduction`` must be >= 1.

    >>> check_se_config("SEModule", 3, 4)
    Traceback (most recent call last):
    ...
    ValueError: SEModule: channels // reduction must be >= 1, got 3 // 4 = 0
    """
    _check_int(owner, "reduction", reduction, 1)
    if channels is not None:
        _check_int(owner, "channels", channels, 1)
        if channels // reduction < 1:
            raise ValueError(
                f"{owner}: channels // reduction must be >= 1, got {channels} // {reduction} = 0"
            )


def _dims(shape: Sequence[Any]) -> tuple[Any, ...]:
    """The sizes as ints; a symbolic size (``jax.export`` shape polymorphism) stays as it is."""
    out = []
    for d in shape:
        try:
            out.append(operator.index(d))
        except TypeError:
            out.append(d)
    return tuple(out)


def _layout(channels_last: bool) -> str:
    return "(B, *spatial, C)" if channels_last else "(B, C, *spatial)"


def check_rate(owner: str, rate: object) -> None:
    """A dropout probability must be a real number in ``[0, 1)``.

    Args:
      owner: function or class name used in the message.
      rate: the probability.

    >>> check_rate("keep_mask", 1.5)
    Traceback (most recent call last):
    ...
    ValueError: keep_mask: dropout rate must be in [0, 1), got 1.5
    """
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real):
        raise TypeError(f"{owner}: dropout rate must be a float in [0, 1), got {rate!r}")
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"{owner}: dropout rate must be in [0, 1), got {rate}")


def check_rank(owner: str, shape: Sequence[int], *, channels_last: bool) -> tuple[int, ...]:
    """An input needs a batch axis, a channel axis and at least one non-empty spatial axis.

    Args:
      owner: function or class name used in the message.
      shape: the input's shape.
      channels_last: ``True`` for Flax's ``(B, *spatial, C)``, ``False`` for torch's ``(B, C, *spatial)``.

    Returns:
      the shape as a tuple of ints (symbolic sizes, under ``jax.export``, as they are).

    >>> check_rank("spatial_mean", (2, 3), channels_last=False)
    Traceback (most recent call last):
    ...
    ValueError: spatial_mean: expected an input (B, C, *spatial) with at least one spatial axis (3 or more dimensions), got shape (2, 3)
    """
    shape = _dims(shape)
    if len(shape) < 3:
        raise ValueError(
            f"{owner}: expected an input {_layout(channels_last)} with at least one spatial axis "
            f"(3 or more dimensions), got shape {shape}"
        )
    spatial = shape[1:-1] if channels_last else shape[2:]
    if any(isinstance(d, int) and d == 0 for d in spatial):
        raise ValueError(f"{owner}: every spatial axis must be non-empty, got shape {shape}")
    return shape


def check_factors(owner: str, shape: Sequence[int], *, channels_last: bool, **factors: Sequence[int] | None) -> None:
    """Per-(batch, channel) factors (``scale``, ``shift``) must be ``(B, C)`` for an input of ``shape``.

    Args:
      owner: function name used in the message.
      shape: the input's shape (checked with :func:`check_rank` first).
      channels_last: the input's layout.
      **factors: each factor's shape, or ``None`` where the factor is absent.

    >>> check_factors("recalibrate", (2, 3, 4), channels_last=False, scale=(2, 3), shift=(3,))
    Traceback (most recent call last):
    ...
    ValueError: recalibrate: expected (B, C) = (2, 3) factors for an input (B, C, *spatial) of shape (2, 3, 4), got shift (3,)
    """
    shape = check_rank(owner, shape, channels_last=channels_last)
    expected = (shape[0], shape[-1] if channels_last else shape[1])
    wrong = [f"{name} {_dims(s)}" for name, s in factors.items() if s is not None and _dims(s) != expected]
    if wrong:
        raise ValueError(
            f"{owner}: expected (B, C) = {expected} factors for an input {_layout(channels_last)} of shape {shape}, "
            f"got {', '.join(wrong)}"
        )


def check_input(
    owner: str,
    shape: Sequence[int],
    dtype: str,
    is_floating: bool,
    channels: int | None,
    *,
    channels_last: bool,
) -> None:
    """Validate an input tensor's rank, channel count and dtype.

    Args:
      owner: class name used in the message.
      shape: the input's shape.
      dtype: the input's dtype name, for the message.
      is_floating: whether the dtype is a real floating-point type.
      channels: the channel count the weights were built for (``None``: not known yet).
      channels_last: ``True`` for Flax's ``(B, *spatial, C)``, ``False`` for torch's ``(B, C, *spatial)``.

    >>> check_input("PRCM", (2, 32, 8, 8), "float32", True, 64, channels_last=False)
    Traceback (most recent call last):
    ...
    ValueError: PRCM: expected 64 channels on axis 1 of the input (B, C, *spatial), got 32 (shape (2, 32, 8, 8))
    """
    shape = check_rank(owner, shape, channels_last=channels_last)
    if not is_floating:
        raise TypeError(f"{owner}: expected a floating-point input, got dtype {dtype}")
    axis = len(shape) - 1 if channels_last else 1
    if channels is not None and isinstance(shape[axis], int) and shape[axis] != channels:
        raise ValueError(
            f"{owner}: expected {channels} channels on axis {axis} of the input {_layout(channels_last)}, "
            f"got {shape[axis]} (shape {shape})"
        )
