"""A linen parameter holder named like a PyTorch ``nn.Linear``."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax.typing import Dtype, Initializer

from prcm_jax.initializers import torch_linear_kernel_init

__all__ = ["LinearParams"]


class LinearParams(nn.Module):
    """Creates and returns a ``kernel`` ``(in, out)`` and optional ``bias`` ``(out,)``.

    Lets a linen module keep ``fuser/kernel``-style names (as NNX's ``nnx.Linear`` and
    torch's ``nn.Linear`` submodules) while the math stays in :mod:`prcm_jax.functional`.

    Args:
      in_features: input features.
      out_features: output features.
      use_bias: whether to create ``bias``.
      param_dtype: parameter dtype.
      kernel_init: kernel initializer.
      bias_init: bias initializer.

    Examples:
        >>> kernel, bias = LinearParams(8, 64).init_with_output(jax.random.key(0))[0]
        >>> kernel.shape, bias
        ((8, 64), None)
    """

    in_features: int
    out_features: int
    use_bias: bool = False
    param_dtype: Dtype = jnp.float32
    kernel_init: Initializer = torch_linear_kernel_init
    bias_init: Initializer = dataclasses.field(default=nn.initializers.zeros)

    @nn.compact
    def __call__(self) -> tuple[jax.Array, jax.Array | None]:
        kernel = self.param("kernel", self.kernel_init, (self.in_features, self.out_features), self.param_dtype)
        bias = self.param("bias", self.bias_init, (self.out_features,), self.param_dtype) if self.use_bias else None
        return kernel, bias
