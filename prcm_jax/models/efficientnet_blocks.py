"""timm's EfficientNet / MobileNetV3 blocks (``timm.models._efficientnet_blocks``) in Flax NNX.

Each block is built from one :class:`BlockArgs` (timm's block arguments once its builder has
resolved them: channels rounded, stride, activation, the reduced width of the SE) and carries
the names of timm's state_dict (``conv_dw``, ``bn1``, ``se.conv_reduce``, ``conv_pwl``, ...).
Convolutions are padded as timm's non-``tf_`` models (symmetric ``kernel // 2``) and initialised
as timm's ``_init_weight_goog``; the BatchNorm layers are timm's ``BatchNormAct2d``
(:class:`~prcm_jax.models.BatchNormAct`, the activation inside); ``drop_path`` is an
``nnx.Dropout`` of whole samples, so it follows the modes as the attention blocks do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from flax.typing import Dtype

from prcm_jax.functional import spatial_mean
from prcm_jax.models.layers import ACTIVATIONS, BatchNormAct, Modes, create_conv2d, grouped_conv_kernel_init
from prcm_jax.prcm import dropout_stream

__all__ = [
    "BlockArgs",
    "SeLayer",
    "SqueezeExcite",
    "DepthwiseSeparableConv",
    "InvertedResidual",
    "ConvBnAct",
    "BLOCK_TYPES",
    "goog_conv2d",
]

#: ``None`` (no attention), ``"se"`` (:class:`SqueezeExcite`, with the network's SE activation and
#: gate), or a class / callable built as ``se_layer(channels, dtype=..., param_dtype=..., rngs=...)``
#: and called as ``block(x, deterministic=..., rngs=...)``, such as any :mod:`prcm_jax` module.
SeLayer = None | str | Callable[..., nnx.Module]


@dataclass(frozen=True)
class BlockArgs:
    """One block, as timm's ``EfficientNetBuilder`` resolves it.

    Attributes:
      block_type: ``"ds"`` (:class:`DepthwiseSeparableConv`), ``"ir"`` (:class:`InvertedResidual`)
        or ``"cn"`` (:class:`ConvBnAct`).
      in_chs: input channels.
      out_chs: output channels.
      kernel_size: the depthwise kernel (``ds``, ``ir``) or the convolution's (``cn``).
      stride: stride of that convolution.
      mid_chs: the expanded width of an ``ir`` block (ignored by the others).
      act: the block's activation, a name of :data:`~prcm_jax.models.ACTIVATIONS`.
      skip: whether the block adds its input (timm's ``has_skip``).
      pw_act: activation after the pointwise convolution of a ``ds`` block (timm's ``dsa``).
      attn: whether the block has an attention slot (``se``; timm's ``se_ratio > 0``).
      rd_chs: the reduced width of timm's ``SqueezeExcite`` in that slot.
      drop_path: the block's drop-path rate (stochastic depth).
    """

    block_type: str
    in_chs: int
    out_chs: int
    kernel_size: int = 3
    stride: int = 1
    mid_chs: int = 0
    act: str = "relu"
    skip: bool = False
    pw_act: bool = False
    attn: bool = False
    rd_chs: int = 0
    drop_path: float = 0.0

    @property
    def width(self) -> int:
        """The channels the attention sees: the expanded width of ``ir``, the input of ``ds``."""
        return self.mid_chs if self.block_type == "ir" else self.in_chs


def goog_conv2d(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, **dd: Any) -> nnx.Conv:
    """A convolution as timm's mobile networks make one: padded ``kernel // 2``, no bias,
    initialised as ``_init_weight_goog`` (``dd``: ``use_bias``, ``dtype``, ``param_dtype``, ``rngs``)."""
    return create_conv2d(cin, cout, kernel, stride, groups=groups, kernel_init=grouped_conv_kernel_init(groups), **dd)


class SqueezeExcite(Modes):
    """timm's EfficientNet / MobileNet ``SqueezeExcite``:
    ``x * gate(conv_expand(act(conv_reduce(mean(x)))))``.

    Args:
      in_chs: channels ``C`` (the last axis).
      rd_ratio: reduction ratio, used when ``rd_channels`` is not given (``round(C * rd_ratio)``).
      rd_channels: the hidden width.
      act: hidden activation (EfficientNet: the block's, SiLU; MobileNetV3: ReLU).
      gate: ``"sigmoid"`` (EfficientNet) or ``"hard_sigmoid"`` (MobileNetV3).
      dtype: computation dtype.
      param_dtype: parameter dtype.
      rngs: the ``params`` stream.

    Examples:
        >>> se = SqueezeExcite(96, rd_channels=4, act="silu", rngs=nnx.Rngs(0))
        >>> se.conv_reduce.kernel.shape, se(jnp.ones((2, 4, 4, 96))).shape
        ((1, 1, 96, 4), (2, 4, 4, 96))
    """

    def __init__(self, in_chs: int, rd_ratio: float = 0.25, rd_channels: int | None = None, *, act: str = "relu",
                 gate: str = "sigmoid", dtype: Dtype | None = None, param_dtype: Dtype = jnp.float32,
                 rngs: nnx.Rngs) -> None:  # fmt: skip
        for name, value in (("act", act), ("gate", gate)):
            if value not in ACTIVATIONS:
                raise ValueError(f"SqueezeExcite: {name} must be one of {', '.join(ACTIVATIONS)}, got {value!r}")
        rd = round(in_chs * rd_ratio) if rd_channels is None else rd_channels
        dd = dict(use_bias=True, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.conv_reduce = goog_conv2d(in_chs, rd, 1, **dd)
        self.conv_expand = goog_conv2d(rd, in_chs, 1, **dd)
        self.act, self.gate = act, gate

    def __call__(self, x: jax.Array, *, deterministic: bool | None = None, rngs: Any = None) -> jax.Array:
        """Recalibrate ``x`` ``(B, H, W, C)``; ``deterministic`` and ``rngs`` are accepted and ignored."""
        s = spatial_mean(x)[:, None, None, :]
        s = self.conv_expand(ACTIVATIONS[self.act](self.conv_reduce(s)))
        return x * ACTIVATIONS[self.gate](s)


def _attention(args: BlockArgs, se_layer: SeLayer, se_act: str | None, se_gate: str, **dd: Any) -> nnx.Module | None:
    if not args.attn or se_layer is None:
        return None
    if se_layer == "se":
        return SqueezeExcite(args.width, rd_channels=args.rd_chs, act=se_act or args.act, gate=se_gate, **dd)
    return se_layer(args.width, **dd)


def _drop_path(rate: float, rngs: nnx.Rngs) -> nnx.Dropout | None:
    """timm's ``DropPath``: whole samples dropped, the others scaled by ``1 / (1 - rate)``."""
    return nnx.Dropout(rate, broadcast_dims=(1, 2, 3), rngs=dropout_stream(rngs, True)) if rate > 0 else None


class _Block(Modes):
    """The residual add the three blocks share (with drop-path on the branch)."""

    def _residual(self, x: jax.Array, shortcut: jax.Array, deterministic: bool | None, rngs: Any) -> jax.Array:
        if not self.has_skip:
            return x
        if self.drop_path is not None:
            x = self.drop_path(x, deterministic=deterministic, rngs=rngs)
        return x + shortcut

    def _se(self, x: jax.Array, deterministic: bool | None, rngs: Any) -> jax.Array:
        return x if self.se is None else self.se(x, deterministic=deterministic, rngs=rngs)


class DepthwiseSeparableConv(_Block):
    """timm's ``DepthwiseSeparableConv``: depthwise conv, BN+act, attention, pointwise conv, BN
    (+act for ``pw_act``), residual add.

    Args:
      args: the block (``block_type="ds"``).
      se_layer: attention in the ``se`` slot, see :data:`SeLayer`.
      se_act: activation of :class:`SqueezeExcite` (``None``: the block's).
      se_gate: gate of :class:`SqueezeExcite`.
      dtype: computation dtype.
      param_dtype: parameter dtype.
      rngs: parameter and dropout streams.

    Examples:
        >>> b = DepthwiseSeparableConv(BlockArgs("ds", 32, 16, attn=True, rd_chs=8), se_layer="se", rngs=nnx.Rngs(0))
        >>> b.conv_dw.kernel.shape, b.se.conv_reduce.kernel.shape, b(jnp.ones((2, 8, 8, 32))).shape
        ((3, 3, 1, 32), (1, 1, 32, 8), (2, 8, 8, 16))
    """

    def __init__(self, args: BlockArgs, *, se_layer: SeLayer = None, se_act: str | None = None, se_gate: str = "sigmoid",
                 dtype: Dtype | None = None, param_dtype: Dtype = jnp.float32, rngs: nnx.Rngs) -> None:  # fmt: skip
        dd = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        c = args.in_chs
        self.conv_dw = goog_conv2d(c, c, args.kernel_size, args.stride, groups=c, **dd)
        self.bn1 = BatchNormAct(c, args.act, **dd)
        self.se = _attention(args, se_layer, se_act, se_gate, **dd)
        self.conv_pw = goog_conv2d(c, args.out_chs, 1, **dd)
        self.bn2 = BatchNormAct(args.out_chs, args.act if args.pw_act else None, **dd)
        self.drop_path = _drop_path(args.drop_path, rngs) if args.skip else None
        self.has_skip = args.skip

    def __call__(self, x: jax.Array, *, deterministic: bool | None = None, rngs: Any = None) -> jax.Array:
        shortcut = x
        x = self._se(self.bn1(self.conv_dw(x)), deterministic, rngs)
        return self._residual(self.bn2(self.conv_pw(x)), shortcut, deterministic, rngs)


class InvertedResidual(_Block):
    """timm's ``InvertedResidual`` (MBConv): pointwise expansion, BN+act, depthwise conv, BN+act,
    attention, pointwise projection, BN, residual add.

    Args:
      args: the block (``block_type="ir"``).
      se_layer: as :class:`DepthwiseSeparableConv`, and ``se_act``, ``se_gate``, ``dtype``,
        ``param_dtype``, ``rngs``.

    Examples:
        >>> args = BlockArgs("ir", 24, 24, kernel_size=5, mid_chs=144, act="silu", skip=True, attn=True, rd_chs=6)
        >>> b = InvertedResidual(args, se_layer="se", rngs=nnx.Rngs(0))
        >>> b.conv_dw.kernel.shape, b.se.conv_expand.kernel.shape, b(jnp.ones((2, 8, 8, 24))).shape
        ((5, 5, 1, 144), (1, 1, 6, 144), (2, 8, 8, 24))
    """

    def __init__(self, args: BlockArgs, *, se_layer: SeLayer = None, se_act: str | None = None, se_gate: str = "sigmoid",
                 dtype: Dtype | None = None, param_dtype: Dtype = jnp.float32, rngs: nnx.Rngs) -> None:  # fmt: skip
        dd = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        mid = args.mid_chs
        self.conv_pw = goog_conv2d(args.in_chs, mid, 1, **dd)
        self.bn1 = BatchNormAct(mid, args.act, **dd)
        self.conv_dw = goog_conv2d(mid, mid, args.kernel_size, args.stride, groups=mid, **dd)
        self.bn2 = BatchNormAct(mid, args.act, **dd)
        self.se = _attention(args, se_layer, se_act, se_gate, **dd)
        self.conv_pwl = goog_conv2d(mid, args.out_chs, 1, **dd)
        self.bn3 = BatchNormAct(args.out_chs, None, **dd)
        self.drop_path = _drop_path(args.drop_path, rngs) if args.skip else None
        self.has_skip = args.skip

    def __call__(self, x: jax.Array, *, deterministic: bool | None = None, rngs: Any = None) -> jax.Array:
        shortcut = x
        x = self.bn2(self.conv_dw(self.bn1(self.conv_pw(x))))
        x = self._se(x, deterministic, rngs)
        return self._residual(self.bn3(self.conv_pwl(x)), shortcut, deterministic, rngs)


class ConvBnAct(_Block):
    """timm's ``ConvBnAct``: convolution, BN+act (MobileNetV3's last stage, a 1x1 widening).

    Args:
      args: the block (``block_type="cn"``).
      se_layer: unused (the block has no attention slot; ``se_act``, ``se_gate`` neither),
        accepted as the other blocks take it; ``dtype``, ``param_dtype``, ``rngs`` as
        :class:`DepthwiseSeparableConv`.
    """

    def __init__(self, args: BlockArgs, *, se_layer: SeLayer = None, se_act: str | None = None, se_gate: str = "sigmoid",
                 dtype: Dtype | None = None, param_dtype: Dtype = jnp.float32, rngs: nnx.Rngs) -> None:  # fmt: skip
        dd = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.conv = goog_conv2d(args.in_chs, args.out_chs, args.kernel_size, args.stride, **dd)
        self.bn1 = BatchNormAct(args.out_chs, args.act, **dd)
        self.se = None
        self.drop_path = _drop_path(args.drop_path, rngs) if args.skip else None
        self.has_skip = args.skip

    def __call__(self, x: jax.Array, *, deterministic: bool | None = None, rngs: Any = None) -> jax.Array:
        return self._residual(self.bn1(self.conv(x)), x, deterministic, rngs)


#: ``BlockArgs.block_type`` -> the block class.
BLOCK_TYPES: dict[str, type[_Block]] = {"ds": DepthwiseSeparableConv, "ir": InvertedResidual, "cn": ConvBnAct}
