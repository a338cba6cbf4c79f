"""Squeeze-and-Excitation as a Flax linen module, channels-last ``(B, *spatial, C)``."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax.typing import Dtype, Initializer, PrecisionLike

from prcm.validate import check_activation, check_gate, check_se_config
from prcm_jax import functional as F
from prcm_jax.initializers import torch_linear_bias_init, torch_linear_kernel_init
from prcm_jax.linen.params import LinearParams

__all__ = ["SEModule"]


class SEModule(nn.Module):
    """Squeeze-and-Excitation: ``x * gate(fc2(act(fc1(mean(x)))))``, ReLU and sigmoid by default, Flax linen.

    Channels are inferred from the input; the hidden width follows the same keywords as
    :class:`prcm_torch.SEModule` (:func:`prcm.validate.check_se_config`), checked against
    the input's channels at the call.

    Args:
      reduction: bottleneck reduction, the hidden width ``channels // reduction`` (default 4).
      rd_ratio: timm's reduction ratio; rd_channels: timm's explicit hidden width;
        rd_divisor / rd_round_fn: how ``channels * rd_ratio`` is rounded.
      act_layer: the hidden activation, ``'relu'`` (default), ``'silu'`` or ``'hard_swish'``.
      gate: ``'sigmoid'`` (default) or ``'hard_sigmoid'``.
      deterministic: accepted for drop-in use beside the PRCM modules; SE has no dropout.
      dtype: computation dtype (``None``: promote input and parameters).
      param_dtype: parameter dtype.
      precision: precision of every dot product.
      kernel_init: initializer of both kernels (default torch's ``nn.Linear`` init).

    >>> variables = SEModule().init(jax.random.key(0), jnp.ones((1, 8, 8, 64)))
    >>> jax.tree.map(jnp.shape, variables)
    {'params': {'fc1': {'bias': (16,), 'kernel': (64, 16)}, 'fc2': {'bias': (64,), 'kernel': (16, 64)}}}
    """

    reduction: int | None = None
    rd_ratio: float | None = dataclasses.field(default=None, kw_only=True)
    rd_channels: int | None = dataclasses.field(default=None, kw_only=True)
    rd_divisor: int | None = dataclasses.field(default=None, kw_only=True)
    rd_round_fn: Callable[[float], int] | None = dataclasses.field(default=None, kw_only=True)
    act_layer: str = dataclasses.field(default="relu", kw_only=True)
    gate: str = dataclasses.field(default="sigmoid", kw_only=True)
    deterministic: bool | None = dataclasses.field(default=None, kw_only=True)
    dtype: Dtype | None = dataclasses.field(default=None, kw_only=True)
    param_dtype: Dtype = dataclasses.field(default=jnp.float32, kw_only=True)
    precision: PrecisionLike = dataclasses.field(default=None, kw_only=True)
    kernel_init: Initializer = dataclasses.field(default=torch_linear_kernel_init, kw_only=True)

    def __post_init__(self) -> None:
        owner = type(self).__name__
        self._hidden_width(None)
        check_activation(owner, self.act_layer)
        check_gate(owner, self.gate)
        super().__post_init__()

    def _hidden_width(self, channels: int | None) -> int | None:
        return check_se_config(type(self).__name__, channels, self.reduction, rd_ratio=self.rd_ratio, rd_channels=self.rd_channels,
                               rd_divisor=self.rd_divisor, rd_round_fn=self.rd_round_fn)  # fmt: skip

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool | None = None, rng: jax.Array | None = None) -> jax.Array:
        """Recalibrate ``x``.

        Args:
          x: ``(B, *spatial, C)``.
          deterministic: accepted for drop-in use beside the PRCM modules; SE has no dropout.
          rng: accepted and ignored, as ``deterministic``.
        """
        owner = type(self).__name__
        stored = nn.meta.unbox(self.get_variable("params", "fc1"))["kernel"] if self.has_variable("params", "fc1") else None
        F.validate_input(owner, x, None if stored is None else stored.shape[0])
        channels = x.shape[-1]
        hidden = self._hidden_width(channels)
        linear = dict(use_bias=True, param_dtype=self.param_dtype, kernel_init=self.kernel_init)
        w1, b1 = LinearParams(channels, hidden, bias_init=torch_linear_bias_init(channels), name="fc1", **linear)()
        w2, b2 = LinearParams(hidden, channels, bias_init=torch_linear_bias_init(hidden), name="fc2", **linear)()
        return F.squeeze_excitation(x, w1, b1, w2, b2, act_layer=self.act_layer, gate=self.gate,
                                    dtype=self.dtype, precision=self.precision, owner=owner)  # fmt: skip
