"""Flax NNX twin of timm's ``MobileNetV3`` (mobilenetv3_small_100, mobilenetv3_large_100) with a
pluggable attention block.

Channels-last input ``(B, H, W, C)``. Submodules carry the names of timm's state_dict
(``conv_stem``, ``bn1``, ``blocks[i][j].conv_dw``, ``blocks[i][j].se.conv_reduce``, ``conv_head``,
``classifier``), so the converters pair them with a timm model by name. The blocks are
:mod:`prcm_jax.models.efficientnet_blocks`; the head is MobileNetV3's "efficient head": pool
first, then a 1x1 convolution with a bias and the activation, then the classifier. The SE is
timm's MobileNetV3 one: ReLU inside, gated by a hard sigmoid, its width rounded to a multiple of 8.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from flax.typing import Dtype

from prcm_jax.functional import spatial_mean
from prcm_jax.models.efficientnet import classifier, classify, head_dropout
from prcm_jax.models.efficientnet_blocks import BlockArgs, SeLayer, goog_conv2d
from prcm_jax.models.efficientnet_builder import (build_blocks, check_network, decode_arch_def, forward_blocks,
                                                  resolve_block_args, round_channels)  # fmt: skip
from prcm_jax.models.layers import ACTIVATIONS, BatchNormAct, Modes, check_image

__all__ = ["MobileNetV3", "MOBILENETV3_ARCH", "mobilenetv3_block_args", "mobilenetv3_small_100", "mobilenetv3_large_100"]

#: timm's ``_gen_mobilenet_v3`` architectures -> (stages, ``num_features``); the network's act is hard-swish.
MOBILENETV3_ARCH: dict[str, tuple[tuple[tuple[str, ...], ...], int]] = {
    "small": ((("ds_r1_k3_s2_e1_c16_se0.25_nre",), ("ir_r1_k3_s2_e4.5_c24_nre", "ir_r1_k3_s1_e3.67_c24_nre"),
               ("ir_r1_k5_s2_e4_c40_se0.25", "ir_r2_k5_s1_e6_c40_se0.25"), ("ir_r2_k5_s1_e3_c48_se0.25",),
               ("ir_r3_k5_s2_e6_c96_se0.25",), ("cn_r1_k1_s1_c576",)), 1024),
    "large": ((("ds_r1_k3_s1_e1_c16_nre",), ("ir_r1_k3_s2_e4_c24_nre", "ir_r1_k3_s1_e3_c24_nre"),
               ("ir_r3_k5_s2_e3_c40_se0.25_nre",), ("ir_r1_k3_s2_e6_c80", "ir_r1_k3_s1_e2.5_c80", "ir_r2_k3_s1_e2.3_c80"),
               ("ir_r2_k3_s1_e6_c112_se0.25",), ("ir_r3_k5_s2_e6_c160_se0.25",), ("cn_r1_k1_s1_c960",)), 1280),
}  # fmt: skip


class MobileNetV3(Modes):
    """timm's ``MobileNetV3`` (stem, blocks, ``avg`` pool, 1x1 head convolution with bias and act,
    linear classifier).

    Args:
      block_args: stages of :class:`~prcm_jax.models.efficientnet_blocks.BlockArgs`.
      num_classes: outputs of ``classifier``; ``0``: the head's features.
      num_features: width of ``conv_head`` (timm's ``head_hidden_size``).
      in_chans: input channels.
      stem_size: width of ``conv_stem``.
      act: the network's activation (stem and head; blocks carry their own).
      se_layer: attention in every block with a slot, see :data:`~prcm_jax.models.efficientnet_blocks.SeLayer`.
      se_act: activation inside ``"se"`` (``None``: each block's).
      se_gate: gate of ``"se"``.
      head_bias: ``conv_head`` has a bias.
      drop_rate: dropout before the classifier in train mode.
      dtype: computation dtype (``None``: promote input and parameters).
      param_dtype: parameter dtype.
      rngs: ``params`` stream, and the ``dropout`` (or ``default``) stream the attention blocks,
        drop-path and the head's dropout fork their own from.

    Examples:
        >>> import prcm_jax
        >>> m = nnx.eval_shape(lambda: mobilenetv3_small_100(se_layer=prcm_jax.AffinePRCM, num_classes=10, rngs=nnx.Rngs(0)))
        >>> m.blocks[0][0].se.basis.shape, m.blocks[2][0].se.basis.shape, m.conv_head.kernel.shape
        ((8, 16), (8, 96), (1, 1, 576, 1024))
        >>> nnx.eval_shape(lambda m, x: m(x), m, jnp.ones((2, 64, 64, 3))).shape  # abstract: shapes only, no compute
        (2, 10)
    """

    def __init__(self, block_args: Sequence[Sequence[BlockArgs]], *, num_classes: int = 1000, num_features: int = 1280,
                 in_chans: int = 3, stem_size: int = 16, act: str = "hard_swish", se_layer: SeLayer = "se",
                 se_act: str | None = "relu", se_gate: str = "hard_sigmoid", head_bias: bool = True, drop_rate: float = 0.0,
                 dtype: Dtype | None = None, param_dtype: Dtype = jnp.float32, rngs: nnx.Rngs) -> None:  # fmt: skip
        check_network("MobileNetV3", block_args, num_classes=num_classes, in_chans=in_chans, act=act, se_layer=se_layer,
                      se_act=se_act, se_gate=se_gate, drop_rate=drop_rate)  # fmt: skip
        if isinstance(num_features, bool) or not isinstance(num_features, int) or num_features < 1:
            raise ValueError(f"MobileNetV3: num_features must be an int >= 1, got {num_features!r}")
        dd = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.num_classes, self.in_chans, self.act = num_classes, in_chans, act
        self.conv_stem = goog_conv2d(in_chans, stem_size, 3, 2, **dd)
        self.bn1 = BatchNormAct(stem_size, act, **dd)
        self.blocks = build_blocks(block_args, se_layer=se_layer, se_act=se_act, se_gate=se_gate, **dd)
        self.num_features, self.head_hidden_size = block_args[-1][-1].out_chs, num_features
        self.conv_head = goog_conv2d(self.num_features, num_features, 1, use_bias=head_bias, **dd)
        self.head_drop = head_dropout(drop_rate, rngs)
        self.classifier = classifier(num_features, num_classes, **dd)

    def forward_features(self, x: jax.Array, *, deterministic: bool | None = None, rngs: Any = None) -> jax.Array:
        """The last stage's feature map, ``(B, H/32, W/32, num_features)``; arguments as :meth:`__call__`."""
        check_image("MobileNetV3", x, self.in_chans)
        return forward_blocks(self.blocks, self.bn1(self.conv_stem(x)), deterministic=deterministic, rngs=rngs)

    def forward_head(self, x: jax.Array, pre_logits: bool = False, *, deterministic: bool | None = None,
                     rngs: Any = None) -> jax.Array:  # fmt: skip
        """Global average pool, ``conv_head`` and act, dropout (train mode), then ``classifier``
        (unless ``pre_logits`` or ``num_classes=0``)."""
        x = ACTIVATIONS[self.act](self.conv_head(spatial_mean(x)[:, None, None, :]))[:, 0, 0, :]
        return classify(self, x, pre_logits, deterministic, rngs)

    def __call__(self, x: jax.Array, *, deterministic: bool | None = None, rngs: Any = None) -> jax.Array:
        """Logits ``(B, num_classes)`` for images ``(B, H, W, in_chans)``; arguments as
        :meth:`EfficientNet.__call__ <prcm_jax.models.EfficientNet.__call__>`."""
        x = self.forward_features(x, deterministic=deterministic, rngs=rngs)
        return self.forward_head(x, deterministic=deterministic, rngs=rngs)


def mobilenetv3_block_args(variant: str, channel_multiplier: float = 1.0,
                           drop_path_rate: float = 0.0) -> tuple[tuple[BlockArgs, ...], ...]:  # fmt: skip
    """timm's ``_gen_mobilenet_v3`` blocks (``variant``: ``"small"`` or ``"large"``).

    Examples:
        >>> [b.out_chs for s in mobilenetv3_block_args("small") for b in s][-3:]
        [96, 96, 576]
    """
    round_chs = functools.partial(round_channels, multiplier=channel_multiplier)
    return resolve_block_args(decode_arch_def(MOBILENETV3_ARCH[variant][0]), stem_size=16, act="hard_swish",
                              round_chs_fn=round_chs, se_from_exp=True, rd_round_fn=round_channels,
                              drop_path_rate=drop_path_rate)  # fmt: skip


def _factory(name: str, variant: str) -> Callable[..., MobileNetV3]:
    def build(*, se_layer: SeLayer = "se", num_classes: int = 1000, drop_rate: float = 0.0, drop_path_rate: float = 0.0,
              rngs: nnx.Rngs, **kwargs: Any) -> MobileNetV3:  # fmt: skip
        blocks = mobilenetv3_block_args(variant, drop_path_rate=drop_path_rate)
        return MobileNetV3(blocks, num_classes=num_classes, num_features=MOBILENETV3_ARCH[variant][1], se_layer=se_layer,
                           drop_rate=drop_rate, rngs=rngs, **kwargs)  # fmt: skip

    build.__name__ = build.__qualname__ = name
    build.__doc__ = f"""timm's ``{name}``: hard-swish (ReLU in the first stages), SE with ReLU and a hard sigmoid gate.

    Args:
      se_layer: attention in the blocks timm gives one: ``"se"`` (timm's MobileNetV3
        ``SqueezeExcite``, the default), ``None``, or a :mod:`prcm_jax` class.
      num_classes: outputs of the classifier (``0``: the head's features).
      drop_rate: dropout before the classifier (train mode).
      drop_path_rate: drop-path rate of the last block (block ``i`` of ``n``: ``rate * i / n``).
      rngs: parameter and dropout streams.
      **kwargs: ``dtype``, ``param_dtype``, ``in_chans``, as :class:`MobileNetV3`.
    """
    return build


mobilenetv3_small_100 = _factory("mobilenetv3_small_100", "small")
mobilenetv3_large_100 = _factory("mobilenetv3_large_100", "large")
