"""Squeeze-and-Excitation as a Flax NNX module, channels-last ``(B, *spatial, C)``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from flax.typing import Dtype, Initializer, PrecisionLike

from prcm.validate import check_se_config
from prcm_jax import functional as F
from prcm_jax.initializers import torch_linear_bias_init, torch_linear_kernel_init
from prcm_jax.params import LinearParams

__all__ = ["SEModule"]


class SEModule(nnx.Module):
    """Squeeze-and-Excitation: ``x * sigmoid(fc2(relu(fc1(mean(x)))))``, Flax NNX.

    It has no dropout; it takes ``deterministic`` and ``keep_rngs`` (and follows ``nnx.view``)
    so that it is interchangeable with the PRCM variants in a model.

    Args:
      channels: number of channels ``C`` (the last axis).
      reduction: bottleneck reduction; the hidden width is ``channels // reduction``.
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
    """

    def __init__(
        self,
        channels: int,
        reduction: int = 4,
        *,
        dtype: Dtype | None = None,
        param_dtype: Dtype = jnp.float32,
        precision: PrecisionLike = None,
        deterministic: bool = False,
        keep_rngs: bool = True,
        kernel_init: Initializer = torch_linear_kernel_init,
        rngs: nnx.Rngs,
    ) -> None:
        check_se_config(type(self).__name__, channels, reduction)
        self.channels = channels
        self.reduction = reduction
        self.dtype = dtype
        self.param_dtype = param_dtype
        self.precision = precision
        self.deterministic = deterministic
        hidden = channels // reduction
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
            x, *self.fc1.value(), *self.fc2.value(), dtype=self.dtype, precision=self.precision, owner=type(self).__name__
        )
