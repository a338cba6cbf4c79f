"""Layers the network twins share: PyTorch-faithful BatchNorm, timm's ``make_divisible`` and
convolution init, and :class:`Modes` (a layer that takes ``nnx.view``'s ``deterministic``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from flax.typing import Dtype, Initializer

__all__ = ["BatchNorm", "Modes", "make_divisible", "conv_kernel_init"]

#: timm's ``nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu")`` for a Flax
#: ``(kh, kw, in, out)`` kernel: normal with variance ``2 / (kh * kw * out)``.
conv_kernel_init = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None, round_limit: float = 0.9) -> int:
    """timm's ``make_divisible``: ``v`` rounded to a multiple of ``divisor``.

    Args:
      v: the value.
      divisor: the multiple.
      min_value: the smallest result (default ``divisor``).
      round_limit: round up once more if the result fell below ``round_limit * v``.

    >>> make_divisible(64 / 16, 8, round_limit=0.0), make_divisible(2048 / 16, 8, round_limit=0.0)
    (8, 128)
    """
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < round_limit * v:
        new_v += divisor
    return new_v


class BatchNorm(nnx.BatchNorm):
    """``nnx.BatchNorm`` with PyTorch's ``BatchNorm2d`` numerics, channels-last.

    Defaults are torch's (``momentum=0.9`` in Flax terms is torch's 0.1, ``epsilon=1e-5``);
    batch statistics are two-pass, in at least float32 (torch's CPU kernel accumulates them in
    float64; see :mod:`parity.proof.networks` for what that does to float32 agreement); the running
    variance is updated with the unbiased batch variance (``n / (n - 1)``), as torch does
    (Flax uses the biased one);
    the running statistics have ``param_dtype``, as torch's buffers have the module's dtype.
    Variables, ``use_running_average`` and ``set_view`` are ``nnx.BatchNorm``'s.

    Args:
      num_features: channels (the last axis).
      momentum: decay of the running averages (Flax convention: ``1 - torch_momentum``).
      epsilon: added to the variance.
      dtype: computation dtype (``None``: promote input and parameters).
      param_dtype: dtype of the parameters and running statistics.
      scale_init: initializer of ``scale`` (``zeros`` for timm's ``zero_init_last``).
      rngs: the ``params`` stream.

    >>> bn = BatchNorm(8, rngs=nnx.Rngs(0))
    >>> y = bn(jnp.arange(32.0).reshape(2, 2, 1, 8))
    >>> v = bn.var[...][0]  # 0.9 * 1 + 0.1 * 320 / 3, the unbiased variance of (0, 8, 16, 24)
    >>> round(float(v), 4), str(v.dtype)
    (11.5667, 'float32')
    """

    def __init__(self, num_features: int, *, momentum: float = 0.9, epsilon: float = 1e-5, dtype: Dtype | None = None,
                 param_dtype: Dtype = jnp.float32, scale_init: Initializer = nnx.initializers.ones_init(),
                 rngs: nnx.Rngs) -> None:  # fmt: skip
        super().__init__(num_features, momentum=momentum, epsilon=epsilon, dtype=dtype, param_dtype=param_dtype,
                         use_fast_variance=False, scale_init=scale_init, rngs=rngs)  # fmt: skip
        self.mean = nnx.BatchStat(jnp.zeros((num_features,), param_dtype))
        self.var = nnx.BatchStat(jnp.ones((num_features,), param_dtype))

    def __call__(self, x: jax.Array, use_running_average: bool | None = None, *, mask: None = None) -> jax.Array:
        """Normalise ``x`` ``(..., C)`` with batch statistics (train) or running ones (eval).

        Args:
          x: the input, channels last.
          use_running_average: overrides the module's mode.
          mask: not supported (torch has none); must be ``None``.
        """
        if mask is not None:
            raise ValueError("BatchNorm: mask is not supported (PyTorch's BatchNorm2d has none)")
        use_running_average = self.use_running_average if use_running_average is None else use_running_average
        x, mean, var, scale, bias = self.promote_dtype((x, self.mean[...], self.var[...], self.scale[...], self.bias[...]),
                                                       dtype=self.dtype)  # fmt: skip
        if not use_running_average:
            n = x.size // x.shape[-1]
            if n < 2:
                raise ValueError(f"BatchNorm: expected more than 1 value per channel when training, got input shape {x.shape}")
            axes = tuple(range(x.ndim - 1))
            xs = x.astype(jnp.promote_types(x.dtype, jnp.float32))
            mean = xs.mean(axes)
            var = jnp.square(xs - mean).mean(axes)
            m = self.momentum
            self.mean[...] = jax.lax.stop_gradient(m * self.mean[...] + (1 - m) * mean).astype(self.mean.dtype)
            self.var[...] = jax.lax.stop_gradient(m * self.var[...] + (1 - m) * var * (n / (n - 1))).astype(self.var.dtype)
            mean, var = mean.astype(x.dtype), var.astype(x.dtype)
        return (x - mean) * (jax.lax.rsqrt(var + self.epsilon) * scale) + bias


class Modes(nnx.Module):
    """A layer that may hold attention blocks (the twins' blocks and networks):
    ``nnx.view(layer, deterministic=...)`` is accepted whether or not one of them has dropout,
    as ``nnx.Dropout`` and the :mod:`prcm_jax` blocks accept it.

    >>> from prcm_jax.models import BasicBlock
    >>> block = BasicBlock(64, 64, rngs=nnx.Rngs(0))  # no attention, no dropout
    >>> nnx.view(block, deterministic=True, use_running_average=True).bn1.use_running_average
    True
    """

    def set_view(self, deterministic: bool | None = None) -> None:
        """Used by ``nnx.view``: declares the mode of the layer (the attention blocks switch
        themselves; the BatchNorm layers take ``use_running_average``).

        Args:
          deterministic: dropout off in the attention blocks (without one, nothing changes).
        """
