"""The PRCM variants as Flax NNX modules, channels-last ``(B, *spatial, C)``.

``gate=`` picks the scale's gate (``'sigmoid'``, or MobileNetV3's ``'hard_sigmoid'``), as in
:mod:`prcm_torch`; :class:`ShiftOnlyPRCM` has none, and accepts and checks the keyword.

Parameters mirror the PyTorch modules by name (``basis``, ``fuser.kernel``,
``scale_proj.kernel``, ``shift_proj.kernel``); kernels are Flax ``(in, out)``, the
transpose of torch's ``weight``. The math is :func:`prcm_jax.functional.basis_recalibration`.

Modes follow Flax's protocol, as ``nnx.Dropout``: a ``deterministic`` attribute that
``nnx.view(model, deterministic=...)`` (through :meth:`set_view`), ``model.eval()`` and
``model.train()`` switch, and a call argument that overrides it.
"""

from __future__ import annotations

from typing import ClassVar

import jax
import jax.numpy as jnp
from flax import nnx
from flax.typing import Dtype, Initializer, PrecisionLike

from prcm.validate import check_basis_config, check_gate, refuse_dropout
from prcm_jax import functional as F
from prcm_jax.initializers import basis_init, torch_linear_kernel_init
from prcm_jax.params import LinearParams

__all__ = ["PRCM", "AffinePRCM", "PRCMNoDropout", "AffinePRCMNoDropout", "ShiftOnlyPRCM", "dropout_key", "dropout_stream"]

RngsLike = nnx.Rngs | nnx.RngStream | jax.Array


def _has_dropout_stream(rngs: nnx.Rngs) -> bool:
    return "dropout" in rngs or "default" in rngs  # rngs["dropout"] falls back to "default"


def dropout_stream(rngs: nnx.Rngs, keep_rngs: bool) -> nnx.RngStream | None:
    """The stream a module keeps for its dropout masks: a fork of ``rngs``' ``dropout``
    stream (or its ``default``); ``None`` when ``keep_rngs`` is off or ``rngs`` has neither,
    as for a model built only for inference (``nnx.Rngs(params=0)``).

    Args:
      rngs: the constructor's ``nnx.Rngs``.
      keep_rngs: whether to keep a stream at all (as ``nnx.MultiHeadAttention``).

    >>> dropout_stream(nnx.Rngs(params=0), keep_rngs=True) is None
    True
    """
    if not keep_rngs or not _has_dropout_stream(rngs):
        return None
    return rngs["dropout"].fork()


