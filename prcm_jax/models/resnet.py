"""Flax NNX twins of timm's ResNet (resnet18/34/50/101/152) with a pluggable attention block.

Channels-last input ``(B, H, W, C)``. Submodules carry the names of timm's state_dict
(``conv1``, ``bn1``, ``layer1[0].conv1``, ``layer1[0].se``, ``layer2[0].downsample.layers[0]``,
``fc``), so :func:`parity.torch_to_nnx` and :func:`parity.nnx_to_torch` pair them with a
timm model by name. Numerics follow PyTorch: explicit paddings (``'SAME'`` pads a stride-2
convolution on the other side), max-pooling padded with ``-inf``, BatchNorm with ``eps=1e-5``,
momentum 0.1 (Flax's 0.9), two-pass variance, and the unbiased batch variance in the running
average (:class:`BatchNorm`). Initialisation follows timm: kaiming-normal (fan-out)
convolutions, the last BatchNorm of each block zero-initialised, torch's ``nn.Linear`` head.

Modes follow Flax: ``model.train()`` / ``model.eval()`` and
``nnx.view(model, deterministic=..., use_running_average=...)`` switch the BatchNorm layers
(``use_running_average``) and the attention blocks' dropout (``deterministic``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from flax.typing import Dtype, Initializer

from prcm_jax.initializers import torch_linear_bias_init, torch_linear_kernel_init
from prcm_jax.models.layers import BatchNorm, Modes, conv_kernel_init, make_divisible

__all__ = [
    "ResNet",
    "BasicBlock",
    "Bottleneck",
    "SqueezeExcite",
    "AttnLayer",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
]

#: ``None``, ``"se"`` (:class:`SqueezeExcite`, timm's ``SEModule``), or a class / callable
#: built as ``attn_layer(channels, dtype=..., param_dtype=..., rngs=...)`` and called as
#: ``block(x, deterministic=..., rngs=...)``, such as any :mod:`prcm_jax` module.
AttnLayer = None | str | Callable[..., nnx.Module]


def _conv(cin: int, cout: int, kernel: int, stride: int = 1, **kwargs: Any) -> nnx.Conv:
    """A bias-free convolution padded as torch's ``padding=kernel // 2`` (never ``'SAME'``)."""
    pad = kernel // 2
    return nnx.Conv(cin, cout, (kernel, kernel), strides=stride, padding=((pad, pad), (pad, pad)), use_bias=False,
                    kernel_init=conv_kernel_init, **kwargs)  # fmt: skip


class SqueezeExcite(Modes):
    """timm's ``SEModule`` (``attn_layer="se"``): ``x * sigmoid(fc2(relu(fc1(mean(x)))))``.

    ``fc1``/``fc2`` are 1x1 convolutions with bias, as timm's; the hidden width is
    ``make_divisible(channels * rd_ratio, rd_divisor, round_limit=0)``.

    Args:
      channels: channels ``C`` (the last axis).
      rd_ratio: reduction ratio.
      rd_divisor: the hidden width is a multiple of this.
      dtype: computation dtype.
      param_dtype: parameter dtype.
      rngs: the ``params`` stream.

    >>> se = SqueezeExcite(256, rngs=nnx.Rngs(0))
    >>> se.fc1.kernel.shape, se(jnp.ones((2, 4, 4, 256))).shape
    ((1, 1, 256, 16), (2, 4, 4, 256))
    """

    def __init__(self, channels: int, rd_ratio: float = 1 / 16, rd_divisor: int = 8, *, dtype: Dtype | None = None,
                 param_dtype: Dtype = jnp.float32, rngs: nnx.Rngs) -> None:  # fmt: skip
        hidden = make_divisible(channels * rd_ratio, rd_divisor, round_limit=0.0)
        common = dict(use_bias=True, dtype=dtype, param_dtype=param_dtype, kernel_init=conv_kernel_init, rngs=rngs)
        self.fc1 = nnx.Conv(channels, hidden, (1, 1), bias_init=torch_linear_bias_init(channels), **common)
        self.fc2 = nnx.Conv(hidden, channels, (1, 1), bias_init=torch_linear_bias_init(hidden), **common)

    def __call__(self, x: jax.Array, *, deterministic: bool | None = None, rngs: Any = None) -> jax.Array:
        """Recalibrate ``x`` ``(B, H, W, C)``; ``deterministic`` and ``rngs`` are accepted and ignored."""
        s = self.fc2(nnx.relu(self.fc1(x.mean(axis=(1, 2), keepdims=True))))
        return x * nnx.sigmoid(s)


