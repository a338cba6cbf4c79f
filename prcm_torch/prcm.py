"""The PRCM variants (pattern recalibration with a low-rank basis), PyTorch.

All five compute ``coeff = dropout(mean(x) @ basis.T)`` and then recalibrate ``x`` with
a gated scale (``gate``: sigmoid, or MobileNetV3's hard sigmoid) and/or a shift projected
from ``coeff``. They differ only in which of the two projections they own, what the scale
projection is called (the seed's names) and whether dropout is applied.

Every module takes PyTorch's factory keywords ``device=`` and ``dtype=`` (as ``nn.Linear``),
so it plugs into timm as ``attn_layer`` and builds on ``torch.device("meta")``, and the
keywords timm's EfficientNet / MobileNetV3 builders give an ``se_layer`` (``rd_ratio``,
``act_layer``, ``gate_layer``, ...; see :class:`PRCM`), so it is an ``se_layer`` too. It scripts (``torch.jit.script``), traces
(``torch.fx.symbolic_trace``) and exports with a dynamic batch (``torch.export``), like the
seed's classes.
"""

from __future__ import annotations

from typing import Any, ClassVar, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prcm.validate import check_basis_config, refuse_dropout
from prcm_torch.functional import eager_checks, gate, recalibrate, spatial_mean, validate_input
from prcm_torch.options import gate_name

__all__ = ["PRCM", "AffinePRCM", "PRCMNoDropout", "AffinePRCMNoDropout", "ShiftOnlyPRCM"]


