"""Flax NNX twin of timm's ``EfficientNet`` (efficientnet_b0 .. b3) with a pluggable attention block.

Channels-last input ``(B, H, W, C)``. Submodules carry the names of timm's state_dict
(``conv_stem``, ``bn1``, ``blocks[i][j].conv_dw``, ``blocks[i][j].se.conv_reduce``, ``conv_head``,
``bn2``, ``classifier``), so :func:`parity.torch_to_nnx` and :func:`parity.nnx_to_torch` pair
them with a timm model by name. Numerics follow PyTorch as the ResNet twins do, with timm's
non-``tf_`` paddings (symmetric ``kernel // 2``); initialisation follows timm's
``_init_weight_goog``. Modes follow Flax: ``model.train()`` / ``model.eval()`` and ``nnx.view``
switch the BatchNorm layers, the attention blocks' dropout, drop-path and the classifier's dropout.
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
from prcm_jax.models.efficientnet_blocks import BlockArgs, SeLayer, goog_conv2d
from prcm_jax.models.efficientnet_builder import (build_blocks, check_network, decode_arch_def, forward_blocks,
                                                  resolve_block_args, round_channels)  # fmt: skip
from prcm_jax.models.layers import BatchNormAct, Modes, check_image
from prcm_jax.prcm import dropout_stream

__all__ = ["EfficientNet", "EFFICIENTNET_ARCH", "EFFICIENTNETS", "efficientnet_b0", "efficientnet_b1", "efficientnet_b2",
           "efficientnet_b3", "efficientnet_block_args", "classifier", "head_dropout", "classify"]  # fmt: skip

#: timm's ``_gen_efficientnet`` architecture (the B0 base).
EFFICIENTNET_ARCH: tuple[tuple[str, ...], ...] = (
    ("ds_r1_k3_s1_e1_c16_se0.25",),
    ("ir_r2_k3_s2_e6_c24_se0.25",),
    ("ir_r2_k5_s2_e6_c40_se0.25",),
    ("ir_r3_k3_s2_e6_c80_se0.25",),
    ("ir_r3_k5_s1_e6_c112_se0.25",),
    ("ir_r4_k5_s2_e6_c192_se0.25",),
    ("ir_r1_k3_s1_e6_c320_se0.25",),
)
#: model name -> (channel multiplier, depth multiplier), as timm's entry points.
EFFICIENTNETS: dict[str, tuple[float, float]] = {
    "efficientnet_b0": (1.0, 1.0),
    "efficientnet_b1": (1.0, 1.1),
    "efficientnet_b2": (1.1, 1.2),
    "efficientnet_b3": (1.2, 1.4),
}


def classifier(features: int, num_classes: int, **dd: Any) -> nnx.Linear | None:
    """timm's classifier with ``_init_weight_goog``: uniform in ``+-1/sqrt(num_classes)``, zero bias."""
    if not num_classes:
        return None
    init = nnx.initializers.variance_scaling(1.0 / 3.0, "fan_out", "uniform")
    return nnx.Linear(features, num_classes, kernel_init=init, bias_init=nnx.initializers.zeros_init(), **dd)


def head_dropout(rate: float, rngs: nnx.Rngs) -> nnx.Dropout | None:
    """The dropout before the classifier (timm's ``drop_rate``), with its own stream."""
    return nnx.Dropout(rate, rngs=dropout_stream(rngs, True)) if rate > 0 else None


def classify(model: nnx.Module, x: jax.Array, pre_logits: bool, deterministic: bool | None, rngs: Any) -> jax.Array:
    """The end of a mobile network's head: ``model.head_drop`` (train mode), then ``model.classifier``
    (unless ``pre_logits`` or ``num_classes=0``)."""
    if model.head_drop is not None:
        x = model.head_drop(x, deterministic=deterministic, rngs=rngs)
    return x if pre_logits or model.classifier is None else model.classifier(x)


