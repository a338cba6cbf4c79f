"""The PRCM variants (pattern recalibration with a low-rank basis), PyTorch.

All five compute ``coeff = dropout(mean(x) @ basis.T)`` and then recalibrate ``x`` with
a sigmoid scale and/or a shift projected from ``coeff``. They differ only in which of the
two projections they own, what the scale projection is called (the seed's names) and
whether dropout is applied.

Every module takes PyTorch's factory keywords ``device=`` and ``dtype=`` (as ``nn.Linear``),
so it plugs into timm as ``attn_layer`` and builds on ``torch.device("meta")``; it scripts
(``torch.jit.script``), traces (``torch.fx.symbolic_trace``) and exports with a dynamic batch
(``torch.export``), like the seed's classes.
"""

from __future__ import annotations

from typing import ClassVar, Optional

import torch
from torch import Tensor, nn

from prcm.validate import check_basis_config
from prcm_torch.functional import eager_checks, recalibrate, spatial_mean, validate_input

__all__ = ["PRCM", "AffinePRCM", "PRCMNoDropout", "AffinePRCMNoDropout", "ShiftOnlyPRCM"]


class _BasisRecalibration(nn.Module):
    """Shared math of the PRCM variants; subclasses set the two class attributes."""

    scale_name: ClassVar[Optional[str]]  # attribute holding the scale projection (the seed's name), if any
    has_shift: ClassVar[bool]  # whether the module owns ``shift_proj``
    __jit_unused_properties__: ClassVar[list[str]] = ["dropout_rate"]

    def __init__(
        self,
        channels: int,
        num_basis: int = 8,
        dropout_rate: float = 0.0,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_basis_config(type(self).__name__, channels, num_basis, dropout_rate)
        factory = {"device": device, "dtype": dtype}
        self.channels = channels
        self.num_basis = num_basis
        self.basis = nn.Parameter(torch.empty(num_basis, channels, **factory))
        self.reset_parameters()  # drawn before the projections, as the seed's torch.randn
        if self.scale_name is not None:
            setattr(self, self.scale_name, nn.Linear(num_basis, channels, bias=False, **factory))
        if self.has_shift:
            self.shift_proj = nn.Linear(num_basis, channels, bias=False, **factory)
        self.coeff_dropout = nn.Dropout(dropout_rate) if dropout_rate > 0 else nn.Identity()

    @property
    def dropout_rate(self) -> float:
        """The coefficients' dropout rate in train mode: ``coeff_dropout.p`` (0 without dropout)."""
        return float(getattr(self.coeff_dropout, "p", 0.0))

    def reset_parameters(self) -> None:
        """Draw ``basis`` from N(0, 1) (the projections reset their own weights), as after
        ``to_empty()`` on a module built on the meta device."""
        nn.init.normal_(self.basis)

    def forward(self, x: Tensor) -> Tensor:
        if not torch.jit.is_scripting() and eager_checks():
            validate_input(type(self).__name__, x, self.basis)
        coeff = self.coeff_dropout(spatial_mean(x) @ self.basis.t())
        scale: Optional[Tensor] = None
        shift: Optional[Tensor] = None
        # `hasattr` on a module attribute is resolved when scripting, so each variant
        # compiles to its own projections
        if hasattr(self, "fuser"):
            scale = self.fuser(coeff).sigmoid()
        if hasattr(self, "scale_proj"):
            scale = self.scale_proj(coeff).sigmoid()
        if hasattr(self, "shift_proj"):
            shift = self.shift_proj(coeff)
        return recalibrate(x, scale, shift)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, num_basis={self.num_basis}"


class PRCM(_BasisRecalibration):
    """Pattern Recalibration Module: ``x * sigmoid(fuser(coeff))``.

    ``coeff = dropout(mean(x) @ basis.T)``, the mean taken over every spatial axis.

    Args:
      channels: number of input channels ``C``.
      num_basis: number of basis vectors ``K``.
      dropout_rate: dropout on the coefficients in train mode, in ``[0, 1)``.
      device: where to create the parameters (``"meta"`` for a skeleton to fill later).
      dtype: parameter dtype.

    >>> m = PRCM(64, num_basis=8)
    >>> tuple(m(torch.randn(2, 64, 16, 16)).shape)
    (2, 64, 16, 16)
    >>> sorted(m.state_dict())
    ['basis', 'fuser.weight']
    """

    scale_name = "fuser"
    has_shift = False

    def __init__(self, channels: int, num_basis: int = 8, dropout_rate: float = 0.5, **factory) -> None:
        super().__init__(channels, num_basis, dropout_rate, **factory)


class AffinePRCM(_BasisRecalibration):
    """Affine PRCM: ``x * sigmoid(scale_proj(coeff)) + shift_proj(coeff)``.

    Args:
      channels: number of input channels ``C``.
      num_basis: number of basis vectors ``K``.
      dropout_rate: dropout on the coefficients in train mode, in ``[0, 1)``.
      **factory: ``device=``, ``dtype=``, as :class:`PRCM`.

    >>> m = AffinePRCM(64, dtype=torch.float64)
    >>> tuple(m(torch.randn(1, 64, 8, 8, dtype=torch.float64)).shape)
    (1, 64, 8, 8)
    >>> sorted(m.state_dict())
    ['basis', 'scale_proj.weight', 'shift_proj.weight']
    """

    scale_name = "scale_proj"
    has_shift = True

    def __init__(self, channels: int, num_basis: int = 8, dropout_rate: float = 0.5, **factory) -> None:
        super().__init__(channels, num_basis, dropout_rate, **factory)


class PRCMNoDropout(PRCM):
    """:class:`PRCM` without dropout (the seed's ``PRCM_NoDropout``).

    Args:
      channels: number of input channels ``C``.
      num_basis: number of basis vectors ``K``.
      **factory: ``device=``, ``dtype=``, as :class:`PRCM`.

    >>> tuple(PRCMNoDropout(32, num_basis=4)(torch.randn(3, 32, 10)).shape)
    (3, 32, 10)
    """

    def __init__(
        self, channels: int, num_basis: int = 8, *, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> None:
        super().__init__(channels, num_basis, 0.0, device=device, dtype=dtype)


class AffinePRCMNoDropout(AffinePRCM):
    """:class:`AffinePRCM` without dropout (the seed's ``AffinePRCM_NoDropout``).

    Args:
      channels: number of input channels ``C``.
      num_basis: number of basis vectors ``K``.
      **factory: ``device=``, ``dtype=``, as :class:`PRCM`.

    >>> tuple(AffinePRCMNoDropout(16)(torch.randn(2, 16, 4, 4, 4)).shape)
    (2, 16, 4, 4, 4)
    """

    def __init__(
        self, channels: int, num_basis: int = 8, *, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> None:
        super().__init__(channels, num_basis, 0.0, device=device, dtype=dtype)


class ShiftOnlyPRCM(_BasisRecalibration):
    """Shift-only ablation: ``x + shift_proj(mean(x) @ basis.T)``.

    Args:
      channels: number of input channels ``C``.
      num_basis: number of basis vectors ``K``.
      **factory: ``device=``, ``dtype=``, as :class:`PRCM`.

    >>> m = ShiftOnlyPRCM(64, device="meta")
    >>> m.basis.device.type, sorted(m.state_dict())
    ('meta', ['basis', 'shift_proj.weight'])
    """

    scale_name = None
    has_shift = True

    def __init__(
        self, channels: int, num_basis: int = 8, *, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> None:
        super().__init__(channels, num_basis, 0.0, device=device, dtype=dtype)
