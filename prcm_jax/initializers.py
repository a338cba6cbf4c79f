"""Initializers that draw from the same distributions as the PyTorch modules.

``torch.randn`` for the basis, and ``nn.Linear``'s default: kernel and bias uniform in
``±1/sqrt(fan_in)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax.nnx import initializers
from flax.typing import Initializer

__all__ = ["basis_init", "torch_linear_kernel_init", "torch_linear_bias_init"]

#: ``basis ~ N(0, 1)``, as ``torch.randn``.
basis_init: Initializer = initializers.normal(stddev=1.0)

#: ``nn.Linear``'s weight init, kaiming_uniform(a=sqrt(5)) = uniform(±1/sqrt(fan_in)), for a
#: Flax ``(in, out)`` kernel.
torch_linear_kernel_init: Initializer = initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def torch_linear_bias_init(fan_in: int) -> Initializer:
    """``nn.Linear``'s bias init: uniform in ``±1/sqrt(fan_in)``.

    Args:
      fan_in: the layer's input features.

    Examples:
        >>> b = torch_linear_bias_init(16)(jax.random.key(0), (4,))
        >>> b.shape, bool(jnp.all(jnp.abs(b) <= 0.25))
        ((4,), True)
    """
    bound = 1.0 / fan_in**0.5

    def init(key: jax.Array, shape: tuple[int, ...], dtype: jnp.dtype = jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init
