"""Argument and input validation shared by the PyTorch and Flax modules.

Every check runs before any computation and raises an error that names what was
expected and what came. The functions take plain Python values (shapes, dtype names),
so both frameworks call the same code.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

__all__ = ["check_basis_config", "check_se_config", "check_input"]


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
    layout = "(B, *spatial, C)" if channels_last else "(B, C, *spatial)"
    shape = tuple(int(d) for d in shape)
    if len(shape) < 3:
        raise ValueError(
            f"{owner}: expected an input {layout} with at least one spatial axis "
            f"(3 or more dimensions), got shape {shape}"
        )
    if not is_floating:
        raise TypeError(f"{owner}: expected a floating-point input, got dtype {dtype}")
    axis = len(shape) - 1 if channels_last else 1
    if channels is not None and shape[axis] != channels:
        raise ValueError(
            f"{owner}: expected {channels} channels on axis {axis} of the input {layout}, "
            f"got {shape[axis]} (shape {shape})"
        )
    spatial = shape[1:-1] if channels_last else shape[2:]
    if 0 in spatial:
        raise ValueError(f"{owner}: every spatial axis must be non-empty, got shape {shape}")