class _Projection(nn.Linear):
    """A bias-free ``nn.Linear`` whose ``bias`` is an empty, non-persistent buffer rather than
    ``None``: timm's EfficientNet / MobileNetV3 init zeroes every ``nn.Linear``'s bias without
    checking for one. The state_dict (``weight`` only) and the math are ``nn.Linear(bias=False)``'s."""

    def __init__(self, in_features: int, out_features: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__(in_features, out_features, bias=False, device=device, dtype=dtype)
        del self.bias
        self.register_buffer("bias", torch.empty(0, device=device, dtype=dtype), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias=False"


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
        gate: str | None = None,
        gate_layer: Any = None,
        act_layer: Any = None,
        force_act_layer: Any = None,
        rd_ratio: Any = None,
        rd_channels: Any = None,
        rd_divisor: Any = None,
        rd_round_fn: Any = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        check_basis_config(owner, channels, num_basis, dropout_rate)
        name = gate_name(owner, gate, gate_layer)  # checked by every variant, used by those with a scale
        factory = {"device": device, "dtype": dtype}
        self.channels = channels
        self.num_basis = num_basis
        self.gate = name if self.scale_name is not None else None
        self.basis = nn.Parameter(torch.empty(num_basis, channels, **factory))
        self.reset_parameters()  # drawn before the projections, as the seed's torch.randn
        if self.scale_name is not None:
            setattr(self, self.scale_name, _Projection(num_basis, channels, **factory))
        if self.has_shift:
            self.shift_proj = _Projection(num_basis, channels, **factory)
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
            scale = gate(self.fuser(coeff), self.gate)
        if hasattr(self, "scale_proj"):
            scale = gate(self.scale_proj(coeff), self.gate)
        if hasattr(self, "shift_proj"):
            shift = self.shift_proj(coeff)
        return recalibrate(x, scale, shift)

    def extra_repr(self) -> str:
        gated = f", gate={self.gate}" if self.gate not in (None, "sigmoid") else ""
        return f"channels={self.channels}, num_basis={self.num_basis}{gated}"


class PRCM(_BasisRecalibration):
    """Pattern Recalibration Module: ``x * gate(fuser(coeff))``.

    ``coeff = dropout(mean(x) @ basis.T)``, the mean taken over every spatial axis.

    Args:
      channels: number of input channels ``C``.
      num_basis: number of basis vectors ``K``: the block's width. It is not a reduction of
        ``C``: timm's ``rd_ratio`` / ``rd_channels`` do not set it.
      dropout_rate: dropout on the coefficients in train mode, in ``[0, 1)``.
      gate: ``'sigmoid'`` (default) or ``'hard_sigmoid'`` (``relu6(z + 3) / 6``, MobileNetV3's);
        any other gate is refused, naming these two.
      gate_layer: timm's name for ``gate``: the same names (timm's spellings too, as
        ``'hardsigmoid'``) or ``nn.Sigmoid`` / ``nn.Hardsigmoid`` and timm's classes for them.
        Given with ``gate``, the two must agree.
      act_layer: accepted as timm's builders pass it, and not applicable: PRCM has no hidden
        activation (as timm's ``EcaModule`` without its MLP). So are ``force_act_layer``,
        ``rd_ratio``, ``rd_channels``, ``rd_divisor`` and ``rd_round_fn``: the width is ``num_basis``.
      device: where to create the parameters (``"meta"`` for a skeleton to fill later).
      dtype: parameter dtype.

    >>> m = PRCM(64, num_basis=8)
    >>> tuple(m(torch.randn(2, 64, 16, 16)).shape)
    (2, 64, 16, 16)
    >>> sorted(m.state_dict())
    ['basis', 'fuser.weight']
    >>> PRCM(64, gate_layer=nn.Hardsigmoid, rd_ratio=0.25, act_layer=nn.SiLU).gate
    'hard_sigmoid'
    """

    scale_name = "fuser"
    has_shift = False

    def __init__(self, channels: int, num_basis: int = 8, dropout_rate: float = 0.5, **kwargs: Any) -> None:
        super().__init__(channels, num_basis, dropout_rate, **kwargs)


class AffinePRCM(_BasisRecalibration):
    """Affine PRCM: ``x * gate(scale_proj(coeff)) + shift_proj(coeff)``.

    Args:
      channels: number of input channels ``C``.
      num_basis: number of basis vectors ``K`` (the width; not set by timm's ``rd_ratio``).
      dropout_rate: dropout on the coefficients in train mode, in ``[0, 1)``.
      **kwargs: ``gate=``, timm's keywords, ``device=``, ``dtype=``, as :class:`PRCM`.

    >>> m = AffinePRCM(64, dtype=torch.float64)
    >>> tuple(m(torch.randn(1, 64, 8, 8, dtype=torch.float64)).shape)
    (1, 64, 8, 8)
    >>> sorted(m.state_dict())
    ['basis', 'scale_proj.weight', 'shift_proj.weight']
    >>> AffinePRCM(64, gate="hard_sigmoid").gate
    'hard_sigmoid'
    """

    scale_name = "scale_proj"
    has_shift = True

    def __init__(self, channels: int, num_basis: int = 8, dropout_rate: float = 0.5, **kwargs: Any) -> None:
        super().__init__(channels, num_basis, dropout_rate, **kwargs)


class PRCMNoDropout(PRCM):
    """:class:`PRCM` without dropout (the seed's ``PRCM_NoDropout``).

    Args:
      channels: number of input channels ``C``.
      num_basis: number of basis vectors ``K``.
      **kwargs: ``gate=``, timm's keywords, ``device=``, ``dtype=``, as :class:`PRCM`.

    >>> tuple(PRCMNoDropout(32, num_basis=4)(torch.randn(3, 32, 10)).shape)
    (3, 32, 10)
    """

    def __init__(self, channels: int, num_basis: int = 8, **kwargs: Any) -> None:
        super().__init__(channels, num_basis, 0.0, **refuse_dropout(type(self).__name__, kwargs))


class AffinePRCMNoDropout(AffinePRCM):
    """:class:`AffinePRCM` without dropout (the seed's ``AffinePRCM_NoDropout``).

    Args:
      channels: number of input channels ``C``.
      num_basis: number of basis vectors ``K``.
      **kwargs: ``gate=``, timm's keywords, ``device=``, ``dtype=``, as :class:`PRCM`.

    >>> tuple(AffinePRCMNoDropout(16)(torch.randn(2, 16, 4, 4, 4)).shape)
    (2, 16, 4, 4, 4)
    """

    def __init__(self, channels: int, num_basis: int = 8, **kwargs: Any) -> None:
        super().__init__(channels, num_basis, 0.0, **refuse_dropout(type(self).__name__, kwargs))


class ShiftOnlyPRCM(_BasisRecalibration):
    """Shift-only ablation: ``x + shift_proj(mean(x) @ basis.T)``.

    It has no gate: ``gate`` / ``gate_layer`` are checked (a name it does not know is refused,
    as by every block) and change nothing, so the block fills any ``se_layer`` slot, MobileNetV3's
    hard-sigmoid ones included; its ``gate`` attribute is ``None``.

    Args:
      channels: number of input channels ``C``.
      num_basis: number of basis vectors ``K``.
      **kwargs: ``gate=`` (no effect), timm's keywords, ``device=``, ``dtype=``, as :class:`PRCM`.

    >>> m = ShiftOnlyPRCM(64, device="meta", gate_layer="hard_sigmoid")
    >>> m.basis.device.type, sorted(m.state_dict()), m.gate
    ('meta', ['basis', 'shift_proj.weight'], None)
    """

    scale_name = None
    has_shift = True

    def __init__(self, channels: int, num_basis: int = 8, **kwargs: Any) -> None:
        super().__init__(channels, num_basis, 0.0, **refuse_dropout(type(self).__name__, kwargs))
