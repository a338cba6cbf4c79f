"""Build the NNX twin of a timm (or torchvision) network and copy its weights: :func:`from_timm`.

One row per family: the torch class, how its twin's arguments are read (every part checked, every
difference named, before any work), and the twin's class. Conversion is then the converters'
rename plus transpose (:func:`parity.torch_to_nnx`): the twins carry the torch names.
timm, torchvision and torch are imported when called, so importing :mod:`prcm_jax.models` needs none.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flax import nnx

from prcm_jax.models.efficientnet import EfficientNet
from prcm_jax.models.mobilenetv3 import MobileNetV3
from prcm_jax.models.resnet import ResNet
from prcm_jax.models.timm_checks import grouped
from prcm_jax.models.timm_efficientnet import efficientnet_config
from prcm_jax.models.timm_resnet import timm_resnet_config, torchvision_resnet_config

__all__ = ["from_timm", "twin_config", "FAMILIES"]

Reader = Callable[[Any], tuple[dict[str, Any], list[str]]]

#: ``(module, class name)`` of a torch network (or of a base class) -> (reader of its twin's arguments, the twin's class).
FAMILIES: dict[tuple[str, str], tuple[Reader, type[nnx.Module]]] = {
    ("timm.models.resnet", "ResNet"): (timm_resnet_config, ResNet),
    ("torchvision.models.resnet", "ResNet"): (torchvision_resnet_config, ResNet),
    ("timm.models.efficientnet", "EfficientNet"): (efficientnet_config, EfficientNet),
    ("timm.models.mobilenetv3", "MobileNetV3"): (efficientnet_config, MobileNetV3),
}


def _family(model: Any) -> tuple[Reader, type[nnx.Module]]:
    """The row of :data:`FAMILIES` for the model's class or its nearest base there (found by
    name: neither timm nor torchvision is imported to look)."""
    for cls in type(model).__mro__:
        row = FAMILIES.get((cls.__module__, cls.__name__))
        if row is not None:
            return row
    names = ", ".join(f"{m}.{n}" for m, n in FAMILIES)
    raise TypeError(f"from_timm: expected one of {names}, got {type(model).__module__}.{type(model).__name__}")


def _checked(model: Any) -> tuple[dict[str, Any], type[nnx.Module]]:
    from parity import ConversionError

    reader, twin = _family(model)
    config, problems = reader(model)
    if problems:
        raise ConversionError("from_timm", grouped(problems))
    return config, twin


def twin_config(model: Any) -> dict[str, Any]:
    """The arguments of the twin of a timm or torchvision network, checked before any work.

    Args:
      model: a timm ``ResNet`` (ResNet-D included), ``EfficientNet`` or ``MobileNetV3``, or a
        torchvision ``ResNet`` (e.g. ``timm.create_model("resnet50",
        block_args=dict(attn_layer=prcm_torch.AffinePRCM))``), on any device, meta included.

    Returns:
      the keyword arguments of :class:`~prcm_jax.models.ResNet` (``block``, ``layers``,
      ``num_classes``, ``in_chans``, ``attn_layer``, ...), :class:`~prcm_jax.models.EfficientNet`
      or :class:`~prcm_jax.models.MobileNetV3` (``block_args``, ``se_layer``, ...), with ``param_dtype``.

    Raises:
      TypeError: ``model`` is none of these.
      parity.ConversionError: listing every part of the model the twins do not build the
        same way (other block types, DropBlock, ``tf_`` same padding, non-default BatchNorm,
        pooling or activation layers, other attention modules, ...).

    Examples:
        >>> import timm
        >>> config = twin_config(timm.create_model("seresnet18", num_classes=10))
        >>> config["block"], config["layers"], config["attn_layer"], config["num_classes"]
        ('basic', (2, 2, 2, 2), 'se', 10)
        >>> config = twin_config(timm.create_model("mobilenetv3_small_100", pretrained=False))
        >>> [len(s) for s in config["block_args"]], config["se_layer"], config["se_gate"], config["act"]
        ([1, 2, 3, 2, 3, 1], 'se', 'hard_sigmoid', 'hard_swish')
    """
    return _checked(model)[0]


def from_timm(model: Any, weights: Any = None, *, seed: int = 0, dtype: Any = None) -> nnx.Module:
    """The Flax NNX twin of a timm (or torchvision) network, holding its weights (or ``weights``).

    The architecture is read from ``model`` (:func:`twin_config`) and checked before anything
    is built; the twin is built abstract (``nnx.eval_shape``: no initialisation), filled by
    :func:`parity.torch_to_nnx`, and its dropout streams (attention blocks, drop-path, the
    head's dropout) are seeded with ``seed`` (``nnx.reseed``). The twin starts in the model's
    mode (``model.eval()`` -> ``twin.eval()``).

    Args:
      model: a timm ``ResNet`` / ResNet-D, ``EfficientNet`` or ``MobileNetV3``, e.g.
        ``timm.create_model("resnet50d", pretrained=True)``, one with
        ``block_args=dict(attn_layer=prcm_torch.AffinePRCM)`` or with PRCM blocks assigned as
        ``block.se``; or a torchvision ``ResNet`` (attention as ``block.bn2 = nn.Sequential(block.bn2,
        attention)``); on the meta device when ``weights`` is given.
      weights: the state_dict to copy instead of the model's own: a mapping, a
        ``.safetensors`` / ``.pth`` / ``.pt`` path, or another ``nn.Module``.
      seed: seed of the dropout streams.
      dtype: computation dtype of the twin (``None``: that of the inputs and weights).

    Returns:
      a :class:`~prcm_jax.models.ResNet`, :class:`~prcm_jax.models.EfficientNet` or
      :class:`~prcm_jax.models.MobileNetV3`.

    Raises:
      TypeError: ``model`` is none of the supported classes.
      parity.ConversionError: a variant the twins do not cover, named (before any work), or
        weights whose keys, shapes or dtypes do not fit.

    Examples:
        >>> import timm, prcm_torch
        >>> t = timm.create_model("resnet18", num_classes=10, block_args=dict(attn_layer=prcm_torch.PRCM)).eval()
        >>> m = from_timm(t)
        >>> type(m.layer1[0].se).__name__, m.layer1[0].bn1.use_running_average
        ('PRCM', True)
    """
    import parity

    config, twin_class = _checked(model)
    if weights is None and any(t.is_meta for t in model.state_dict().values()):
        raise parity.ConversionError("from_timm", ["the model is on the meta device: pass weights= (a state_dict or a "
                                                   "checkpoint path)"])  # fmt: skip
    twin = nnx.eval_shape(lambda: twin_class(**config, dtype=dtype, rngs=nnx.Rngs(seed)))
    parity.torch_to_nnx(model if weights is None else weights, twin)
    nnx.reseed(twin, default=seed)
    if not model.training:
        twin.eval()
    return twin
