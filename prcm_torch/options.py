"""timm's layer keywords read as the family's options.

timm hands a block its gate and hidden activation as a name (``'hard_sigmoid'``) or a layer
class (``nn.Hardsigmoid``, timm's ``HardSigmoid``); the blocks keep the name, one of
:data:`prcm.validate.GATES` / :data:`prcm.validate.ACTIVATIONS`, which every framework reads.
timm is never imported here: its classes are known once the caller has imported timm.
"""

from __future__ import annotations

import functools
import sys

from torch import nn

from prcm.validate import ACTIVATIONS, GATES, check_activation, check_gate

__all__ = ["gate_name", "activation_name", "layer_name"]


_TORCH = {nn.Sigmoid: "sigmoid", nn.Hardsigmoid: "hard_sigmoid", nn.ReLU: "relu", nn.SiLU: "silu", nn.Hardswish: "hard_swish"}


def _layer_names() -> dict[type, str]:
    names = dict(_TORCH)
    if "timm" in sys.modules:  # timm's own classes, as timm's create_act_layer builds them
        from timm.layers import activations as act
        from timm.layers import activations_me as me

        names.update({act.Sigmoid: "sigmoid", act.HardSigmoid: "hard_sigmoid", me.HardSigmoidMe: "hard_sigmoid",
                      act.Swish: "silu", me.SwishMe: "silu", act.HardSwish: "hard_swish", me.HardSwishMe: "hard_swish"})  # fmt: skip
    return names


def layer_name(value: object) -> object:
    """The name of a torch or timm layer class (or a ``functools.partial`` of one, without
    positional arguments) in the family's options; any other value as it is.

    >>> layer_name(nn.Hardsigmoid), layer_name("relu"), layer_name(functools.partial(nn.ReLU, inplace=True))
    ('hard_sigmoid', 'relu', 'relu')
    """
    if isinstance(value, functools.partial) and not value.args:
        value = value.func
    return _layer_names().get(value, value) if isinstance(value, type) else value


def _name(owner: str, keyword: str, value: object, choices: tuple[str, ...], check) -> str:
    name = layer_name(value)
    if not isinstance(name, str):
        classes = ", ".join(f"nn.{cls.__name__}" for cls, n in _TORCH.items() if n in choices)
        shown = f"{name.__module__}.{name.__qualname__}" if isinstance(name, type) else repr(name)
        raise TypeError(f"{owner}: {keyword} must be one of {', '.join(map(repr, choices))} or a layer class for one "
                        f"({classes} or timm's classes for them), got {shown}")  # fmt: skip
    return check(owner, name)


def gate_name(owner: str, gate: object = None, gate_layer: object = None) -> str:
    """The gate a block was given, as ``gate=`` or timm's ``gate_layer=`` (default ``'sigmoid'``).

    Args:
      owner: class name for the message.
      gate: ``'sigmoid'`` or ``'hard_sigmoid'`` (or a class, as ``gate_layer``).
      gate_layer: timm's keyword: a name (timm's spellings too) or ``nn.Sigmoid``,
        ``nn.Hardsigmoid`` and timm's classes for them.

    >>> gate_name("PRCM", gate_layer="hard_sigmoid"), gate_name("PRCM")
    ('hard_sigmoid', 'sigmoid')
    >>> gate_name("PRCM", gate_layer=nn.Tanh)
    Traceback (most recent call last):
    ...
    TypeError: PRCM: gate_layer must be one of 'sigmoid', 'hard_sigmoid' or a layer class for one (nn.Sigmoid, nn.Hardsigmoid or timm's classes for them), got torch.nn.modules.activation.Tanh
    """
    given = {k: _name(owner, k, v, GATES, check_gate) for k, v in (("gate", gate), ("gate_layer", gate_layer)) if v is not None}
    if len(set(given.values())) > 1:
        raise ValueError(f"{owner}: gate={gate!r} and gate_layer={gate_layer!r} disagree; give one of them")
    return next(iter(given.values()), "sigmoid")


def activation_name(owner: str, act_layer: object = "relu", force_act_layer: object = None) -> str:
    """The hidden activation a block was given: ``force_act_layer`` if set, else ``act_layer``
    (timm's rule), as a name of :data:`prcm.validate.ACTIVATIONS`.

    Args:
      owner: class name for the message.
      act_layer: the activation of the block around it (timm passes the block's own).
      force_act_layer: overrides ``act_layer`` (MobileNetV3 forces ``nn.ReLU``).

    >>> activation_name("SEModule", nn.Hardswish, force_act_layer=nn.ReLU), activation_name("SEModule", "swish")
    ('relu', 'silu')
    """
    value = act_layer if force_act_layer is None else force_act_layer
    keyword = "act_layer" if force_act_layer is None else "force_act_layer"
    return _name(owner, keyword, value, ACTIVATIONS, check_activation)
