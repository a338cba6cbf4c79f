"""The PRCM variants as Flax NNX modules, channels-last ``(B, *spatial, C)``.

Parameters mirror the PyTorch modules by name (``basis``, ``fuser.kernel``,
``scale_proj.kernel``, ``shift_proj.kernel``); kernels are Flax ``(in, out)``, the
transpose of torch's ``weight``. The math is :func:`prcm_jax.functional.basis_recalibration`.
"""

from __future__ import annotations

import functools
from typing import ClassVar

import jax
import jax.numpy as jnp
from flax import nnx
from flax.typing import Dtype, Initializer, PrecisionLike

from prcm.validate import check_basis_config
from prcm_jax import functional as F
from prcm_jax.initializers import basis_init, torch_linear_kernel_init

__all__ = ["PRCM", "AffinePRCM", "PRCMNoDropout", "AffinePRCMNoDropout", "ShiftOnlyPRCM", "dropout_key"]

RngsLike = nnx.Rngs | nnx.RngStream | jax.Array


def dropout_key(owner: str, rngs: RngsLike | None, default: nnx.RngStream | None) -> jax.Array:
    """The PRNG key for one call's dropout mask: ``rngs`` if given, else the module's stream.

    Args:
      owner: class name for the message.
      rngs: ``nnx.Rngs`` (its ``dropout`` stream), an ``nnx.RngStream``, or a key array.
      default: the module's own stream, used when ``rngs`` is ``None``.
    """
    rngs = default if rngs is None else rngs
    if isinstance(rngs, nnx.Rngs):
        return rngs["dropout"]()
    if isinstance(rngs, nnx.RngStream):
        return rngs()
    if isinstance(rngs, jax.Array):
        return rngs
    raise TypeError(
        f"{owner}: dropout in train mode needs rngs (nnx.Rngs, nnx.RngStream or a key array), "
        f"got {type(rngs).__name__}"
    )


class _BasisRecalibration(nnx.Module):
    """Shared constructor and call of the PRCM variants; subclasses set the class attributes."""

    scale_name: ClassVar[str | None]  # attribute holding the scale projection, if any
    has_shift: ClassVar[bool]  # whether the module owns ``shift_proj``

    def __init__(
        self,
        channels: int,
        num_basis: int = 8,
        dropout_rate: float = 0.0,
        *,
        dtype: Dtype | None = None,
        param_dtype: Dtype = jnp.float32,
        precision: PrecisionLike = None,
        deterministic: bool = False,
        basis_init: Initializer = basis_init,
        kernel_init: Initializer = torch_linear_kernel_init,
        rngs: nnx.Rngs,
    ) -> None:
        check_basis_config(type(self).__name__, channels, num_basis, dropout_rate)
        self.channels = channels
        self.num_basis = num_basis
        self.dropout_rate = dropout_rate
        self.dtype = dtype
        self.param_dtype = param_dtype
        self.precision = precision
        self.deterministic = deterministic
        self.basis = nnx.Param(basis_init(rngs.params(), (num_basis, channels), param_dtype))
        projection = functools.partial(
            nnx.Linear, num_basis, channels, use_bias=False, dtype=dtype, param_dtype=param_dtype,
            precision=precision, kernel_init=kernel_init, rngs=rngs,
        )  # fmt: skip
        if self.scale_name is not None:
            setattr(self, self.scale_name, projection())
        if self.has_shift:
            self.shift_proj = projection()
        self.rngs = rngs["dropout"].fork() if dropout_rate > 0 else nnx.data(None)

    def __call__(
        self, x: jax.Array, *, deterministic: bool | None = None, rngs: RngsLike | None = None
    ) -> jax.Array:
        """Recalibrate ``x``.

        Args:
          x: ``(B, *spatial, C)``.
          deterministic: ``True`` disables dropout; ``None`` uses the module's setting
            (``model.eval()`` / ``model.train()``).
          rngs: overrides the module's dropout stream; a key array gives the mask
            ``functional.keep_mask(key, dropout_rate, (B, num_basis))``.
        """
        owner = type(self).__name__
        deterministic = self.deterministic if deterministic is None else deterministic
        key = None if deterministic or self.dropout_rate == 0 else dropout_key(owner, rngs, self.rngs)
        scale = getattr(self, self.scale_name).kernel[...] if self.scale_name else None
        shift = self.shift_proj.kernel[...] if self.has_shift else None
        return F.basis_recalibration(
            x, self.basis[...], scale, shift, dropout_rate=self.dropout_rate, dropout_key=key,
            dtype=self.dtype, precision=self.precision, owner=owner,
        )  # fmt: skip


