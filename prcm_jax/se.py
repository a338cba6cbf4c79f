"""Squeeze-and-Excitation as a Flax NNX module, channels-last ``(B, *spatial, C)``."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx
from flax.typing import Dtype, Initializer, PrecisionLike

from prcm.validate import check_activation, check_gate, check_se_config
from prcm_jax import functional as F
from prcm_jax.initializers import torch_linear_bias_init, torch_linear_kernel_init
from prcm_jax.params import LinearParams

__all__ = ["SEModule"]


class SEModule(nnx.Module):
    """Squeeze-and-Excitation: ``x * gate(fc2(act(fc1(mean(x)))))``, ReLU and sigmoid by default, Flax NNX.

    It has no dropout; it takes ``deterministic`` and ``keep_rngs`` (and follows ``nnx.view``)
    so that it is interchangeable with the PRCM variants in a model. The hidden width follows
    the same keywords as :class:`prcm_torch.SEModule` (:func:`prcm.validate.check_se_config`).

    Args:
      channels: number of channels ``C`` (the last axis).
      reduction: bottleneck reduction, the hidden width ``channels // reduction`` (default 4).
      rd_ratio: timm's reduction ratio (``round(C * rd_ratio)``, or rounded by ``rd_divisor`` /
        ``rd_round_fn``).
      rd_channels: timm's explicit hidden width.
      rd_divisor: round ``C * rd_ratio`` to a multiple of this.
      rd_round_fn: round ``C * rd_ratio`` with this function.
      act_layer: the hidden activation, ``'relu'`` (default), ``'silu'`` or ``'hard_swish'``.
      gate: ``'sigmoid'`` (default) or ``'hard_sigmoid'``.
      dtype: computation dtype (``None``: promote input and parameters).
      param_dtype: parameter dtype.
      precision: precision of every dot product.
      deterministic: the mode flag, as the PRCM variants (changes nothing here).
      keep_rngs: accepted as the PRCM variants (no stream is kept).
      kernel_init: initializer of both kernels (default torch's ``nn.Linear`` init; the
        biases use torch's ``uniform(±1/sqrt(fan_in))``).
      rngs: ``params`` stream for init.

    >>> from flax import nnx
    >>> m = SEModule(64, rngs=nnx.Rngs(0))
    >>> m(jnp.ones((2, 8, 8, 64))).shape
    (2, 8, 8, 64)
    >>> jax.tree.map(jnp.shape, nnx.to_pure_dict(nnx.state(m, nnx.Param)))
    {'fc1': {'bias': (16,), 'kernel': (64, 16)}, 'fc2': {'bias': (64,), 'kernel': (16, 64)}}
    >>> m = SEModule(96, rd_channels=4, act_layer="silu", gate="hard_sigmoid", rngs=nnx.Rngs(0))
    >>> m.fc1.kernel.shape, m.act_layer, m.gate
    ((96, 4), 'silu', 'hard_sigmoid')
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
        act_layer: str = "relu",
        gate: str = "sigmoid",
        dtype: Dtype | None = None,
        param_dtype: Dtype = jnp.float32,
        precision: PrecisionLike = None,
        deterministic: bool = False,
        keep_rngs: bool = True,
        kernel_init: Initializer = torch_linear_kernel_init,
        rngs: nnx.Rngs,
    ) -> None:
        owner = type(self).__name__
        hidden = check_se_config(owner, channels, reduction, rd_ratio=rd_ratio, rd_channels=rd_channels,
                                 rd_divisor=rd_divisor, rd_round_fn=rd_round_fn)  # fmt: skip
        self.act_layer = check_activation(owner, act_layer)
        self.gate = check_gate(owner, gate)
        self.channels = channels
        self.reduction = (4 if reduction is None else reduction) if rd_ratio is None and rd_channels is None else None
        self.rd_channels = hidden
        self.dtype = dtype
        self.param_dtype = param_dtype
        self.precision = precision
        self.deterministic = deterministic
        common = dict(use_bias=True, param_dtype=param_dtype, kernel_init=kernel_init, rngs=rngs)
        self.fc1 = LinearParams(channels, hidden, bias_init=torch_linear_bias_init(channels), **common)
        self.fc2 = LinearParams(hidden, channels, bias_init=torch_linear_bias_init(hidden), **common)

    def set_view(self, deterministic: bool | None = None) -> None:
        """The modes ``nnx.view`` sets (as ``nnx.Dropout.set_view``).

        Args:
          deterministic: the mode flag (SE has no dropout; kept for interchangeability).
        """
        if deterministic is not None:
            self.deterministic = deterministic

    def __call__(self, x: jax.Array, *, deterministic: bool | None = None, rngs: object = None) -> jax.Array:
        """Recalibrate ``x``.

        Args:
          x: ``(B, *spatial, C)``.
          deterministic: accepted for drop-in use beside the PRCM modules; SE has no dropout.
          rngs: accepted and ignored, as ``deterministic``.
        """
        return F.squeeze_excitation(
            x, *self.fc1.value(), *self.fc2.value(), act_layer=self.act_layer, gate=self.gate,
            dtype=self.dtype, precision=self.precision, owner=type(self).__name__,
        )  # fmt: skip
