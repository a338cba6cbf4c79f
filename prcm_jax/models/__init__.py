"""Networks in Flax NNX: twins of timm's ResNets (and ResNet-D), EfficientNets and MobileNetV3s
with a pluggable attention block.

Examples:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> import prcm_jax
    >>> from prcm_jax.models import resnet18
    >>> model = nnx.eval_shape(lambda: resnet18(attn_layer=prcm_jax.AffinePRCM, num_classes=10, rngs=nnx.Rngs(0)))
    >>> nnx.eval_shape(lambda m, x: m(x, deterministic=True), model, jnp.ones((2, 32, 32, 3))).shape
    (2, 10)

    ``from_timm(model)`` builds the twin of a timm ResNet, EfficientNet or MobileNetV3 (or a
    torchvision ResNet) and copies its weights.
"""

from prcm_jax.models.layers import (
    ACTIVATIONS,
    BatchNorm,
    BatchNormAct,
    Modes,
    check_image,
    conv_kernel_init,
    create_conv2d,
    grouped_conv_kernel_init,
    make_divisible,
)
from prcm_jax.models.resnet import (
    AttnLayer,
    BasicBlock,
    Bottleneck,
    ResNet,
    SqueezeExcite,
    avg_pool_ceil,
    resnet18,
    resnet18d,
    resnet34,
    resnet34d,
    resnet50,
    resnet50d,
    resnet101,
    resnet101d,
    resnet152,
    resnet152d,
)
from prcm_jax.models.efficientnet_blocks import (
    BLOCK_TYPES,
    BlockArgs,
    ConvBnAct,
    DepthwiseSeparableConv,
    InvertedResidual,
    SeLayer,
    goog_conv2d,
)
from prcm_jax.models.efficientnet import (
    EFFICIENTNET_ARCH,
    EFFICIENTNETS,
    EfficientNet,
    efficientnet_b0,
    efficientnet_b1,
    efficientnet_b2,
    efficientnet_b3,
    efficientnet_block_args,
)
from prcm_jax.models.mobilenetv3 import (
    MOBILENETV3_ARCH,
    MobileNetV3,
    mobilenetv3_block_args,
    mobilenetv3_large_100,
    mobilenetv3_small_100,
)
from prcm_jax.models import efficientnet, efficientnet_blocks, efficientnet_builder, layers, mobilenetv3, resnet
from prcm_jax.models.timm import from_timm, twin_config

#: timm's EfficientNet / MobileNetV3 ``SqueezeExcite`` is ``efficientnet_blocks.SqueezeExcite``
#: (``SqueezeExcite`` here is the ResNets' ``SEModule``).
__all__ = [
    *layers.__all__,
    *resnet.__all__,
    *(n for n in efficientnet_blocks.__all__ if n != "SqueezeExcite"),
    *(n for n in efficientnet.__all__ if n not in ("classifier", "head_dropout")),
    *mobilenetv3.__all__,
    "efficientnet_builder",
    "from_timm",
    "twin_config",
]
