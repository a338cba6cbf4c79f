"""Flax NNX twins of timm's ResNet (resnet18..152) and ResNet-D (resnet18d..152d) with a
pluggable attention block.

Channels-last input ``(B, H, W, C)``. Submodules carry the names of timm's state_dict
(``conv1``, ``bn1``, ``layer1[0].conv1``, ``layer1[0].se``, ``layer2[0].downsample.layers[0]``,
``fc``; ResNet-D: ``conv1.layers[0..6]`` for the deep stem, ``downsample.layers[1..2]`` after the
average pool), so :func:`parity.torch_to_nnx` and :func:`parity.nnx_to_torch` pair them with a
timm model by name (and with a torchvision ResNet, whose names are timm's; see ``attn_slot``).
Numerics follow PyTorch: explicit paddings (``'SAME'`` pads a stride-2 convolution on the other
side), max-pooling padded with ``-inf``, average pooling as ``AvgPool2d(2, ceil_mode=True,
count_include_pad=False)``, BatchNorm with ``eps=1e-5``, momentum 0.1 (Flax's 0.9), two-pass
variance, and the unbiased batch variance in the running average (:class:`BatchNorm`).
Initialisation follows timm: kaiming-normal (fan-out) convolutions, the last BatchNorm of each
block zero-initialised, torch's ``nn.Linear`` head.

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
from prcm_jax.models.layers import BatchNorm, Modes, check_image, conv_kernel_init, create_conv2d, make_divisible

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
    "resnet18d",
    "resnet34d",
    "resnet50d",
    "resnet101d",
    "resnet152d",
    "avg_pool_ceil",
]

#: ``None``, ``"se"`` (:class:`SqueezeExcite`, timm's ``SEModule``), or a class / callable
#: built as ``attn_layer(channels, dtype=..., param_dtype=..., rngs=...)`` and called as
#: ``block(x, deterministic=..., rngs=...)``, such as any :mod:`prcm_jax` module.
AttnLayer = None | str | Callable[..., nnx.Module]


def _conv(cin: int, cout: int, kernel: int, stride: int = 1, **kwargs: Any) -> nnx.Conv:
    """A bias-free convolution padded as torch's ``padding=kernel // 2`` (never ``'SAME'``)."""
    return create_conv2d(cin, cout, kernel, stride, kernel_init=conv_kernel_init, **kwargs)


def avg_pool_ceil(x: jax.Array) -> jax.Array:
    """torch's ``AvgPool2d(2, stride=2, ceil_mode=True, count_include_pad=False)`` (ResNet-D's
    shortcut): an odd edge gets a last window of the values it has.

    Examples:
        >>> avg_pool_ceil(jnp.arange(9.0).reshape(1, 3, 3, 1))[0, :, :, 0].tolist()
        [[2.0, 3.5], [6.5, 8.0]]
    """
    pad = ((0, x.shape[1] % 2), (0, x.shape[2] % 2))
    return nnx.avg_pool(x, (2, 2), strides=(2, 2), padding=pad, count_include_pad=False)


def _identity(x: jax.Array) -> jax.Array:
    """timm's ``nn.Identity`` in place of the pool of a stride-1 ``avg_down`` shortcut."""
    return x


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

    Examples:
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


def _downsample(cin: int, cout: int, stride: int, avg_down: bool = False, **kwargs: Any) -> nnx.Sequential | None:
    """timm's ``downsample_conv`` (1x1 conv with the stride, BatchNorm) or, with ``avg_down``,
    ``downsample_avg`` (2x2 average pool with the stride, 1x1 conv, BatchNorm), where the shape changes."""
    if stride == 1 and cin == cout:
        return None
    if avg_down:
        pool = avg_pool_ceil if stride != 1 else _identity
        return nnx.Sequential(pool, _conv(cin, cout, 1, **kwargs), BatchNorm(cout, **kwargs))
    return nnx.Sequential(_conv(cin, cout, 1, stride, **kwargs), BatchNorm(cout, **kwargs))


#: Where a block's attention lives: ``"se"``, timm's attribute after the last BatchNorm; ``"norm"``,
#: inside the last norm, ``bn2``/``bn3`` = ``[BatchNorm, attention]`` (keys ``bn2.0.*``, ``bn2.1.*``):
#: how a torchvision ResNet takes one, ``block.bn2 = nn.Sequential(block.bn2, attention)``.
ATTN_SLOTS = ("se", "norm")


