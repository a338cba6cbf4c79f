"""Put PRCM-family blocks into a built timm model: :func:`swap_attention`.

Models whose entry points fix their ``se_layer`` (MobileNetV3, RegNet, SE-ResNet, ...) take a
PRCM block this way. timm is imported when the function is called, never before.

Examples:
    >>> import timm, torch, prcm_torch
    >>> model = timm.create_model("mobilenetv3_small_100", num_classes=10)
    >>> swaps = swap_attention(model, prcm_torch.AffinePRCM, num_basis=4)
    >>> len(swaps), swaps[0].path, swaps[0].old, swaps[0].new.gate
    (9, 'blocks.0.0.se', 'timm.models._efficientnet_blocks.SqueezeExcite', 'hard_sigmoid')
    >>> tuple(model(torch.randn(2, 3, 32, 32)).shape)
    (2, 10)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from prcm_torch.options import layer_name

__all__ = ["Swap", "swap_attention", "ATTENTION_SLOTS", "TIMM_ATTENTION", "swappable"]

#: Attribute names timm gives a block's attention module. A module there that is neither
#: ``nn.Identity``, an SE-like block :func:`swappable` knows, nor a PRCM-family block is
#: named: an error, or with ``unknown="keep"`` a report row (it is left in place). So is one of
#: timm's other channel-attention modules (:data:`TIMM_ATTENTION`) under any name.
ATTENTION_SLOTS: tuple[str, ...] = ("se", "se_module", "se_early", "attn", "attn_last", "attention")
#: The ``attn_layer`` names of timm's lightweight attention modules (``timm.layers.get_attn``):
#: the channel / coarse spatial attention that sits where an SE block would (the heavier ones,
#: selective kernel, split and self-attention, replace convolutions instead).
TIMM_ATTENTION: tuple[str, ...] = ("se", "ese", "eca", "ecam", "ceca", "ge", "gc", "gca", "cbam", "lcbam", "coord",
                                   "scoord", "ela", "strip")  # fmt: skip


@dataclass(frozen=True)
class Swap:
    """One attention module :func:`swap_attention` found.

    Attributes:
      path: its name in the model (``blocks.1.0.se``).
      old: its class, fully qualified.
      new: the block now there, or ``None`` where it was left in place (``unknown="keep"``).
      channels: its channel count (``None`` where it was left in place).
      reason: why it was left in place (empty for a replaced one).
    """

    path: str
    old: str
    new: nn.Module | None
    channels: int | None = None
    reason: str = ""


def _se_readers() -> dict[type, tuple[Callable[[nn.Module], int | None], str] | str]:
    """SE-like class -> (its channels, read from its weights (``None``: seen at its input),
    the attribute holding its gate), or why it cannot be swapped."""
    import prcm_torch
    from timm.layers import eca, squeeze_excite
    from timm.models import _efficientnet_blocks, senet

    readers: dict[type, Any] = {
        squeeze_excite.SEModule: (lambda m: m.fc1.in_channels, "gate"),
        squeeze_excite.EffectiveSEModule: (lambda m: m.fc.in_channels, "gate"),
        _efficientnet_blocks.SqueezeExcite: (lambda m: m.conv_reduce.in_channels, "gate"),
        senet.SEModule: (lambda m: m.fc1.in_channels, "sigmoid"),
        eca.EcaModule: (lambda m: None, "gate"),  # a 1-D conv over the channels: no channel count in its weights
        eca.CecaModule: (lambda m: None, "gate"),
        squeeze_excite.SqueezeExciteCl: "it works on channels-last (B, H, W, C) activations; the family's blocks are channels-first",
    }
    readers.update({getattr(prcm_torch, name): (lambda m: m.channels, "gate") for name in prcm_torch.__all__})
    return readers


def swappable() -> tuple[type, ...]:
    """The attention classes :func:`swap_attention` replaces (timm's SE-like blocks and the
    family's own), for the installed timm."""
    return tuple(cls for cls, reader in _se_readers().items() if not isinstance(reader, str))


def _timm_attention() -> set[type]:
    """The classes behind :data:`TIMM_ATTENTION` in the installed timm (a name it lacks is skipped)."""
    from timm.layers import get_attn

    classes = set()
    for name in TIMM_ATTENTION:
        try:
            made = get_attn(name)
        except (AssertionError, ValueError, KeyError):  # a name this timm version does not have
            continue
        classes.add(getattr(made, "func", made))  # a partial's class
    return classes


def _gate_of(module: nn.Module, attribute: str) -> str | None:
    """The family's name for a module's gate (its own ``gate`` for a family block, sigmoid for one
    without a gate), or ``None`` for a gate the family does not have."""
    gate = getattr(module, attribute, None)
    if gate is None:  # a block without a gate (ShiftOnlyPRCM): the family's default
        return "sigmoid"
    if isinstance(gate, str):
        return gate
    name = layer_name(type(gate))
    return name if isinstance(name, str) and name in ("sigmoid", "hard_sigmoid") else None


def _channels_at_input(model: nn.Module, modules: dict[str, nn.Module], input_size: tuple[int, ...]) -> dict[str, int]:
    """Each module's input channels, from one pass of the model on the meta device (no memory,
    no compute; the model's own tensors and modes are untouched)."""
    seen: dict[str, int] = {}

    def record(path: str, args: tuple) -> None:  # returns None: the input goes on unchanged
        seen.setdefault(path, int(args[0].shape[1]))

    handles = [m.register_forward_pre_hook(lambda m, args, path=path: record(path, args)) for path, m in modules.items()]
    state = {k: torch.empty_like(v, device="meta") for k, v in [*model.named_parameters(), *model.named_buffers()]}
    try:
        with torch.no_grad():
            torch.func.functional_call(model, state, (torch.empty(2, *input_size, device="meta"),))  # 2: BatchNorm in train mode
    finally:
        for handle in handles:
            handle.remove()
    return seen


def swap_attention(
    model: nn.Module,
    block: Callable[..., nn.Module] | None = None,
    *,
    unknown: str = "raise",
    input_size: tuple[int, ...] | None = None,
    **block_kwargs: Any,
) -> list[Swap]:
    """Replace every SE-like block of a built timm model by a PRCM-family block, in place.

    Each block of :func:`swappable` (timm's ``SEModule``, EfficientNet/MobileNet's
    ``SqueezeExcite``, ``EffectiveSEModule``, ``EcaModule``, ``CecaModule``, legacy SENet's
    ``SEModule``, and the family's own blocks) becomes ``block(channels, gate=..., device=...,
    dtype=..., **block_kwargs)`` with its channel count, on its device and dtype, in its train
    or eval mode. The gate is by default the replaced block's (MobileNetV3's hard sigmoid
    stays a hard sigmoid); ``gate=`` in ``block_kwargs`` sets another. Everything is checked
    and every new block built before the first is put in, so a refusal leaves the model as it was.

    Args:
      model: a built timm model (any ``nn.Module``; on any device, ``meta`` included).
      block: the new block's class, a ``prcm_torch`` class or a ``functools.partial`` of one
        (anything taking ``channels`` and ``gate=``, ``device=``, ``dtype=``); default
        :class:`prcm_torch.AffinePRCM`.
      unknown: what to do with a module in an attention slot (:data:`ATTENTION_SLOTS`) that is
        not ``nn.Identity`` and not swappable (CBAM, GatherExcite, a ViT's self-attention,
        timm's channels-last ``SqueezeExciteCl``), or with one of timm's attention modules
        (:data:`TIMM_ATTENTION`) under any name: ``"raise"`` (default) names each in a
        ``ValueError`` before any change; ``"keep"`` leaves them and reports them with
        ``new=None`` and the reason.
      input_size: ``(C, H, W)`` of an input, for blocks whose channel count is not in their
        weights (ECA): a pass on the meta device reads it. Default: the model's
        ``pretrained_cfg['input_size']``, else ``(3, 224, 224)``.
      **block_kwargs: passed to every new block (``num_basis=``, ``dropout_rate=``, ``gate=``).

    Returns:
      one :class:`Swap` per replaced block (and per kept unknown one), in the model's order.

    Raises:
      ValueError: no SE-like block found; unknown attention modules (with ``unknown="raise"``);
        a replaced block's gate that is neither sigmoid nor hard sigmoid, without ``gate=``;
        ``unknown`` not ``"raise"``/``"keep"``.
      TypeError: ``model`` is not an ``nn.Module``, ``block`` is not callable.

    Examples:
        >>> import timm, prcm_torch
        >>> model = timm.create_model("seresnet18", num_classes=10)
        >>> swaps = swap_attention(model, prcm_torch.PRCM, num_basis=4)
        >>> first = swaps[0]
        >>> first.path, first.channels, type(model.layer1[0].se).__name__
        ('layer1.0.se', 64, 'PRCM')
    """
    import prcm_torch

    if not isinstance(model, nn.Module):
        raise TypeError(f"swap_attention: expected a torch nn.Module (a built timm model), got {type(model).__name__}")
    block = prcm_torch.AffinePRCM if block is None else block
    if not callable(block):
        raise TypeError(f"swap_attention: block must be a class such as prcm_torch.AffinePRCM (or a partial of one), got {block!r}")
    if unknown not in ("raise", "keep"):
        raise ValueError(f"swap_attention: unknown must be 'raise' or 'keep', got {unknown!r}")
    readers, attention = _se_readers(), _timm_attention()
    found, refused = {}, {}
    for path, module in model.named_modules():
        reader = readers.get(type(module))
        if isinstance(reader, tuple):
            found[path] = module
        elif isinstance(reader, str):
            refused[path] = reader
        elif type(module) in attention or (path.rpartition(".")[2] in ATTENTION_SLOTS and not isinstance(module, nn.Identity)):
            refused[path] = "not a squeeze-and-excitation block swap_attention knows"
    kinds = {path: f"{type(m).__module__}.{type(m).__qualname__}" for path, m in model.named_modules()}
    if refused and unknown == "raise":
        rows = "\n  ".join(f"{path} ({kinds[path]}): {why}" for path, why in refused.items())
        raise ValueError(f"swap_attention: {len(refused)} attention module(s) it cannot replace; nothing was changed "
                         f"(pass unknown='keep' to leave them in place and replace the rest):\n  {rows}")  # fmt: skip
    if not found and refused:  # unknown="keep" and nothing it could replace
        rows = "\n  ".join(f"{path} ({kinds[path]}): {why}" for path, why in refused.items())
        raise ValueError(f"swap_attention: {type(model).__name__} has no block it can replace, only {len(refused)} attention "
                         f"module(s) it does not know (nothing was changed):\n  {rows}")  # fmt: skip
    if not found:
        names = ", ".join(sorted({c.__name__ for c in swappable()}))
        raise ValueError(f"swap_attention: found no squeeze-and-excitation block in {type(model).__name__} (known: {names}); "
                         "a model without attention takes a block when built, e.g. timm.create_model('resnet18', "
                         "block_args=dict(attn_layer=prcm_torch.AffinePRCM))")  # fmt: skip
    channels = {path: readers[type(m)][0](m) for path, m in found.items()}
    if any(c is None for c in channels.values()):
        size = input_size or tuple(getattr(model, "pretrained_cfg", {}).get("input_size", (3, 224, 224)))
        probed = _channels_at_input(model, {p: found[p] for p, c in channels.items() if c is None}, size)
        channels.update({p: probed.get(p) for p, c in channels.items() if c is None})
    gates = {path: block_kwargs["gate"] if "gate" in block_kwargs else _gate_of(m, readers[type(m)][1]) for path, m in found.items()}
    problems = [f"{path} ({kinds[path]}) was not reached by a pass at input size {input_size}; pass input_size="
                for path, c in channels.items() if c is None]  # fmt: skip
    problems += [f"{path} ({kinds[path]}) gates with {type(getattr(found[path], readers[type(found[path])][1])).__name__}; "
                 "pass gate='sigmoid' or gate='hard_sigmoid' for the new blocks" for path, g in gates.items() if g is None]  # fmt: skip
    if problems:
        raise ValueError("swap_attention: nothing was changed:\n  " + "\n  ".join(problems))
    kwargs = {k: v for k, v in block_kwargs.items() if k != "gate"}
    new = {}
    for path, old in found.items():
        tensor = next(iter([*old.parameters(), *old.buffers()]), None)
        factory = {"device": tensor.device, "dtype": tensor.dtype} if tensor is not None else {}
        new[path] = block(channels[path], gate=gates[path], **factory, **kwargs).train(old.training)
    for path, module in new.items():
        parent, _, name = path.rpartition(".")
        setattr(model.get_submodule(parent), name, module)
    report = {path: Swap(path, kinds[path], module, channels[path]) for path, module in new.items()}
    report.update({path: Swap(path, kinds[path], None, reason=why) for path, why in refused.items()})
    order = list(kinds)
    return sorted(report.values(), key=lambda s: order.index(s.path))