def dropout_key(owner: str, rngs: RngsLike | None, default: nnx.RngStream | None) -> jax.Array:
    """The PRNG key for one call's dropout mask: ``rngs`` if given, else the module's stream.

    Args:
      owner: class name for the message.
      rngs: ``nnx.Rngs`` (its ``dropout`` stream), an ``nnx.RngStream``, or a key array.
      default: the module's own stream, used when ``rngs`` is ``None``.
    """
    if rngs is None and default is not None and any(isinstance(v.get_value(), jax.ShapeDtypeStruct) for v in (default.key, default.count)):
        raise TypeError(
            f"{owner}: dropout in train mode, but this module's dropout stream is abstract (the model came from "
            "nnx.eval_shape and a converter filled its weights, not its RNG state); pass rngs= to the call, or build "
            "the abstract model for inference (deterministic=True, rngs=nnx.Rngs(params=0))"
        )
    rngs = default if rngs is None else rngs
    if isinstance(rngs, nnx.Rngs) and _has_dropout_stream(rngs):
        return rngs["dropout"]()
    if isinstance(rngs, nnx.RngStream):
        return rngs()
    if isinstance(rngs, jax.Array):
        return rngs
    kept = ""
    if rngs is None:
        kept = "; this module keeps no dropout stream (built with keep_rngs=False or without one)"
    elif isinstance(rngs, nnx.Rngs):
        kept = " with neither a 'dropout' nor a 'default' stream"
    raise TypeError(
        f"{owner}: dropout in train mode needs rngs (nnx.Rngs, nnx.RngStream or a key array), "
        f"got {type(rngs).__name__}{kept}; pass rngs= to the call, or call it with deterministic=True / "
        "after model.eval() / under nnx.view(model, deterministic=True)"
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
        gate: str = "sigmoid",
        dtype: Dtype | None = None,
        param_dtype: Dtype = jnp.float32,
        precision: PrecisionLike = None,
        deterministic: bool = False,
        keep_rngs: bool = True,
        basis_init: Initializer = basis_init,
        kernel_init: Initializer = torch_linear_kernel_init,
        rngs: nnx.Rngs,
    ) -> None:
        check_basis_config(type(self).__name__, channels, num_basis, dropout_rate)
        name = check_gate(type(self).__name__, gate)
        self.gate = name if self.scale_name is not None else None
        self.channels = channels
        self.num_basis = num_basis
        self.dropout_rate = dropout_rate
        self.dtype = dtype
        self.param_dtype = param_dtype
        self.precision = precision
        self.deterministic = deterministic
        self.basis = nnx.Param(basis_init(rngs.params(), (num_basis, channels), param_dtype))
        if self.scale_name is not None:
            setattr(self, self.scale_name, LinearParams(num_basis, channels, param_dtype=param_dtype, kernel_init=kernel_init, rngs=rngs))
        if self.has_shift:
            self.shift_proj = LinearParams(num_basis, channels, param_dtype=param_dtype, kernel_init=kernel_init, rngs=rngs)
        self.rngs = dropout_stream(rngs, keep_rngs) if dropout_rate > 0 else None

    def set_view(self, deterministic: bool | None = None) -> None:
        """The modes ``nnx.view`` sets (as ``nnx.Dropout.set_view``).

        Args:
          deterministic: if True, disables dropout.
        """
        if deterministic is not None:
            self.deterministic = deterministic

    def __call__(self, x: jax.Array, *, deterministic: bool | None = None, rngs: RngsLike | None = None) -> jax.Array:
        """Recalibrate ``x``.

        Args:
          x: ``(B, *spatial, C)``.
          deterministic: ``True`` disables dropout; ``None`` uses the module's setting
            (``model.eval()`` / ``model.train()`` / ``nnx.view``).
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
            gate=self.gate or "sigmoid", dtype=self.dtype, precision=self.precision, owner=owner,
        )  # fmt: skip


class PRCM(_BasisRecalibration):
    """Pattern Recalibration Module: ``x * gate(fuser(coeff))``, Flax NNX.

    ``coeff = dropout(mean(x) @ basis.T)``, the mean taken over every spatial axis.

    Args:
      channels: number of channels ``C`` (the last axis).
      num_basis: number of basis vectors ``K``.
      dropout_rate: dropout on the coefficients in train mode, in ``[0, 1)``.
      gate: ``'sigmoid'`` (default) or ``'hard_sigmoid'`` (``relu6(z + 3) / 6``); others are
        refused, naming these two.
      dtype: computation dtype (``None``: promote input and parameters).
      param_dtype: parameter dtype.
      precision: precision of every dot product.
      deterministic: start in eval mode (``True``) or train mode (``False``, as torch).
      keep_rngs: keep a dropout stream forked from ``rngs`` (as ``nnx.MultiHeadAttention``);
        without one, a train-mode call needs ``rngs=``. ``rngs`` with no ``dropout`` or
        ``default`` stream (``nnx.Rngs(params=0)``, an inference-only model) keeps none either.
      basis_init: initializer of ``basis`` (default standard normal, as torch).
      kernel_init: initializer of the projection (default torch's ``nn.Linear`` init).
      rngs: ``params`` stream for init; ``dropout`` (or ``default``) stream for the masks.

    >>> from flax import nnx
    >>> m = PRCM(64, num_basis=8, rngs=nnx.Rngs(0))
    >>> m(jnp.ones((2, 16, 16, 64)), deterministic=True).shape
    (2, 16, 16, 64)
    >>> jax.tree.map(jnp.shape, nnx.to_pure_dict(nnx.state(m, nnx.Param)))
    {'basis': (8, 64), 'fuser': {'kernel': (8, 64)}}
    >>> nnx.view(m, deterministic=True).deterministic
    True
    >>> PRCM(64, gate="hard_sigmoid", rngs=nnx.Rngs(0)).gate
    'hard_sigmoid'
    """

    scale_name = "fuser"
    has_shift = False

    def __init__(self, channels: int, num_basis: int = 8, dropout_rate: float = 0.5, **kwargs) -> None:
        super().__init__(channels, num_basis, dropout_rate, **kwargs)


class AffinePRCM(_BasisRecalibration):
    """Affine PRCM: ``x * gate(scale_proj(coeff)) + shift_proj(coeff)``, Flax NNX.

    Args:
      channels: number of channels ``C`` (the last axis).
      num_basis: number of basis vectors ``K``.
      dropout_rate: dropout on the coefficients in train mode, in ``[0, 1)``.
      **kwargs: ``gate``, ``dtype``, ``param_dtype``, ``precision``, ``deterministic``,
        ``keep_rngs``, initializers and ``rngs``, as :class:`PRCM`.

    >>> from flax import nnx
    >>> m = AffinePRCM(32, num_basis=4, deterministic=True, rngs=nnx.Rngs(params=0))
    >>> m(jnp.ones((1, 8, 8, 32))).shape
    (1, 8, 8, 32)
    """

    scale_name = "scale_proj"
    has_shift = True

    def __init__(self, channels: int, num_basis: int = 8, dropout_rate: float = 0.5, **kwargs) -> None:
        super().__init__(channels, num_basis, dropout_rate, **kwargs)


class PRCMNoDropout(PRCM):
    """:class:`PRCM` without dropout, Flax NNX.

    Args:
      channels: number of channels ``C`` (the last axis).
      num_basis: number of basis vectors ``K``.
      **kwargs: as :class:`PRCM` (``deterministic`` is accepted and changes nothing).

    >>> from flax import nnx
    >>> PRCMNoDropout(16, rngs=nnx.Rngs(0))(jnp.ones((3, 10, 16))).shape
    (3, 10, 16)
    """

    def __init__(self, channels: int, num_basis: int = 8, **kwargs) -> None:
        super().__init__(channels, num_basis, 0.0, **refuse_dropout(type(self).__name__, kwargs))


class AffinePRCMNoDropout(AffinePRCM):
    """:class:`AffinePRCM` without dropout, Flax NNX.

    Args:
      channels: number of channels ``C`` (the last axis).
      num_basis: number of basis vectors ``K``.
      **kwargs: as :class:`PRCM` (``deterministic`` is accepted and changes nothing).

    >>> from flax import nnx
    >>> AffinePRCMNoDropout(16, rngs=nnx.Rngs(0))(jnp.ones((2, 4, 4, 4, 16))).shape
    (2, 4, 4, 4, 16)
    """

    def __init__(self, channels: int, num_basis: int = 8, **kwargs) -> None:
        super().__init__(channels, num_basis, 0.0, **refuse_dropout(type(self).__name__, kwargs))


class ShiftOnlyPRCM(_BasisRecalibration):
    """Shift-only ablation: ``x + shift_proj(mean(x) @ basis.T)``, Flax NNX.

    It has no gate: ``gate`` is checked and changes nothing (``self.gate`` is ``None``).

    Args:
      channels: number of channels ``C`` (the last axis).
      num_basis: number of basis vectors ``K``.
      **kwargs: as :class:`PRCM` (``deterministic`` and ``gate`` are accepted and change nothing).

    >>> from flax import nnx
    >>> ShiftOnlyPRCM(64, rngs=nnx.Rngs(0))(jnp.ones((1, 8, 8, 64))).shape
    (1, 8, 8, 64)
    """

    scale_name = None
    has_shift = True

    def __init__(self, channels: int, num_basis: int = 8, **kwargs) -> None:
        super().__init__(channels, num_basis, 0.0, **refuse_dropout(type(self).__name__, kwargs))