def _attention(attn_layer: AttnLayer, channels: int, **kwargs: Any) -> nnx.Module | None:
    if attn_layer is None:
        return None
    if attn_layer == "se":
        return SqueezeExcite(channels, **kwargs)
    return attn_layer(channels, **kwargs)


def _downsample(cin: int, cout: int, stride: int, **kwargs: Any) -> nnx.Sequential | None:
    """timm's ``downsample_conv``: 1x1 conv (stride) + BatchNorm, where the shape changes."""
    if stride == 1 and cin == cout:
        return None
    return nnx.Sequential(_conv(cin, cout, 1, stride, **kwargs), BatchNorm(cout, **kwargs))


class BasicBlock(Modes):
    """Two 3x3 convolutions, attention after the last BatchNorm, then the residual add (ResNet-18/34).

    Args:
      cin: input channels.
      planes: output channels.
      stride: stride of the first convolution.
      attn_layer: see :data:`AttnLayer`.
      dtype: computation dtype.
      param_dtype: parameter dtype.
      rngs: parameter and dropout streams.
    """

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, *, attn_layer: AttnLayer = None, dtype: Dtype | None = None,
                 param_dtype: Dtype = jnp.float32, rngs: nnx.Rngs) -> None:  # fmt: skip
        dd = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.conv1 = _conv(cin, planes, 3, stride, **dd)
        self.bn1 = BatchNorm(planes, **dd)
        self.conv2 = _conv(planes, planes, 3, **dd)
        self.bn2 = BatchNorm(planes, scale_init=nnx.initializers.zeros_init(), **dd)
        self.se = _attention(attn_layer, planes, **dd)
        self.downsample = _downsample(cin, planes, stride, **dd)

    def __call__(self, x: jax.Array, *, deterministic: bool | None = None, rngs: Any = None) -> jax.Array:
        shortcut = x if self.downsample is None else self.downsample(x)
        x = nnx.relu(self.bn1(self.conv1(x)))
        x = self.bn2(self.conv2(x))
        if self.se is not None:
            x = self.se(x, deterministic=deterministic, rngs=rngs)
        return nnx.relu(x + shortcut)


class Bottleneck(Modes):
    """1x1, 3x3 (stride), 1x1 x4 convolutions, attention after the last BatchNorm (ResNet-50+).

    Args:
      cin: input channels.
      planes: width of the 3x3 convolution; the output has ``4 * planes`` channels.
      stride: stride of the 3x3 convolution.
      attn_layer: see :data:`AttnLayer`.
      dtype: computation dtype.
      param_dtype: parameter dtype.
      rngs: parameter and dropout streams.
    """

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, *, attn_layer: AttnLayer = None, dtype: Dtype | None = None,
                 param_dtype: Dtype = jnp.float32, rngs: nnx.Rngs) -> None:  # fmt: skip
        dd = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        out = planes * self.expansion
        self.conv1 = _conv(cin, planes, 1, **dd)
        self.bn1 = BatchNorm(planes, **dd)
        self.conv2 = _conv(planes, planes, 3, stride, **dd)
        self.bn2 = BatchNorm(planes, **dd)
        self.conv3 = _conv(planes, out, 1, **dd)
        self.bn3 = BatchNorm(out, scale_init=nnx.initializers.zeros_init(), **dd)
        self.se = _attention(attn_layer, out, **dd)
        self.downsample = _downsample(cin, out, stride, **dd)

    def __call__(self, x: jax.Array, *, deterministic: bool | None = None, rngs: Any = None) -> jax.Array:
        shortcut = x if self.downsample is None else self.downsample(x)
        x = nnx.relu(self.bn1(self.conv1(x)))
        x = nnx.relu(self.bn2(self.conv2(x)))
        x = self.bn3(self.conv3(x))
        if self.se is not None:
            x = self.se(x, deterministic=deterministic, rngs=rngs)
        return nnx.relu(x + shortcut)


BLOCKS: dict[str, type[BasicBlock] | type[Bottleneck]] = {"basic": BasicBlock, "bottleneck": Bottleneck}
STAGE_WIDTHS = (64, 128, 256, 512)


