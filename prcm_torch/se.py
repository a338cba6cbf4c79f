"""Squeeze-and-Excitation, the baseline the PRCM family is compared with, PyTorch."""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch
from torch import Tensor, nn

from prcm.validate import check_se_config
from prcm_torch.functional import activation, eager_checks, gate, recalibrate, spatial_mean, validate_input
from prcm_torch.options import activation_name, gate_name

__all__ = ["SEModule"]


class SEModule(nn.Module):
    """Squeeze-and-Excitation: ``x * gate(fc2(act(fc1(mean(x)))))``, ReLU and sigmoid by default.

    The hidden width follows timm's keywords as timm's own blocks do, else ``reduction``
    (:func:`prcm.validate.check_se_config`): ``rd_channels``; ``rd_round_fn(C * rd_ratio)``;
    ``make_divisible(C * rd_ratio, rd_divisor, round_limit=0)``; ``round(C * rd_ratio)``
    (EfficientNet's ``SqueezeExcite``); ``C // reduction`` (the seed's ``SE_Module``, whose
    state_dicts load strictly). So it is timm's ``se_layer`` and ``attn_layer`` as it is.

    Args:
      channels: number of input channels ``C``.
      reduction: bottleneck reduction, the hidden width ``C // reduction`` (default 4);
        not together with ``rd_ratio`` / ``rd_channels``.
      rd_ratio: timm's reduction ratio (EfficientNet passes ``0.25 / exp_ratio``).
      rd_channels: timm's explicit hidden width (taken over ``rd_ratio``, as timm does).
      rd_divisor: round ``C * rd_ratio`` to a multiple of this (``timm.layers.SEModule``).
      rd_round_fn: round ``C * rd_ratio`` with this function (MobileNetV3's ``round_channels``).
      act_layer: the hidden activation: ``'relu'`` (default), ``'silu'`` (``'swish'``),
        ``'hard_swish'``, or ``nn.ReLU`` / ``nn.SiLU`` / ``nn.Hardswish`` and timm's classes
        for them; others are refused, naming these.
      force_act_layer: overrides ``act_layer`` (timm's rule: MobileNetV3 forces ``nn.ReLU``).
      gate: ``'sigmoid'`` (default) or ``'hard_sigmoid'``; others are refused.
      gate_layer: timm's name for ``gate`` (names or ``nn.Sigmoid`` / ``nn.Hardsigmoid``).
      device: where to create the parameters (``"meta"`` for a skeleton to fill later).
      dtype: parameter dtype.

    >>> m = SEModule(64, reduction=4)
    >>> tuple(m(torch.randn(2, 64, 8, 8)).shape)
    (2, 64, 8, 8)
    >>> {k: tuple(v.shape) for k, v in m.state_dict().items()}
    {'fc1.weight': (16, 64), 'fc1.bias': (16,), 'fc2.weight': (64, 16), 'fc2.bias': (64,)}
    >>> m = SEModule(96, rd_ratio=0.25 / 6, act_layer=nn.SiLU, gate_layer="hard_sigmoid")
    >>> m.rd_channels, m.act_layer, m.gate
    (4, 'silu', 'hard_sigmoid')
    """

    def __init__(
        self,
        channels: int,
        reduction: int | None = None,
        *,
        rd_ratio: float | None = None,
        rd_channels: int | None = None,
        rd_divisor: int | None = None,
        rd_round_fn: Callable[[float], int] | None = None,
        act_layer: Any = "relu",
        force_act_layer: Any = None,
        gate: str | None = None,
        gate_layer: Any = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        hidden = check_se_config(owner, channels, reduction, rd_ratio=rd_ratio, rd_channels=rd_channels,
                                 rd_divisor=rd_divisor, rd_round_fn=rd_round_fn)  # fmt: skip
        self.act_layer = activation_name(owner, act_layer, force_act_layer)
        self.gate = gate_name(owner, gate, gate_layer)
        self.channels = channels
        by_reduction = rd_ratio is None and rd_channels is None
        self.reduction: Optional[int] = (4 if reduction is None else reduction) if by_reduction else None
        self.rd_channels = hidden
        self.fc1 = nn.Linear(channels, hidden, device=device, dtype=dtype)
        self.fc2 = nn.Linear(hidden, channels, device=device, dtype=dtype)

    def forward(self, x: Tensor) -> Tensor:
        if not torch.jit.is_scripting() and eager_checks():
            validate_input(type(self).__name__, x, self.fc1.weight)
        scale = gate(self.fc2(activation(self.fc1(spatial_mean(x)), self.act_layer)), self.gate)
        return recalibrate(x, scale)

    def extra_repr(self) -> str:
        width = f"reduction={self.reduction}" if self.reduction is not None else f"rd_channels={self.rd_channels}"
        options = "".join(f", {k}={v}" for k, v in (("act_layer", self.act_layer), ("gate", self.gate)) if v not in ("relu", "sigmoid"))
        return f"channels={self.channels}, {width}{options}"
