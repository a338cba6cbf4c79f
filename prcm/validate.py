"""Argument and input validation shared by the PyTorch and Flax modules.

Every check runs before any computation and raises an error that names what was
expected and what came. The functions take plain Python values (shapes, dtype names),
so both frameworks call the same code.
"""

from __future__ import annotations

import numbers
import operator
from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "GATES",
    "ACTIVATIONS",
    "ALIASES",
    "check_basis_config",
    "check_se_config",
    "check_gate",
    "refuse_dropout",
    "check_activation",
    "make_divisible",
    "check_input",
    "check_rank",
    "check_factors",
    "check_rate",
]

#: The gates of the family (``gate=``): what turns the logits into the scale.
GATES: tuple[str, ...] = ("sigmoid", "hard_sigmoid")
#: Squeeze-and-excitation's hidden activations (``act_layer=``): ReLU (the seed, ResNets,
#: MobileNetV3's SE), SiLU (EfficientNet), hard-swish (MobileNetV3-rw, LCNet).
ACTIVATIONS: tuple[str, ...] = ("relu", "silu", "hard_swish")
#: timm's other spellings of those names (``timm.layers.create_act``).
ALIASES: dict[str, str] = {"hardsigmoid": "hard_sigmoid", "swish": "silu", "hardswish": "hard_swish"}


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


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None, round_limit: float = 0.9) -> int:
    """``v`` rounded to the nearest multiple of ``divisor`` (at least ``min_value``, default
    ``divisor``), one multiple up if that lost more than ``1 - round_limit`` of ``v``:
    timm's ``make_divisible``, written out so the blocks need no timm.

    >>> make_divisible(64 / 16), make_divisible(100 * 0.25, 8, round_limit=0.0)
    (8, 24)
    """
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < round_limit * v else new_v


def _width_problem(reduction: object, rd_ratio: object, rd_channels: object, rd_divisor: object, rd_round_fn: object) -> str | None:
    """Which reduction keywords do not go together, if any."""
    if reduction is not None and (rd_ratio is not None or rd_channels is not None):
        return "give the hidden width one way: reduction, or timm's rd_ratio / rd_channels, not both"
    if rd_divisor is not None and rd_round_fn is not None:
        return "rd_divisor and rd_round_fn both round channels * rd_ratio; give one"
    if rd_ratio is None and rd_channels is None and (rd_divisor is not None or rd_round_fn is not None):
        return "rd_divisor / rd_round_fn round channels * rd_ratio; pass rd_ratio too (or rd_channels, or reduction)"
    return None


