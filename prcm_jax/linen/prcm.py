"""The PRCM variants as Flax linen modules, channels-last ``(B, *spatial, C)``.

Channels are inferred from the input; the parameter tree equals the NNX modules' state
(``basis``, ``fuser/kernel``, ...). The math is :func:`prcm_jax.functional.basis_recalibration`.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax.typing import Dtype, Initializer, PrecisionLike

from prcm.validate import check_basis_config, check_gate
from prcm_jax import functional as F
from prcm_jax.initializers import basis_init, torch_linear_kernel_init
from prcm_jax.linen.params import LinearParams

__all__ = ["PRCM", "AffinePRCM", "PRCMNoDropout", "AffinePRCMNoDropout", "ShiftOnlyPRCM"]


def _kw(default: object) -> object:
    return dataclasses.field(default=default, kw_only=True)


class _BasisRecalibration(nn.Module):
    """Shared fields and call of the PRCM variants; subclasses set the class attributes."""

    num_basis: int = 8
    dropout_rate: float = 0.0  # a ClassVar in the variants without dropout
    gate: str = _kw("sigmoid")
    deterministic: bool | None = _kw(None)
    dtype: Dtype | None = _kw(None)
    param_dtype: Dtype = _kw(jnp.float32)
    precision: PrecisionLike = _kw(None)
    basis_init: Initializer = _kw(basis_init)
    kernel_init: Initializer = _kw(torch_linear_kernel_init)

    scale_name: ClassVar[str | None]  # submodule holding the scale kernel, if any
    has_shift: ClassVar[bool]  # whether the module owns ``shift_proj``

    def __post_init__(self) -> None:
        check_basis_config(type(self).__name__, None, self.num_basis, self.dropout_rate)
        check_gate(type(self).__name__, self.gate)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool | None = None, rng: jax.Array | None = None) -> jax.Array:
        """Recalibrate ``x``.

        Args:
          x: ``(B, *spatial, C)``.
          deterministic: ``True`` disables dropout; merged with the field as ``nn.Dropout`` does.
          rng: key for the dropout mask (default ``self.make_rng('dropout')``); the mask is
            ``functional.keep_mask(rng, dropout_rate, (B, num_basis))``.
        """
        owner = type(self).__name__
        stored = nn.meta.unbox(self.get_variable("params", "basis")) if self.has_variable("params", "basis") else None
        F.validate_input(owner, x, None if stored is None else stored.shape[-1])
        channels = x.shape[-1]
        basis = self.param("basis", self.basis_init, (self.num_basis, channels), self.param_dtype)

        def kernel(name: str) -> jax.Array:
            return LinearParams(self.num_basis, channels, param_dtype=self.param_dtype, kernel_init=self.kernel_init, name=name)()[0]

        scale = kernel(self.scale_name) if self.scale_name else None
        shift = kernel("shift_proj") if self.has_shift else None
        key = None
        if self.dropout_rate > 0 and not nn.merge_param("deterministic", self.deterministic, deterministic):
            key = self.make_rng("dropout") if rng is None else rng
        return F.basis_recalibration(
            x, basis, scale, shift, dropout_rate=self.dropout_rate, dropout_key=key,
            gate=self.gate, dtype=self.dtype, precision=self.precision, owner=owner,
        )  # fmt: skip


class PRCM(_BasisRecalibration):
    """Pattern Recalibration Module: ``x * gate(fuser(coeff))``, Flax linen.

    Args:
      num_basis: number of basis vectors ``K``.
      dropout_rate: dropout on the coefficients when not deterministic, in ``[0, 1)``.
      gate: ``'sigmoid'`` (default) or ``'hard_sigmoid'`` (``relu6(z + 3) / 6``); others are
        refused when the module is built, naming these two.
      deterministic: default of the call argument, as ``nn.Dropout``.
      dtype: computation dtype (``None``: promote input and parameters).
      param_dtype: parameter dtype.
      precision: precision of every dot product.
      basis_init: initializer of ``basis`` (default standard normal, as torch).
      kernel_init: initializer of the projections (default torch's ``nn.Linear`` init).

    >>> m = PRCM(num_basis=8)
    >>> variables = m.init(jax.random.key(0), jnp.ones((1, 16, 16, 64)), deterministic=True)
    >>> jax.tree.map(jnp.shape, variables)
    {'params': {'basis': (8, 64), 'fuser': {'kernel': (8, 64)}}}
    >>> m.apply(variables, jnp.ones((2, 16, 16, 64)), deterministic=True).shape
    (2, 16, 16, 64)
    >>> PRCM(gate="hard_sigmoid").gate
    'hard_sigmoid'
    """

    dropout_rate: float = 0.5
    scale_name = "fuser"
    has_shift = False


class AffinePRCM(_BasisRecalibration):
    """Affine PRCM: ``x * gate(scale_proj(coeff)) + shift_proj(coeff)``, Flax linen.

    Args:
      num_basis: number of basis vectors ``K``.
      dropout_rate: dropout on the coefficients when not deterministic, in ``[0, 1)``.
      gate: ``'sigmoid'`` or ``'hard_sigmoid'``, as :class:`PRCM`.
      deterministic: default of the call argument, as ``nn.Dropout``.
      dtype: computation dtype; param_dtype, precision and initializers as :class:`PRCM`.

    >>> m = AffinePRCM(num_basis=4, deterministic=False)
    >>> x = jnp.ones((2, 8, 8, 32))
    >>> variables = m.init(jax.random.key(0), x)
    >>> m.apply(variables, x, rngs={'dropout': jax.random.key(1)}).shape
    (2, 8, 8, 32)
    """

    dropout_rate: float = 0.5
    scale_name = "scale_proj"
    has_shift = True


class PRCMNoDropout(PRCM):
    """:class:`PRCM` without dropout, Flax linen.

    Args:
      num_basis: number of basis vectors ``K``.
      deterministic: accepted as :class:`PRCM` (changes nothing here).
      dtype: computation dtype; param_dtype, precision and initializers as :class:`PRCM`.

    >>> m = PRCMNoDropout(4)
    >>> m.init_with_output(jax.random.key(0), jnp.ones((3, 10, 16)))[0].shape
    (3, 10, 16)
    """

    dropout_rate: ClassVar[float] = 0.0


class AffinePRCMNoDropout(AffinePRCM):
    """:class:`AffinePRCM` without dropout, Flax linen.

    Args:
      num_basis: number of basis vectors ``K``.
      deterministic: accepted as :class:`PRCM` (changes nothing here).
      dtype: computation dtype; param_dtype, precision and initializers as :class:`PRCM`.

    >>> m = AffinePRCMNoDropout(deterministic=True)
    >>> m.init_with_output(jax.random.key(0), jnp.ones((2, 4, 4, 4, 16)))[0].shape
    (2, 4, 4, 4, 16)
    """

    dropout_rate: ClassVar[float] = 0.0


class ShiftOnlyPRCM(_BasisRecalibration):
    """Shift-only ablation: ``x + shift_proj(mean(x) @ basis.T)``, Flax linen.

    Args:
      num_basis: number of basis vectors ``K``.
      gate: checked as :class:`PRCM`'s and changes nothing: the block has no gate.
      deterministic: accepted as :class:`PRCM` (changes nothing here).
      dtype: computation dtype; param_dtype, precision and initializers as :class:`PRCM`.

    >>> y, variables = ShiftOnlyPRCM().init_with_output(jax.random.key(0), jnp.ones((1, 8, 8, 64)))
    >>> y.shape, sorted(variables['params'])
    ((1, 8, 8, 64), ['basis', 'shift_proj'])
    """

    dropout_rate: ClassVar[float] = 0.0
    scale_name = None
    has_shift = True
