"""Squeeze-and-Excitation, the baseline the PRCM family is compared with, PyTorch."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prcm.validate import check_se_config
from prcm_torch.functional import eager_checks, recalibrate, spatial_mean, validate_input

__all__ = ["SEModule"]


class SEModule(nn.Module):
    """Squeeze-and-Excitation: ``x * sigmoid(fc2(relu(fc1(mean(x)))))``.

    Args:
      channels: number of input channels ``C``.
      reduction: bottleneck reduction; the hidden width is ``channels // reduction``.
      device: where to create the parameters (``"meta"`` for a skeleton to fill later).
      dtype: parameter dtype.

    >>> m = SEModule(64, reduction=4)
    >>> tuple(m(torch.randn(2, 64, 8, 8)).shape)
    (2, 64, 8, 8)
    >>> {k: tuple(v.shape) for k, v in m.state_dict().items()}
    {'fc1.weight': (16, 64), 'fc1.bias': (16,), 'fc2.weight': (64, 16), 'fc2.bias': (64,)}
    """

    def __init__(
        self, channels: int, reduction: int = 4, *, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> None:
        super().__init__()
        check_se_config(type(self).__name__, channels, reduction)
        self.channels = channels
        self.reduction = reduction
        self.fc1 = nn.Linear(channels, channels // reduction, device=device, dtype=dtype)
        self.fc2 = nn.Linear(channels // reduction, channels, device=device, dtype=dtype)

    def forward(self, x: Tensor) -> Tensor:
        if not torch.jit.is_scripting() and eager_checks():
            validate_input(type(self).__name__, x, self.fc1.weight)
        scale = self.fc2(F.relu(self.fc1(spatial_mean(x)))).sigmoid()
        return recalibrate(x, scale)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, reduction={self.reduction}"