def check_se_config(
    owner: str,
    channels: int | None,
    reduction: int | None = None,
    *,
    rd_ratio: float | None = None,
    rd_channels: int | None = None,
    rd_divisor: int | None = None,
    rd_round_fn: Callable[[float], int] | None = None,
) -> int | None:
    """Validate squeeze-and-excitation's width arguments and return its hidden width.

    The first rule that applies (timm's, then the seed's):

    * ``rd_channels``: that width (timm takes it over ``rd_ratio``);
    * ``rd_ratio`` and ``rd_round_fn``: ``rd_round_fn(channels * rd_ratio)`` (MobileNetV3);
    * ``rd_ratio`` and ``rd_divisor``: ``make_divisible(channels * rd_ratio, rd_divisor, round_limit=0)``
      (``timm.layers.SEModule``);
    * ``rd_ratio``: ``round(channels * rd_ratio)`` (EfficientNet's ``SqueezeExcite``);
    * otherwise ``channels // reduction``, ``reduction`` 4 by default (the seed's ``SE_Module``).

    Args:
      owner: class name used in the message.
      channels: number of channels (``None`` where it is inferred from the input: only the
        arguments are checked, and ``None`` comes back).
      reduction: channel reduction of the bottleneck.
      rd_ratio: timm's reduction ratio (hidden width over channels).
      rd_channels: timm's explicit hidden width.
      rd_divisor: round ``channels * rd_ratio`` to a multiple of this, as ``timm.layers.SEModule``.
      rd_round_fn: round ``channels * rd_ratio`` with this, as EfficientNet's ``SqueezeExcite``.

    Returns:
      the hidden width, ``>= 1``, or ``None`` without ``channels``.

    >>> check_se_config("SEModule", 64), check_se_config("SEModule", 96, rd_ratio=0.25 / 6)
    (16, 4)
    >>> check_se_config("SEModule", 3, 4)
    Traceback (most recent call last):
    ...
    ValueError: SEModule: channels // reduction must be >= 1, got 3 // 4 = 0
    """
    if problem := _width_problem(reduction, rd_ratio, rd_channels, rd_divisor, rd_round_fn):
        raise ValueError(f"{owner}: {problem}")
    if rd_channels is not None:
        _check_int(owner, "rd_channels", rd_channels, 1)
    elif rd_ratio is not None:
        if isinstance(rd_ratio, bool) or not isinstance(rd_ratio, numbers.Real):
            raise TypeError(f"{owner}: rd_ratio must be a number > 0, got {rd_ratio!r}")
        if not rd_ratio > 0:
            raise ValueError(f"{owner}: rd_ratio must be > 0, got {rd_ratio}")
        if rd_divisor is not None:
            _check_int(owner, "rd_divisor", rd_divisor, 1)
        if rd_round_fn is not None and not callable(rd_round_fn):
            raise TypeError(f"{owner}: rd_round_fn must be a function of a float, got {rd_round_fn!r}")
    else:
        reduction = 4 if reduction is None else reduction
        _check_int(owner, "reduction", reduction, 1)
    if channels is None:
        return None
    _check_int(owner, "channels", channels, 1)
    if rd_channels is not None:
        return rd_channels
    if rd_ratio is None:
        if channels // reduction < 1:
            raise ValueError(f"{owner}: channels // reduction must be >= 1, got {channels} // {reduction} = 0")
        return channels // reduction
    if rd_round_fn is not None:
        width, how = rd_round_fn(channels * rd_ratio), f"rd_round_fn({channels} * {rd_ratio})"
    elif rd_divisor is not None:
        width, how = make_divisible(channels * rd_ratio, rd_divisor, round_limit=0.0), f"make_divisible({channels} * {rd_ratio}, {rd_divisor})"
    else:
        width, how = round(channels * rd_ratio), f"round({channels} * {rd_ratio})"
    if isinstance(width, bool) or not isinstance(width, numbers.Integral) or width < 1:
        raise ValueError(f"{owner}: the hidden width {how} must be an int >= 1, got {width!r}")
    return int(width)


def _check_name(owner: str, keyword: str, value: object, choices: tuple[str, ...]) -> str:
    name = ALIASES.get(value.lower(), value.lower()) if isinstance(value, str) else None
    if name not in choices:
        expected = ", ".join(repr(c) for c in choices)
        error = ValueError if isinstance(value, str) else TypeError
        raise error(f"{owner}: {keyword} must be one of {expected}, got {value!r}")
    return name


def check_gate(owner: str, gate: object) -> str:
    """A gate's name, canonical (``'hardsigmoid'``, timm's spelling, is ``'hard_sigmoid'``).

    Args:
      owner: class name used in the message.
      gate: ``'sigmoid'`` or ``'hard_sigmoid'`` (``relu6(z + 3) / 6``, MobileNetV3's).

    >>> check_gate("PRCM", "hardsigmoid")
    'hard_sigmoid'
    >>> check_gate("PRCM", "tanh")
    Traceback (most recent call last):
    ...
    ValueError: PRCM: gate must be one of 'sigmoid', 'hard_sigmoid', got 'tanh'
    """
    return _check_name(owner, "gate", gate, GATES)


def check_activation(owner: str, act_layer: object) -> str:
    """A hidden activation's name, canonical (timm's ``'swish'`` is ``'silu'``).

    Args:
      owner: class name used in the message.
      act_layer: ``'relu'``, ``'silu'`` or ``'hard_swish'``.

    >>> check_activation("SEModule", "swish")
    'silu'
    >>> check_activation("SEModule", "gelu")
    Traceback (most recent call last):
    ...
    ValueError: SEModule: act_layer must be one of 'relu', 'silu', 'hard_swish', got 'gelu'
    """
    return _check_name(owner, "act_layer", act_layer, ACTIVATIONS)


def refuse_dropout(owner: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The keywords of a variant without dropout, refused if they hold a ``dropout_rate``.

    >>> refuse_dropout("PRCMNoDropout", {"dropout_rate": 0.1})
    Traceback (most recent call last):
    ...
    TypeError: PRCMNoDropout.__init__() got an unexpected keyword argument 'dropout_rate' (it has no dropout)
    """
    if "dropout_rate" in kwargs:
        raise TypeError(f"{owner}.__init__() got an unexpected keyword argument 'dropout_rate' (it has no dropout)")
    return kwargs


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