class EfficientNet(Modes):
    """timm's ``EfficientNet`` (stem, blocks, 1x1 head convolution, ``avg`` pool, linear classifier).

    Args:
      block_args: stages of :class:`~prcm_jax.models.efficientnet_blocks.BlockArgs` (the
        factories resolve timm's architecture strings; :func:`~prcm_jax.models.from_timm` reads
        them off a timm model).
      num_classes: outputs of ``classifier``; ``0``: the pooled features.
      num_features: width of ``conv_head`` (``0``: no head convolution).
      in_chans: input channels.
      stem_size: width of ``conv_stem``.
      act: the network's activation (stem and head; blocks carry their own).
      se_layer: attention in every block with a slot, see :data:`~prcm_jax.models.efficientnet_blocks.SeLayer`.
      se_act: activation inside ``"se"`` (``None``: each block's).
      se_gate: gate of ``"se"``.
      drop_rate: dropout before the classifier in train mode.
      dtype: computation dtype (``None``: promote input and parameters).
      param_dtype: parameter dtype.
      rngs: ``params`` stream, and the ``dropout`` (or ``default``) stream the attention blocks,
        drop-path and the head's dropout fork their own from.

    Examples:
        >>> m = nnx.eval_shape(lambda: efficientnet_b0(num_classes=10, rngs=nnx.Rngs(0)))
        >>> m.blocks[1][0].conv_dw.kernel.shape, m.blocks[1][0].se.conv_reduce.kernel.shape, m.classifier.kernel.shape
        ((3, 3, 1, 96), (1, 1, 96, 4), (1280, 10))
        >>> nnx.eval_shape(lambda m, x: m(x), m, jnp.ones((2, 64, 64, 3))).shape  # abstract: shapes only, no compute
        (2, 10)
    """

    def __init__(self, block_args: Sequence[Sequence[BlockArgs]], *, num_classes: int = 1000, num_features: int = 1280,
                 in_chans: int = 3, stem_size: int = 32, act: str = "silu", se_layer: SeLayer = "se", se_act: str | None = None,
                 se_gate: str = "sigmoid", drop_rate: float = 0.0, dtype: Dtype | None = None, param_dtype: Dtype = jnp.float32,
                 rngs: nnx.Rngs) -> None:  # fmt: skip
        check_network("EfficientNet", block_args, num_classes=num_classes, in_chans=in_chans, act=act, se_layer=se_layer,
                      se_act=se_act, se_gate=se_gate, drop_rate=drop_rate)  # fmt: skip
        dd = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.num_classes, self.in_chans = num_classes, in_chans
        self.conv_stem = goog_conv2d(in_chans, stem_size, 3, 2, **dd)
        self.bn1 = BatchNormAct(stem_size, act, **dd)
        self.blocks = build_blocks(block_args, se_layer=se_layer, se_act=se_act, se_gate=se_gate, **dd)
        head_chs = block_args[-1][-1].out_chs
        self.conv_head = goog_conv2d(head_chs, num_features, 1, **dd) if num_features else None
        self.bn2 = BatchNormAct(num_features, act, **dd) if num_features else None
        self.num_features = num_features or head_chs
        self.head_drop = head_dropout(drop_rate, rngs)
        self.classifier = classifier(self.num_features, num_classes, **dd)

    def forward_features(self, x: jax.Array, *, deterministic: bool | None = None, rngs: Any = None) -> jax.Array:
        """The feature map before pooling, ``(B, H/32, W/32, num_features)``; arguments as :meth:`__call__`."""
        check_image("EfficientNet", x, self.in_chans)
        x = forward_blocks(self.blocks, self.bn1(self.conv_stem(x)), deterministic=deterministic, rngs=rngs)
        return x if self.conv_head is None else self.bn2(self.conv_head(x))

    def forward_head(self, x: jax.Array, pre_logits: bool = False, *, deterministic: bool | None = None,
                     rngs: Any = None) -> jax.Array:  # fmt: skip
        """Global average pool, dropout (train mode), then ``classifier`` (unless ``pre_logits`` or ``num_classes=0``)."""
        return classify(self, spatial_mean(x), pre_logits, deterministic, rngs)

    def __call__(self, x: jax.Array, *, deterministic: bool | None = None, rngs: Any = None) -> jax.Array:
        """Logits ``(B, num_classes)`` for images ``(B, H, W, in_chans)``.

        Args:
          x: the images, channels last.
          deterministic: overrides the mode of every dropout (attention blocks, drop-path, head).
          rngs: dropout randomness: ``nnx.Rngs`` (a fresh key per layer), or one key array
            (every layer draws with it: what parity checks use), or ``None`` (each layer's stream).
        """
        x = self.forward_features(x, deterministic=deterministic, rngs=rngs)
        return self.forward_head(x, deterministic=deterministic, rngs=rngs)


def efficientnet_block_args(channel_multiplier: float = 1.0, depth_multiplier: float = 1.0,
                            drop_path_rate: float = 0.0) -> tuple[tuple[BlockArgs, ...], ...]:  # fmt: skip
    """timm's ``_gen_efficientnet`` blocks for a width and depth multiplier.

    Examples:
        >>> [len(s) for s in efficientnet_block_args(1.2, 1.4)]  # efficientnet_b3
        [2, 3, 3, 5, 5, 6, 2]
    """
    round_chs = functools.partial(round_channels, multiplier=channel_multiplier)
    return resolve_block_args(decode_arch_def(EFFICIENTNET_ARCH, depth_multiplier), stem_size=round_chs(32), act="silu",
                              round_chs_fn=round_chs, drop_path_rate=drop_path_rate)  # fmt: skip


def _factory(name: str) -> Callable[..., EfficientNet]:
    channel_multiplier, depth_multiplier = EFFICIENTNETS[name]

    def build(*, se_layer: SeLayer = "se", num_classes: int = 1000, drop_rate: float = 0.0, drop_path_rate: float = 0.0,
              rngs: nnx.Rngs, **kwargs: Any) -> EfficientNet:  # fmt: skip
        round_chs = functools.partial(round_channels, multiplier=channel_multiplier)
        blocks = efficientnet_block_args(channel_multiplier, depth_multiplier, drop_path_rate)
        return EfficientNet(blocks, num_classes=num_classes, num_features=round_chs(1280), stem_size=round_chs(32),
                            se_layer=se_layer, drop_rate=drop_rate, rngs=rngs, **kwargs)  # fmt: skip

    build.__name__ = build.__qualname__ = name
    build.__doc__ = f"""timm's ``{name}``: width x{channel_multiplier}, depth x{depth_multiplier}, SiLU, SE gated by a sigmoid.

    Args:
      se_layer: attention in every block: ``"se"`` (timm's ``SqueezeExcite``, the default),
        ``None``, or a :mod:`prcm_jax` class.
      num_classes: outputs of the classifier (``0``: pooled features).
      drop_rate: dropout before the classifier (train mode).
      drop_path_rate: drop-path rate of the last block (timm's schedule: block ``i`` of ``n``
        gets ``rate * i / n``).
      rngs: parameter and dropout streams.
      **kwargs: ``dtype``, ``param_dtype``, ``in_chans``, as :class:`EfficientNet`.
    """
    return build


efficientnet_b0 = _factory("efficientnet_b0")
efficientnet_b1 = _factory("efficientnet_b1")
efficientnet_b2 = _factory("efficientnet_b2")
efficientnet_b3 = _factory("efficientnet_b3")