def _last_norm(norm: BatchNorm, attention: nnx.Module | None, slot: str) -> tuple[Any, nnx.Module | None]:
    """``(bn_last, se)`` of a block for an attention slot of :data:`ATTN_SLOTS`."""
    if slot == "norm" and attention is not None:
        return nnx.List([norm, attention]), None
    return norm, attention


def _apply_last_norm(norm: Any, x: jax.Array, **kwargs: Any) -> jax.Array:
    if isinstance(norm, nnx.List):  # [BatchNorm, attention]
        return norm[1](norm[0](x), **kwargs)
    return norm(x)


class BasicBlock(Modes):
    """Two 3x3 convolutions, attention after the last BatchNorm, then the residual add (ResNet-18/34).

    Args:
      cin: input channels.
      planes: output channels.
      stride: stride of the first convolution.
      attn_layer: see :data:`AttnLayer`.
      avg_down: ResNet-D's average-pool shortcut (timm's ``avg_down``).
      attn_slot: where the attention lives, see :data:`ATTN_SLOTS`.
      dtype: computation dtype.
      param_dtype: parameter dtype.
      rngs: parameter and dropout streams.
    """

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, *, attn_layer: AttnLayer = None, avg_down: bool = False,
                 attn_slot: str = "se", dtype: Dtype | None = None, param_dtype: Dtype = jnp.float32,
                 rngs: nnx.Rngs) -> None:  # fmt: skip
        dd = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.conv1 = _conv(cin, planes, 3, stride, **dd)
        self.bn1 = BatchNorm(planes, **dd)
        self.conv2 = _conv(planes, planes, 3, **dd)
        norm = BatchNorm(planes, scale_init=nnx.initializers.zeros_init(), **dd)
        self.bn2, self.se = _last_norm(norm, _attention(attn_layer, planes, **dd), attn_slot)
        self.downsample = _downsample(cin, planes, stride, avg_down, **dd)

    def __call__(self, x: jax.Array, *, deterministic: bool | None = None, rngs: Any = None) -> jax.Array:
        shortcut = x if self.downsample is None else self.downsample(x)
        x = nnx.relu(self.bn1(self.conv1(x)))
        x = _apply_last_norm(self.bn2, self.conv2(x), deterministic=deterministic, rngs=rngs)
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
      avg_down: ResNet-D's average-pool shortcut (timm's ``avg_down``).
      attn_slot: where the attention lives, see :data:`ATTN_SLOTS`.
      dtype: computation dtype.
      param_dtype: parameter dtype.
      rngs: parameter and dropout streams.
    """

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, *, attn_layer: AttnLayer = None, avg_down: bool = False,
                 attn_slot: str = "se", dtype: Dtype | None = None, param_dtype: Dtype = jnp.float32,
                 rngs: nnx.Rngs) -> None:  # fmt: skip
        dd = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        out = planes * self.expansion
        self.conv1 = _conv(cin, planes, 1, **dd)
        self.bn1 = BatchNorm(planes, **dd)
        self.conv2 = _conv(planes, planes, 3, stride, **dd)
        self.bn2 = BatchNorm(planes, **dd)
        self.conv3 = _conv(planes, out, 1, **dd)
        norm = BatchNorm(out, scale_init=nnx.initializers.zeros_init(), **dd)
        self.bn3, self.se = _last_norm(norm, _attention(attn_layer, out, **dd), attn_slot)
        self.downsample = _downsample(cin, out, stride, avg_down, **dd)

    def __call__(self, x: jax.Array, *, deterministic: bool | None = None, rngs: Any = None) -> jax.Array:
        shortcut = x if self.downsample is None else self.downsample(x)
        x = nnx.relu(self.bn1(self.conv1(x)))
        x = nnx.relu(self.bn2(self.conv2(x)))
        x = _apply_last_norm(self.bn3, self.conv3(x), deterministic=deterministic, rngs=rngs)
        if self.se is not None:
            x = self.se(x, deterministic=deterministic, rngs=rngs)
        return nnx.relu(x + shortcut)


BLOCKS: dict[str, type[BasicBlock] | type[Bottleneck]] = {"basic": BasicBlock, "bottleneck": Bottleneck}
STAGE_WIDTHS = (64, 128, 256, 512)
#: timm's ``stem_type`` -> the widths of the deep stem's first two convolutions for a ``stem_width``
#: (``""``: one 7x7 convolution).
STEM_TYPES: dict[str, Callable[[int], tuple[int, int]] | None] = {
    "": None,
    "deep": lambda w: (w, w),
    "deep_tiered": lambda w: (3 * (w // 4), w),
}


def _check_config(block: str, layers: Sequence[int], num_classes: int, in_chans: int, attn_layer: AttnLayer,
                  stem_type: str = "", stem_width: int = 64, attn_slot: str = "se") -> None:  # fmt: skip
    if block not in BLOCKS:
        raise ValueError(f"ResNet: block must be one of {sorted(BLOCKS)}, got {block!r}")
    if len(layers) != 4 or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in layers):
        raise ValueError(f"ResNet: layers must be 4 ints >= 1 (blocks per stage), got {tuple(layers)!r}")
    for name, value, minimum in (("num_classes", num_classes, 0), ("in_chans", in_chans, 1), ("stem_width", stem_width, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"ResNet: {name} must be an int >= {minimum}, got {value!r}")
    for name, value, choices in (("stem_type", stem_type, tuple(STEM_TYPES)), ("attn_slot", attn_slot, ATTN_SLOTS)):
        if value not in choices:
            raise ValueError(f"ResNet: {name} must be one of {choices}, got {value!r}")
    if not (attn_layer is None or attn_layer == "se" or (callable(attn_layer) and not isinstance(attn_layer, str))):
        raise TypeError(f"ResNet: attn_layer must be None, 'se' or a module class such as prcm_jax.AffinePRCM, "
                        f"got {attn_layer!r}")  # fmt: skip


def _stem(in_chans: int, stem_type: str, stem_width: int, **dd: Any) -> tuple[nnx.Module, int]:
    """``(conv1, its width)``: one 7x7 convolution, or the deep stem (three 3x3 convolutions with
    BatchNorm and ReLU between them, ``conv1.0`` .. ``conv1.6`` as in timm)."""
    widths = STEM_TYPES[stem_type]
    if widths is None:
        return _conv(in_chans, 64, 7, 2, **dd), 64
    (a, b), out = widths(stem_width), 2 * stem_width
    layers = (_conv(in_chans, a, 3, 2, **dd), BatchNorm(a, **dd), nnx.relu, _conv(a, b, 3, **dd), BatchNorm(b, **dd), nnx.relu,
              _conv(b, out, 3, **dd))  # fmt: skip
    return nnx.Sequential(*layers), out


class ResNet(Modes):
    """timm's ``ResNet`` (the default or deep stem, ``avg`` pool, linear head) as a Flax NNX module.

    Args:
      block: ``"basic"`` (:class:`BasicBlock`) or ``"bottleneck"`` (:class:`Bottleneck`).
      layers: blocks per stage, e.g. ``(3, 4, 6, 3)``.
      num_classes: outputs of ``fc``; ``0`` gives the pooled features (timm's ``num_classes=0``).
      in_chans: input channels.
      attn_layer: attention placed in every block (attribute ``se``), see :data:`AttnLayer`.
      stem_type: ``""`` (7x7 convolution), ``"deep"`` or ``"deep_tiered"`` (ResNet-C/D: three 3x3
        convolutions), as timm's.
      stem_width: width of the deep stem (timm's ``stem_width``; the stem outputs twice that).
      avg_down: ResNet-D's shortcut: 2x2 average pool with the stride, then a 1x1 convolution.
      attn_slot: where each block holds its attention, see :data:`ATTN_SLOTS` (``"norm"`` for a
        torchvision ResNet).
      dtype: computation dtype (``None``: promote input and parameters).
      param_dtype: parameter dtype.
      rngs: ``params`` stream, and the ``dropout`` (or ``default``) stream the attention
        blocks fork their own from.

    Examples:
        >>> m = nnx.eval_shape(lambda: ResNet("basic", (1, 1, 1, 1), num_classes=10, attn_layer="se", rngs=nnx.Rngs(0)))
        >>> nnx.eval_shape(lambda m, x: m(x), m, jnp.ones((2, 32, 32, 3))).shape  # abstract: shapes only, no compute
        (2, 10)
        >>> m.layer2[0].downsample.layers[0].kernel.shape, m.layer2[0].se.fc1.kernel.shape
        ((1, 1, 64, 128), (1, 1, 128, 8))

        The factories carry timm's names (``resnet18`` .. ``resnet152``, ``resnet18d`` .. ``resnet152d``):

        >>> import prcm_jax
        >>> m = nnx.eval_shape(lambda: resnet18(attn_layer=prcm_jax.AffinePRCM, num_classes=10, rngs=nnx.Rngs(0)))
        >>> m.layer4[1].se.basis.shape, m.fc.kernel.shape
        ((8, 512), (512, 10))
        >>> m = nnx.eval_shape(lambda: resnet50d(attn_layer="se", rngs=nnx.Rngs(0)))  # abstract: no memory, no init
        >>> m.conv1.layers[6].kernel.shape, m.layer2[0].downsample.layers[1].kernel.shape, m.layer1[0].se.fc1.kernel.shape
        ((3, 3, 32, 64), (1, 1, 256, 512), (1, 1, 256, 16))
    """

    def __init__(self, block: str, layers: Sequence[int], *, num_classes: int = 1000, in_chans: int = 3,
                 attn_layer: AttnLayer = None, stem_type: str = "", stem_width: int = 64, avg_down: bool = False,
                 attn_slot: str = "se", dtype: Dtype | None = None, param_dtype: Dtype = jnp.float32,
                 rngs: nnx.Rngs) -> None:  # fmt: skip
        _check_config(block, layers, num_classes, in_chans, attn_layer, stem_type, stem_width, attn_slot)
        dd = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.block, self.depths, self.num_classes, self.in_chans = block, tuple(layers), num_classes, in_chans
        self.conv1, cin = _stem(in_chans, stem_type, stem_width, **dd)
        self.bn1 = BatchNorm(cin, **dd)
        cls = BLOCKS[block]
        for i, (width, depth) in enumerate(zip(STAGE_WIDTHS, layers)):
            stage = []
            for j in range(depth):
                stride = 2 if i > 0 and j == 0 else 1
                stage.append(cls(cin, width, stride, attn_layer=attn_layer, avg_down=avg_down, attn_slot=attn_slot, **dd))
                cin = width * cls.expansion
            setattr(self, f"layer{i + 1}", nnx.List(stage))
        self.num_features = cin
        self.fc = (nnx.Linear(cin, num_classes, kernel_init=torch_linear_kernel_init, bias_init=torch_linear_bias_init(cin), **dd)
                   if num_classes else None)  # fmt: skip

    def forward_features(self, x: jax.Array, *, deterministic: bool | None = None, rngs: Any = None) -> jax.Array:
        """The feature map before pooling, ``(B, H/32, W/32, num_features)``; arguments as :meth:`__call__`."""
        check_image("ResNet", x, self.in_chans)
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


def _factory(name: str, block: str, depths: tuple[int, int, int, int], **arch: Any) -> Callable[..., ResNet]:
    """A timm-named constructor: ``name(*, attn_layer=None, num_classes=1000, rngs, **kwargs)``."""

    def build(*, attn_layer: AttnLayer = None, num_classes: int = 1000, rngs: nnx.Rngs, **kwargs: Any) -> ResNet:
        return ResNet(block, depths, attn_layer=attn_layer, num_classes=num_classes, rngs=rngs, **arch, **kwargs)

    kind = "basic" if block == "basic" else "bottleneck"
    stem = ", deep stem (stem_width 32) and average-pool shortcuts (avg_down)" if arch else ""
    build.__name__ = build.__qualname__ = name
    build.__doc__ = f"""timm's ``{name}``: {kind} blocks ``{depths}``{stem}.

    Args:
      attn_layer: attention in every block: ``None``, ``"se"`` or a :mod:`prcm_jax` class.
      num_classes: outputs of the head (``0``: pooled features).
      rngs: parameter and dropout streams.
      **kwargs: ``dtype``, ``param_dtype``, ``in_chans``, ``attn_slot``, as :class:`ResNet`.
    """
    return build


_RESNETS = {"resnet18": ("basic", (2, 2, 2, 2)), "resnet34": ("basic", (3, 4, 6, 3)), "resnet50": ("bottleneck", (3, 4, 6, 3)),
            "resnet101": ("bottleneck", (3, 4, 23, 3)), "resnet152": ("bottleneck", (3, 8, 36, 3))}  # fmt: skip
_RESNET_D = dict(stem_type="deep", stem_width=32, avg_down=True)

resnet18 = _factory("resnet18", *_RESNETS["resnet18"])
resnet34 = _factory("resnet34", *_RESNETS["resnet34"])
resnet50 = _factory("resnet50", *_RESNETS["resnet50"])
resnet101 = _factory("resnet101", *_RESNETS["resnet101"])
resnet152 = _factory("resnet152", *_RESNETS["resnet152"])
resnet18d = _factory("resnet18d", *_RESNETS["resnet18"], **_RESNET_D)
resnet34d = _factory("resnet34d", *_RESNETS["resnet34"], **_RESNET_D)
resnet50d = _factory("resnet50d", *_RESNETS["resnet50"], **_RESNET_D)
resnet101d = _factory("resnet101d", *_RESNETS["resnet101"], **_RESNET_D)
resnet152d = _factory("resnet152d", *_RESNETS["resnet152"], **_RESNET_D)
