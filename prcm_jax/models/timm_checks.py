"""What :func:`~prcm_jax.models.from_timm` checks in every family: norm layers, activations,
convolutions, attention blocks, parameter dtypes; and how it words what it refuses.

Each check returns ``"where: what"`` lines (empty when the twin builds the part the same way),
collected over the whole model before anything is built. torch and timm are imported when
called.
"""

from __future__ import annotations

import functools
from typing import Any

__all__ = [
    "grouped",
    "activation_name",
    "act_problems",
    "norm_problems",
    "conv_problems",
    "padding_problems",
    "catalog_attention",
    "same_attention",
    "one_attention",
    "dtype_of",
]


def grouped(problems: list[str]) -> list[str]:
    """``"where: what"`` lines, one per ``what``, naming the first places it occurs.

    Examples:
        >>> grouped(["a.0: x", "a.1: x", "b: y"])
        ['a.0, a.1: x', 'b: y']
    """
    places: dict[str, list[str]] = {}
    for line in problems:
        where, _, what = line.partition(": ")
        places.setdefault(what, []).append(where)
    out = []
    for what, wheres in places.items():
        more = f" and {len(wheres) - 3} more" if len(wheres) > 3 else ""
        out.append(f"{', '.join(wheres[:3])}{more}: {what}")
    return out


def _activation_types() -> dict[type, str | None]:
    from torch import nn

    return {nn.ReLU: "relu", nn.ReLU6: "relu6", nn.SiLU: "silu", nn.Hardswish: "hard_swish", nn.Sigmoid: "sigmoid",
            nn.Hardsigmoid: "hard_sigmoid", nn.Identity: None}  # fmt: skip


def activation_name(module: Any) -> str | None:
    """The :data:`~prcm_jax.models.ACTIVATIONS` name of a torch activation layer (``None`` for
    ``nn.Identity``; the class name for one the twins do not have, which :func:`act_problems` names)."""
    return _activation_types().get(type(module), type(module).__name__)


def act_problems(module: Any, where: str) -> list[str]:
    """An activation layer the twins do not have, named."""
    if type(module) in _activation_types():
        return []
    have = ", ".join(t.__name__ for t in _activation_types())
    return [f"{where}: activation {type(module).__module__}.{type(module).__name__}; the twins have {have}"]


def norm_problems(norm: Any, where: str, *, act: bool = False) -> list[str]:
    """What makes a norm layer differ from :class:`~prcm_jax.models.BatchNorm` (``act``: timm's
    ``BatchNormAct2d`` with an activation the twins have, as :class:`~prcm_jax.models.BatchNormAct`)."""
    from torch import nn

    want = nn.BatchNorm2d
    if act:
        from timm.layers import BatchNormAct2d as want
    if type(norm) is not want:
        return [f"{where}: {type(norm).__name__} (norm_layer); the twin has {want.__name__}"]
    found = (norm.eps, norm.momentum, norm.affine, norm.track_running_stats)
    problems = []
    if found != (1e-5, 0.1, True, True):
        problems.append(f"{where}: {want.__name__} with (eps, momentum, affine, track_running_stats) = {found}; "
                        "the twin has (1e-05, 0.1, True, True) (a tf_ variant's BatchNorm, or bn_eps / bn_momentum)")  # fmt: skip
    if act:
        problems += act_problems(norm.act, f"{where}.act")
        if not isinstance(norm.drop, nn.Identity):
            problems.append(f"{where}.drop: {type(norm.drop).__name__} inside the norm layer; the twin has none")
    return problems


def conv_problems(conv: Any, where: str, *, kernel: int | None = None, stride: int | None = None, groups: int = 1,
                  bias: bool = False) -> list[str]:  # fmt: skip
    """What makes a convolution differ from the twin's (``nn.Conv2d`` padded ``kernel // 2``,
    the given kernel, stride, groups and bias; ``None``: any square kernel / stride)."""
    from torch import nn

    if type(conv) is not nn.Conv2d:
        kind = f"{type(conv).__module__}.{type(conv).__name__}"
        why = " (a tf_ variant's 'same' padding)" if "Same" in type(conv).__name__ else ""
        return [f"{where}: {kind}{why}; the twin has nn.Conv2d padded kernel // 2"]
    k, s = conv.kernel_size, conv.stride
    found = dict(kernel=k, stride=s, padding=conv.padding, dilation=conv.dilation, groups=conv.groups, bias=conv.bias is not None)
    want = dict(kernel=(kernel, kernel) if kernel else (k[0], k[0]), stride=(stride, stride) if stride else (s[0], s[0]),
                padding=(k[0] // 2, k[0] // 2), dilation=(1, 1), groups=groups, bias=bias)  # fmt: skip
    bad = [f"{name} {found[name]} (twin: {want[name]})" for name in want if found[name] != want[name]]
    return [f"{where}: convolution with {', '.join(bad)}"] if bad else []


def padding_problems(model: Any) -> list[str]:
    """Convolutions that pad with other than zeros (no timm option does; a hand edit would be silently wrong)."""
    from torch import nn

    return [f"{name}: padding_mode={conv.padding_mode!r}; the twin pads with zeros" for name, conv in model.named_modules()
            if isinstance(conv, nn.Conv2d) and conv.padding_mode != "zeros"]  # fmt: skip


def catalog_attention(module: Any, where: str, families: str) -> tuple[Any, list[str]]:
    """``(se_layer for the twin, problems)`` for a PRCM-family block: the NNX class with the torch
    block's own arguments (``CATALOG[name].config_of``); anything else is named, with what the
    family supports (``families``, e.g. ``"'se' (timm SEModule)"``)."""
    from prcm.catalog import CATALOG

    entry = next((e for e in CATALOG.values() if type(module) is e.torch), None)
    if entry is None:
        supported = ", ".join(["None", families, *(f"prcm_torch.{n}" for n in CATALOG)])
        return None, [f"{where}: attention {type(module).__module__}.{type(module).__name__} has no NNX twin; supported: {supported}"]
    return functools.partial(entry.nnx, **entry.config_of(module)), []


def same_attention(a: Any, b: Any) -> bool:
    """Whether two twin attention layers are the same (a ``functools.partial`` compared by class and arguments)."""
    if isinstance(a, functools.partial) and isinstance(b, functools.partial):
        return a.func is b.func and a.keywords == b.keywords
    return a == b


def one_attention(found: list[tuple[str, Any]], default: Any = None) -> tuple[Any, list[str]]:
    """The one attention layer the twin puts in every slot, from ``(where, layer)`` of each slot."""
    if not found:
        return default, []
    first = found[0][1]
    differ = [where for where, layer in found if not same_attention(layer, first)]
    if differ:
        return first, [f"attention: blocks {differ[:4]} differ from {found[0][0]}'s; the twin puts one attention layer in "
                       "every block that has one"]  # fmt: skip
    return first, []


def dtype_of(model: Any) -> tuple[Any, list[str]]:
    """``(numpy dtype of the parameters, problems)``: the twin has one floating-point dtype."""
    from parity.arrays import numpy_dtype

    dtypes = {p.dtype for p in model.parameters()}
    if len(dtypes) != 1 or not next(iter(dtypes)).is_floating_point:
        return None, [f"parameters: dtypes {sorted(map(str, dtypes))}; expected one floating-point dtype"]
    return numpy_dtype(dtypes.pop()), []
