"""Layers the network twins share: PyTorch-faithful BatchNorm (and timm's BatchNormAct), timm's
``make_divisible``, activations, convolutions padded and initialised as timm's, the input check,
and :class:`Modes` (a layer that takes ``nnx.view``'s ``deterministic``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from flax.typing import Dtype, Initializer

from prcm.validate import make_divisible

__all__ = [
    "BatchNorm",
    "BatchNormAct",
    "Modes",
    "ACTIVATIONS",
    "make_divisible",
    "conv_kernel_init",
    "grouped_conv_kernel_init",
    "create_conv2d",
    "check_image",
]

#: timm's ``nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu")`` for a Flax
#: ``(kh, kw, in, out)`` kernel: normal with variance ``2 / (kh * kw * out)``.
conv_kernel_init = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")

#: timm's activation names (``create_act_layer``) -> the JAX function computing what the torch
#: layer does (``nn.ReLU``, ``nn.ReLU6``, ``nn.SiLU``, ``nn.Hardswish``, ``nn.Sigmoid``,
#: ``nn.Hardsigmoid``: ``relu6(x + 3) / 6``, the same formula as torch's kernels).
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    "relu6": jax.nn.relu6,
    "silu": jax.nn.silu,
    "hard_swish": jax.nn.hard_swish,
    "sigmoid": jax.nn.sigmoid,
    "hard_sigmoid": jax.nn.hard_sigmoid,
}


def grouped_conv_kernel_init(groups: int = 1) -> Initializer:
    """timm's EfficientNet init (``_init_weight_goog``): normal with variance ``2 / fan_out``,
    ``fan_out = kh * kw * out / groups`` (a depthwise kernel's fan-out is ``kh * kw``).

    Args:
      groups: the convolution's groups (``feature_group_count``).

    Examples:
        >>> w = grouped_conv_kernel_init(64)(jax.random.key(0), (3, 3, 1, 64))
        >>> round(float(w.std() ** 2 * 9), 1)  # variance 2 / 9
        2.0
    """
    return nnx.initializers.variance_scaling(2.0 * groups, "fan_out", "normal")


def create_conv2d(cin: int, cout: int, kernel: int, stride: int = 1, *, groups: int = 1, use_bias: bool = False,
                  kernel_init: Initializer = conv_kernel_init, **kwargs: Any) -> nnx.Conv:  # fmt: skip
    """A convolution padded as timm's ``create_conv2d`` with the default ``pad_type`` (torch's
    symmetric ``padding=kernel // 2``, never ``'SAME'``, which pads a stride-2 convolution
    on the other side).

    Args:
      cin: input channels.
      cout: output channels.
      kernel: kernel size (odd).
      stride: stride.
      groups: ``feature_group_count`` (``cin`` for a depthwise convolution).
      use_bias: with a bias (initialised to zeros).
      kernel_init: kernel initializer.
      **kwargs: ``dtype``, ``param_dtype``, ``rngs``.

    Examples:
        >>> conv = create_conv2d(8, 8, 5, 2, groups=8, rngs=nnx.Rngs(0))
        >>> conv.kernel.shape, conv.padding, conv(jnp.ones((1, 9, 9, 8))).shape
        ((5, 5, 1, 8), ((2, 2), (2, 2)), (1, 5, 5, 8))
    """
    pad = kernel // 2
    return nnx.Conv(cin, cout, (kernel, kernel), strides=stride, padding=((pad, pad), (pad, pad)), feature_group_count=groups,
                    use_bias=use_bias, kernel_init=kernel_init, bias_init=nnx.initializers.zeros_init(), **kwargs)  # fmt: skip


def check_image(owner: str, x: Any, in_chans: int) -> None:
    """A network's input must be a floating-point JAX or NumPy array ``(B, H, W, in_chans)``.

    Args:
      owner: the network's name, for the message.
      x: the input.
      in_chans: the channels it must have.

    Examples:
        >>> check_image("Net", jnp.ones((2, 3, 8, 8)), 3)
        Traceback (most recent call last):
        ...
        ValueError: Net: expected an input (B, H, W, 3) (channels last, H and W >= 1), got shape (2, 3, 8, 8)
    """
    if not isinstance(x, (jax.Array, jax.ShapeDtypeStruct)) and type(x).__module__.split(".")[0] != "numpy":
        raise TypeError(f"{owner}: expected a JAX or NumPy array, got {type(x).__name__}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{owner}: expected a floating-point input, got dtype {x.dtype}")
    if x.ndim != 4 or x.shape[-1] != in_chans or 0 in x.shape[1:3]:
        raise ValueError(f"{owner}: expected an input (B, H, W, {in_chans}) (channels last, H and W >= 1), "
                         f"got shape {tuple(x.shape)}")  # fmt: skip


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

    Examples:
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

    Examples:
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


class BatchNormAct(BatchNorm):
    """timm's ``BatchNormAct2d``: :class:`BatchNorm`, then its activation (``act``, inside the
    layer as in timm, so the state_dict keys are a BatchNorm's).

    Args:
      num_features: channels (the last axis).
      act: a name of :data:`ACTIVATIONS`, or ``None`` (timm's ``apply_act=False``).
      **kwargs: as :class:`BatchNorm`.

    Examples:
        >>> bn = BatchNormAct(4, act="relu", rngs=nnx.Rngs(0))
        >>> bn.eval()
        >>> float(bn(-jnp.ones((1, 2, 2, 4))).max()), sorted(nnx.to_pure_dict(nnx.state(bn)))
        (0.0, ['bias', 'mean', 'scale', 'var'])
    """

    def __init__(self, num_features: int, act: str | None = "relu", **kwargs: Any) -> None:
        if act is not None and act not in ACTIVATIONS:
            raise ValueError(f"BatchNormAct: act must be None or one of {', '.join(ACTIVATIONS)}, got {act!r}")
        super().__init__(num_features, **kwargs)
        self.act = act

    def __call__(self, x: jax.Array, use_running_average: bool | None = None, *, mask: None = None) -> jax.Array:
        """Normalise ``x`` ``(..., C)`` (arguments as :meth:`BatchNorm.__call__`), then the activation."""
        x = super().__call__(x, use_running_average, mask=mask)
        return x if self.act is None else ACTIVATIONS[self.act](x)
