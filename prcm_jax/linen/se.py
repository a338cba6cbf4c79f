"""Squeeze-and-Excitation as a Flax linen module, channels-last ``(B, *spatial, C)``."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax.typing import Dtype, Initializer, PrecisionLike

from prcm.validate import check_se_config
from prcm_jax import functional as F
from prcm_jax.initializers import torch_linear_bias_init, torch_linear_kernel_init
from prcm_jax.linen.params import LinearParams

__all__ = ["SEModule"]


class SEModule(nn.Module):
    """Squeeze-and-Excitation: ``x * sigmoid(fc2(relu(fc1(mean(x)))))``, Flax linen.

    Channels are inferred from the input; the hidden width is ``channels // reduction``.

    Args:
      reduction: bottleneck reduction.
      deterministic: accepted for drop-in use beside the PRCM modules; SE has no dropout.
      dtype: computation dtype (``None``: promote input and parameters).
      param_dtype: parameter dtype.
      precision: precision of every dot product.
      kernel_init: initializer of both kernels (default torch's ``nn.Linear`` init).

    >>> variables = SEModule().init(jax.random.key(0), jnp.ones((1, 8, 8, 64)))
    >>> jax.tree.map(jnp.shape, variables)
    {'params': {'fc1': {'bias': (16,), 'kernel': (64, 16)}, 'fc2': {'bias': (64,), 'kernel': (16, 64)}}}
    """

    reduction: int = 4
    deterministic: bool | None = dataclasses.field(default=None, kw_only=True)
    dtype: Dtype | None = dataclasses.field(default=None, kw_only=True)
    param_dtype: Dtype = dataclasses.field(default=jnp.float32, kw_only=True)
    precision: PrecisionLike = dataclasses.field(default=None, kw_only=True)
    kernel_init: Initializer = dataclasses.field(default=torch_linear_kernel_init, kw_only=True)

    def __post_init__(self) -> None:
        check_se_config(type(self).__name__, None, self.reduction)
        super().__post_init__()

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
        check_se_config(owner, channels, self.reduction)
        hidden = channels // self.reduction
        linear = dict(use_bias=True, param_dtype=self.param_dtype, kernel_init=self.kernel_init)
        w1, b1 = LinearParams(channels, hidden, bias_init=torch_linear_bias_init(channels), name="fc1", **linear)()
        w2, b2 = LinearParams(hidden, channels, bias_init=torch_linear_bias_init(hidden), name="fc2", **linear)()
        return F.squeeze_excitation(x, w1, b1, w2, b2, dtype=self.dtype, precision=self.precision, owner=owner)