def _check_config(block: str, layers: Sequence[int], num_classes: int, in_chans: int, attn_layer: AttnLayer) -> None:
    if block not in BLOCKS:
        raise ValueError(f"ResNet: block must be one of {sorted(BLOCKS)}, got {block!r}")
    if len(layers) != 4 or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in layers):
        raise ValueError(f"ResNet: layers must be 4 ints >= 1 (blocks per stage), got {tuple(layers)!r}")
    for name, value, minimum in (("num_classes", num_classes, 0), ("in_chans", in_chans, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"ResNet: {name} must be an int >= {minimum}, got {value!r}")
    if not (attn_layer is None or attn_layer == "se" or (callable(attn_layer) and not isinstance(attn_layer, str))):
        raise TypeError(f"ResNet: attn_layer must be None, 'se' or a module class such as prcm_jax.AffinePRCM, "
                        f"got {attn_layer!r}")  # fmt: skip


class ResNet(Modes):
    """timm's ``ResNet`` (the default stem, ``avg`` pool, linear head) as a Flax NNX module.

    Args:
      block: ``"basic"`` (:class:`BasicBlock`) or ``"bottleneck"`` (:class:`Bottleneck`).
      layers: blocks per stage, e.g. ``(3, 4, 6, 3)``.
      num_classes: outputs of ``fc``; ``0`` gives the pooled features (timm's ``num_classes=0``).
      in_chans: input channels.
      attn_layer: attention placed in every block (attribute ``se``), see :data:`AttnLayer`.
      dtype: computation dtype (``None``: promote input and parameters).
      param_dtype: parameter dtype.
      rngs: ``params`` stream, and the ``dropout`` (or ``default``) stream the attention
        blocks fork their own from.

    >>> m = nnx.eval_shape(lambda: ResNet("basic", (1, 1, 1, 1), num_classes=10, attn_layer="se", rngs=nnx.Rngs(0)))
    >>> nnx.eval_shape(lambda m, x: m(x), m, jnp.ones((2, 32, 32, 3))).shape  # abstract: shapes only, no compute
    (2, 10)
    >>> m.layer2[0].downsample.layers[0].kernel.shape, m.layer2[0].se.fc1.kernel.shape
    ((1, 1, 64, 128), (1, 1, 128, 8))
    """

    def __init__(self, block: str, layers: Sequence[int], *, num_classes: int = 1000, in_chans: int = 3,
                 attn_layer: AttnLayer = None, dtype: Dtype | None = None, param_dtype: Dtype = jnp.float32,
                 rngs: nnx.Rngs) -> None:  # fmt: skip
        _check_config(block, layers, num_classes, in_chans, attn_layer)
        dd = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.block, self.depths, self.num_classes, self.in_chans = block, tuple(layers), num_classes, in_chans
        self.conv1 = _conv(in_chans, 64, 7, 2, **dd)
        self.bn1 = BatchNorm(64, **dd)
        cls, cin = BLOCKS[block], 64
        for i, (width, depth) in enumerate(zip(STAGE_WIDTHS, layers)):
            stage = []
            for j in range(depth):
                stage.append(cls(cin, width, 2 if i > 0 and j == 0 else 1, attn_layer=attn_layer, **dd))
                cin = width * cls.expansion
            setattr(self, f"layer{i + 1}", nnx.List(stage))
        self.num_features = cin
        self.fc = (nnx.Linear(cin, num_classes, kernel_init=torch_linear_kernel_init, bias_init=torch_linear_bias_init(cin), **dd)
                   if num_classes else None)  # fmt: skip

    def _check_input(self, x: Any) -> None:
        if not isinstance(x, (jax.Array, jax.ShapeDtypeStruct)) and type(x).__module__.split(".")[0] != "numpy":
            raise TypeError(f"ResNet: expected a JAX or NumPy array, got {type(x).__name__}")
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise TypeError(f"ResNet: expected a floating-point input, got dtype {x.dtype}")
        if x.ndim != 4 or x.shape[-1] != self.in_chans or 0 in x.shape[1:3]:
            raise ValueError(f"ResNet: expected an input (B, H, W, {self.in_chans}) (channels last, H and W >= 1), "
                             f"got shape {tuple(x.shape)}")  # fmt: skip

    def forward_features(self, x: jax.Array, *, deterministic: bool | None = None, rngs: Any = None) -> jax.Array:
        """The feature map before pooling, ``(B, H/32, W/32, num_features)``; arguments as :meth:`__call__`."""
        self._check_input(x)
        x = nnx.relu(self.bn1(self.conv1(x)))
        x = nnx.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))  # pads with -inf, as torch
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            for block in stage:
                x = block(x, deterministic=deterministic, rngs=rngs)
        return x

    def forward_head(self, x: jax.Array, pre_logits: bool = False) -> jax.Array:
        """Global average pool, then ``fc`` (unless ``pre_logits`` or ``num_classes=0``)."""
        x = x.mean(axis=(1, 2))
        return x if pre_logits or self.fc is None else self.fc(x)

    def __call__(self, x: jax.Array, *, deterministic: bool | None = None, rngs: Any = None) -> jax.Array:
        """Logits ``(B, num_classes)`` for images ``(B, H, W, in_chans)``.

        Args:
          x: the images, channels last.
          deterministic: overrides the attention blocks' mode (``True``: no dropout).
          rngs: dropout randomness for the attention blocks: ``nnx.Rngs`` (a fresh key per
            block), or one key array, which gives every block the same mask
            (``keep_mask(key, rate, (B, num_basis))``: what :func:`parity.shared_dropout_mask`
            reproduces in torch; for parity checks, not training). ``None``: each block's
            own stream.
        """
        return self.forward_head(self.forward_features(x, deterministic=deterministic, rngs=rngs))


