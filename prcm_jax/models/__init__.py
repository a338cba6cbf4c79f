"""Networks in Flax NNX: twins of timm's ResNets with a pluggable attention block.

>>> import jax.numpy as jnp
>>> from flax import nnx
>>> import prcm_jax
>>> from prcm_jax.models import resnet18
>>> model = nnx.eval_shape(lambda: resnet18(attn_layer=prcm_jax.AffinePRCM, num_classes=10, rngs=nnx.Rngs(0)))
>>> nnx.eval_shape(lambda m, x: m(x, deterministic=True), model, jnp.ones((2, 32, 32, 3))).shape
(2, 10)

``from_timm(timm_model)`` builds the twin of a timm ResNet and copies its weights.
"""

from prcm_jax.models.layers import BatchNorm, Modes, conv_kernel_init, make_divisible
from prcm_jax.models.resnet import (
    AttnLayer,
    BasicBlock,
    Bottleneck,
    ResNet,
    SqueezeExcite,
    resnet18,
    resnet34,
    resnet50,
    resnet101,
    resnet152,
)
from prcm_jax.models import layers, resnet
from prcm_jax.models.timm import from_timm, twin_config

__all__ = [*layers.__all__, *resnet.__all__, "from_timm", "twin_config"]
