"""An NNX parameter holder named like a PyTorch ``nn.Linear``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from flax.typing import Dtype, Initializer

from prcm_jax.initializers import torch_linear_kernel_init

__all__ = ["LinearParams"]


class LinearParams(nnx.Module):
    """Holds a ``kernel`` ``(in, out)`` and an optional ``bias`` ``(out,)``, and nothing else.

    Gives an NNX module ``fuser/kernel``-style parameter paths (those of torch's ``nn.Linear``
    submodules, so conversion is a rename plus a transpose) while its math, dtype and precision
    stay in one place: the owning module and :mod:`prcm_jax.functional`. It is not callable,
    so no setting on it can be silently ignored. The linen twin is
    :class:`prcm_jax.linen.LinearParams`.

    Args:
      in_features: input features.
      out_features: output features.
      use_bias: whether to create ``bias``.
      param_dtype: parameter dtype.
      kernel_init: kernel initializer.
      bias_init: bias initializer.
      rngs: the ``params`` stream.

    Examples:
        >>> p = LinearParams(8, 64, rngs=nnx.Rngs(0))
        >>> p.kernel.shape, p.bias
        ((8, 64), None)
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        use_bias: bool = False,
        param_dtype: Dtype = jnp.float32,
        kernel_init: Initializer = torch_linear_kernel_init,
        bias_init: Initializer = nnx.initializers.zeros,
        rngs: nnx.Rngs,
    ) -> None:
        self.kernel = nnx.Param(kernel_init(rngs.params(), (in_features, out_features), param_dtype))
        self.bias = nnx.Param(bias_init(rngs.params(), (out_features,), param_dtype)) if use_bias else nnx.data(None)

    def value(self) -> tuple[jax.Array, jax.Array | None]:
        """``(kernel, bias)`` as arrays (``bias`` is ``None`` without one)."""
        return self.kernel[...], None if self.bias is None else self.bias[...]