def resnet18(*, attn_layer: AttnLayer = None, num_classes: int = 1000, rngs: nnx.Rngs, **kwargs: Any) -> ResNet:
    """timm's ``resnet18``: basic blocks ``(2, 2, 2, 2)``.

    Args:
      attn_layer: attention in every block: ``None``, ``"se"`` or a :mod:`prcm_jax` class.
      num_classes: outputs of the head (``0``: pooled features).
      rngs: parameter and dropout streams.
      **kwargs: ``dtype``, ``param_dtype``, ``in_chans``, as :class:`ResNet`.

    >>> import prcm_jax
    >>> m = nnx.eval_shape(lambda: resnet18(attn_layer=prcm_jax.AffinePRCM, num_classes=10, rngs=nnx.Rngs(0)))
    >>> m.layer4[1].se.basis.shape, m.fc.kernel.shape
    ((8, 512), (512, 10))
    """
    return ResNet("basic", (2, 2, 2, 2), attn_layer=attn_layer, num_classes=num_classes, rngs=rngs, **kwargs)


def resnet34(*, attn_layer: AttnLayer = None, num_classes: int = 1000, rngs: nnx.Rngs, **kwargs: Any) -> ResNet:
    """timm's ``resnet34``: basic blocks ``(3, 4, 6, 3)``; arguments as :func:`resnet18`."""
    return ResNet("basic", (3, 4, 6, 3), attn_layer=attn_layer, num_classes=num_classes, rngs=rngs, **kwargs)


def resnet50(*, attn_layer: AttnLayer = None, num_classes: int = 1000, rngs: nnx.Rngs, **kwargs: Any) -> ResNet:
    """timm's ``resnet50``: bottleneck blocks ``(3, 4, 6, 3)``; arguments as :func:`resnet18`.

    >>> m = nnx.eval_shape(lambda: resnet50(attn_layer="se", rngs=nnx.Rngs(0)))  # abstract: no memory, no init
    >>> m.layer1[0].se.fc1.kernel.shape, m.layer4[2].conv3.kernel.shape
    ((1, 1, 256, 16), (1, 1, 512, 2048))
    """
    return ResNet("bottleneck", (3, 4, 6, 3), attn_layer=attn_layer, num_classes=num_classes, rngs=rngs, **kwargs)


def resnet101(*, attn_layer: AttnLayer = None, num_classes: int = 1000, rngs: nnx.Rngs, **kwargs: Any) -> ResNet:
    """timm's ``resnet101``: bottleneck blocks ``(3, 4, 23, 3)``; arguments as :func:`resnet18`."""
    return ResNet("bottleneck", (3, 4, 23, 3), attn_layer=attn_layer, num_classes=num_classes, rngs=rngs, **kwargs)


def resnet152(*, attn_layer: AttnLayer = None, num_classes: int = 1000, rngs: nnx.Rngs, **kwargs: Any) -> ResNet:
    """timm's ``resnet152``: bottleneck blocks ``(3, 8, 36, 3)``; arguments as :func:`resnet18`."""
    return ResNet("bottleneck", (3, 8, 36, 3), attn_layer=attn_layer, num_classes=num_classes, rngs=rngs, **kwargs)