class PRCM(_BasisRecalibration):
    """Pattern Recalibration Module: ``x * sigmoid(fuser(coeff))``, Flax NNX.

    ``coeff = dropout(mean(x) @ basis.T)``, the mean taken over every spatial axis.

    Args:
      channels: number of channels ``C`` (the last axis).
      num_basis: number of basis vectors ``K``.
      dropout_rate: dropout on the coefficients in train mode, in ``[0, 1)``.
      dtype: computation dtype (``None``: promote input and parameters).
      param_dtype: parameter dtype.
      precision: precision of every dot product.
      deterministic: start in eval mode (``model.eval()`` / ``model.train()`` switch it).
      basis_init: initializer of ``basis`` (default standard normal, as torch).
      kernel_init: initializer of the projections (default torch's ``nn.Linear`` init).
      rngs: ``params`` for init; ``dropout`` (or ``default``) for the masks.

    >>> from flax import nnx
    >>> m = PRCM(64, rngs=nnx.Rngs(0))
    >>> m.eval()
    >>> m(jnp.ones((2, 16, 16, 64))).shape
    (2, 16, 16, 64)
    >>> jax.tree.map(jnp.shape, nnx.to_pure_dict(nnx.state(m, nnx.Param)))
    {'basis': (8, 64), 'fuser': {'kernel': (8, 64)}}
    """

    scale_name = "fuser"
    has_shift = False

    def __init__(self, channels: int, num_basis: int = 8, dropout_rate: float = 0.5, **kwargs) -> None:
        super().__init__(channels, num_basis, dropout_rate, **kwargs)


class AffinePRCM(_BasisRecalibration):
    """Affine PRCM: ``x * sigmoid(scale_proj(coeff)) + shift_proj(coeff)``, Flax NNX.

    Args:
      channels: number of channels ``C`` (the last axis).
      num_basis: number of basis vectors ``K``.
      dropout_rate: dropout on the coefficients in train mode, in ``[0, 1)``.
      **kwargs: ``dtype``, ``param_dtype``, ``precision``, ``deterministic``, initializers
        and ``rngs``, as :class:`PRCM`.

    >>> from flax import nnx
    >>> m = AffinePRCM(32, num_basis=4, rngs=nnx.Rngs(0))
    >>> m(jnp.ones((1, 8, 8, 32)), deterministic=True).shape
    (1, 8, 8, 32)
    """

    scale_name = "scale_proj"
    has_shift = True

    def __init__(self, channels: int, num_basis: int = 8, dropout_rate: float = 0.5, **kwargs) -> None:
        super().__init__(channels, num_basis, dropout_rate, **kwargs)


class PRCMNoDropout(_BasisRecalibration):
    """:class:`PRCM` without dropout, Flax NNX.

    Args:
      channels: number of channels ``C`` (the last axis).
      num_basis: number of basis vectors ``K``.
      **kwargs: ``dtype``, ``param_dtype``, ``precision``, initializers and ``rngs``.

    >>> from flax import nnx
    >>> PRCMNoDropout(16, rngs=nnx.Rngs(0))(jnp.ones((3, 10, 16))).shape
    (3, 10, 16)
    """

    scale_name = "fuser"
    has_shift = False

    def __init__(self, channels: int, num_basis: int = 8, **kwargs) -> None:
        super().__init__(channels, num_basis, 0.0, **kwargs)


class AffinePRCMNoDropout(_BasisRecalibration):
    """:class:`AffinePRCM` without dropout, Flax NNX.

    Args:
      channels: number of channels ``C`` (the last axis).
      num_basis: number of basis vectors ``K``.
      **kwargs: ``dtype``, ``param_dtype``, ``precision``, initializers and ``rngs``.

    >>> from flax import nnx
    >>> AffinePRCMNoDropout(16, rngs=nnx.Rngs(0))(jnp.ones((2, 4, 4, 4, 16))).shape
    (2, 4, 4, 4, 16)
    """

    scale_name = "scale_proj"
    has_shift = True

    def __init__(self, channels: int, num_basis: int = 8, **kwargs) -> None:
        super().__init__(channels, num_basis, 0.0, **kwargs)


class ShiftOnlyPRCM(_BasisRecalibration):
    """Shift-only ablation: ``x + shift_proj(mean(x) @ basis.T)``, Flax NNX.

    Args:
      channels: number of channels ``C`` (the last axis).
      num_basis: number of basis vectors ``K``.
      **kwargs: ``dtype``, ``param_dtype``, ``precision``, initializers and ``rngs``.

    >>> from flax import nnx
    >>> ShiftOnlyPRCM(64, rngs=nnx.Rngs(0))(jnp.ones((1, 8, 8, 64))).shape
    (1, 8, 8, 64)
    """

    scale_name = None
    has_shift = True

    def __init__(self, channels: int, num_basis: int = 8, **kwargs) -> None:
        super().__init__(channels, num_basis, 0.0, **kwargs)
