"""Build the NNX twin of a timm ResNet and copy its weights: :func:`from_timm`.

timm and torch are imported when called, so importing :mod:`prcm_jax.models` needs neither.
"""

from __future__ import annotations

import functools
from typing import Any

from flax import nnx

from prcm_jax.models.layers import make_divisible
from prcm_jax.models.resnet import STAGE_WIDTHS, ResNet

__all__ = ["from_timm", "twin_config"]


def _se_problems(se: Any, channels: int) -> list[str]:
    """What makes a timm ``SEModule`` differ from :class:`~prcm_jax.models.SqueezeExcite`."""
    hidden = make_divisible(channels / 16, 8, round_limit=0.0)
    found = {
        "rd_channels": (se.fc1.out_channels, hidden),
        "add_maxpool": (se.add_maxpool, False),
        "bias": (se.fc1.bias is not None, True),
        "norm_layer": (type(se.bn).__name__, "Identity"),
        "act_layer": (type(se.act).__name__, "ReLU"),
        "gate_layer": (type(se.gate).__name__, "Sigmoid"),
    }
    bad = [f"{k}={got!r} (twin: {want!r})" for k, (got, want) in found.items() if got != want]
    return [f"SEModule with non-default options: {', '.join(bad)}"] if bad else []


def _attention(block: Any, where: str) -> tuple[Any, list[str]]:
    """``(attn_layer for the twin, problems)`` for one timm block's ``se``."""
    from timm.layers.squeeze_excite import SEModule

    from prcm.catalog import CATALOG

    se = block.se
    if se is None:
        return None, []
    if type(se) is SEModule:
        return "se", [f"{where}.se: {p}" for p in _se_problems(se, se.fc2.out_channels)]
    entry = next((e for e in CATALOG.values() if type(se) is e.torch), None)
    if entry is None:
        supported = ", ".join(["None", "'se' (timm SEModule)", *(f"prcm_torch.{n}" for n in CATALOG)])
        return None, [f"{where}.se: attention {type(se).__module__}.{type(se).__name__} has no NNX twin; supported: {supported}"]
    return functools.partial(entry.nnx, **entry.config_of(se)), []


def _same_attention(a: Any, b: Any) -> bool:
    if isinstance(a, functools.partial) and isinstance(b, functools.partial):
        return a.func is b.func and a.keywords == b.keywords
    return a == b


def _norm_problems(norm: Any, where: str) -> list[str]:
    """What makes a norm layer differ from :class:`~prcm_jax.models.BatchNorm`."""
    from torch import nn

    if type(norm) is not nn.BatchNorm2d:
        return [f"{where}: {type(norm).__name__} (norm_layer); the twin has BatchNorm2d"]
    found = (norm.eps, norm.momentum, norm.affine, norm.track_running_stats)
    if found != (1e-5, 0.1, True, True):
        return [f"{where}: BatchNorm2d with (eps, momentum, affine, track_running_stats) = {found}; "
                "the twin has (1e-05, 0.1, True, True)"]  # fmt: skip
    return []


def _downsample_problems(ds: Any, where: str, needs: bool, stride: int) -> list[str]:
    """What makes a block's shortcut differ from the twin's (timm's ``downsample_conv``, 1x1)."""
    from torch import nn

    if ds is None or not needs:
        return [] if (ds is None) == (not needs) else [f"{where}: {'missing' if needs else 'present'}, the twin "
                                                       f"{'has one' if needs else 'has none'} there"]  # fmt: skip
    if not (isinstance(ds, nn.Sequential) and len(ds) == 2 and isinstance(ds[0], nn.Conv2d)):
        kinds = [type(m).__name__ for m in ds] if isinstance(ds, nn.Sequential) else [type(ds).__name__]
        return [f"{where}: {kinds}, an average-pool shortcut (avg_down=True) or another kind; the twin has "
                "[Conv2d 1x1, BatchNorm2d]"]  # fmt: skip
    conv = ds[0]
    if (conv.kernel_size, conv.stride, conv.padding, conv.dilation) != ((1, 1), (stride, stride), (0, 0), (1, 1)):
        return [f"{where}.0: conv kernel {conv.kernel_size} stride {conv.stride} padding {conv.padding} "
                f"(down_kernel_size != 1 or dilation); the twin has 1x1 stride {stride}"]  # fmt: skip
    return _norm_problems(ds[1], f"{where}.1")


def _block_problems(block: Any, where: str, width: int, stride: int, cin: int) -> list[str]:
    """Everything in one timm block the twin does not build the same way."""
    from timm.models.resnet import BasicBlock, Bottleneck
    from torch import nn

    problems = []
    expansion = 4 if isinstance(block, Bottleneck) else 1
    convs = [block.conv1, block.conv2] + ([block.conv3] if isinstance(block, Bottleneck) else [])
    if any(c.dilation != (1, 1) for c in convs):
        problems.append(f"{where}: dilated convolutions (output_stride < 32)")
    if any(c.groups != 1 for c in convs):
        problems.append(f"{where}: grouped convolution (cardinality={block.conv2.groups}, ResNeXt)")
    widths = [c.out_channels for c in convs]
    want = [width, width * expansion] if isinstance(block, BasicBlock) else [width, width, width * expansion]
    if widths != want:
        problems.append(f"{where}: convolution widths {widths}, the twin has {want} "
                        "(channels / base_width / block_reduce_first not the defaults)")  # fmt: skip
    stem_conv = block.conv1 if isinstance(block, BasicBlock) else block.conv2
    if stem_conv.stride != (stride, stride):
        problems.append(f"{where}: stride {stem_conv.stride} where the twin has {stride}")
    if not isinstance(getattr(block, "aa", nn.Identity()), nn.Identity):
        problems.append(f"{where}: anti-aliasing layer {type(block.aa).__name__} (aa_layer)")
    if not isinstance(getattr(block, "drop_block", nn.Identity()), nn.Identity):
        problems.append(f"{where}: DropBlock (drop_block_rate > 0)")
    if block.drop_path is not None:
        problems.append(f"{where}: DropPath (drop_path_rate > 0)")
    norms = [block.bn1, block.bn2] + ([block.bn3] if isinstance(block, Bottleneck) else [])
    for k, norm in enumerate(norms):
        problems += _norm_problems(norm, f"{where}.bn{k + 1}")
    acts = [block.act1, block.act2] + ([block.act3] if isinstance(block, Bottleneck) else [])
    if any(type(a) is not nn.ReLU for a in acts):
        names = ", ".join(sorted({type(a).__name__ for a in acts}))
        problems.append(f"{where}: activation {names} (act_layer; the twin has ReLU)")
    needs = stride != 1 or cin != width * expansion
    return problems + _downsample_problems(block.downsample, f"{where}.downsample", needs, stride)


def _grouped(problems: list[str]) -> list[str]:
    """``"where: what"`` lines, one per ``what``, naming the first places it occurs."""
    places: dict[str, list[str]] = {}
    for line in problems:
        where, _, what = line.partition(": ")
        places.setdefault(what, []).append(where)
    out = []
    for what, wheres in places.items():
        more = f" and {len(wheres) - 3} more" if len(wheres) > 3 else ""
        out.append(f"{', '.join(wheres[:3])}{more}: {what}")
    return out


def twin_config(model: Any) -> dict[str, Any]:
    """The :class:`~prcm_jax.models.ResNet` arguments of a timm ResNet, checked before any work.

    Args:
      model: a ``timm.models.resnet.ResNet`` (e.g. ``timm.create_model("resnet50",
        block_args=dict(attn_layer=prcm_torch.AffinePRCM))``), on any device, meta included.

    Returns:
      ``block``, ``layers``, ``num_classes``, ``in_chans``, ``attn_layer``, ``param_dtype``.

    Raises:
      TypeError: ``model`` is not a timm ResNet.
      parity.ConversionError: listing every part of the model the twins do not build the
        same way (deep stem, ``avg_down``, other block types, DropPath / DropBlock, head
        dropout, non-default widths, pooling, norm or activation layers, other attention
        modules, ...).

    >>> import timm
    >>> config = twin_config(timm.create_model("seresnet18", num_classes=10))
    >>> config["block"], config["layers"], config["attn_layer"], config["num_classes"]
    ('basic', (2, 2, 2, 2), 'se', 10)
    """
    import torch
    from timm.layers import SelectAdaptivePool2d
    from timm.models.resnet import BasicBlock, Bottleneck
    from timm.models.resnet import ResNet as TimmResNet
    from torch import nn

    from parity import ConversionError
    from parity.arrays import numpy_dtype

    if not isinstance(model, TimmResNet):
        raise TypeError(f"from_timm: expected a timm ResNet (timm.models.resnet.ResNet), got {type(model).__module__}."
                        f"{type(model).__name__}")  # fmt: skip
    problems = []
    stem = model.conv1
    if not isinstance(stem, nn.Conv2d):
        problems.append("conv1: a deep stem (stem_type='deep' / 'deep_tiered'); the twin has one 7x7 convolution")
    elif (stem.kernel_size, stem.stride, stem.padding, stem.out_channels) != ((7, 7), (2, 2), (3, 3), 64):
        problems.append(f"conv1: kernel {stem.kernel_size} stride {stem.stride} padding {stem.padding} "
                        f"width {stem.out_channels}; the twin has 7x7 stride 2 padding 3 width 64")  # fmt: skip
    pool = model.maxpool
    if not (isinstance(pool, nn.MaxPool2d) and (pool.kernel_size, pool.stride, pool.padding, pool.dilation, pool.ceil_mode)
            in (((3, 3), (2, 2), (1, 1), (1, 1), False), (3, 2, 1, 1, False))):  # fmt: skip
        problems.append(f"maxpool: {pool!r} (replace_stem_pool / aa_layer); the twin has MaxPool2d(3, stride=2, padding=1)")
    problems += [f"{name}: padding_mode={conv.padding_mode!r}; the twin pads with zeros" for name, conv in model.named_modules()
                 if isinstance(conv, nn.Conv2d) and conv.padding_mode != "zeros"]  # fmt: skip
    if type(model.act1) is not nn.ReLU:
        problems.append(f"act1: {type(model.act1).__name__} (act_layer); the twin has ReLU")
    stages = [getattr(model, f"layer{i}", None) for i in range(1, 5)]
    if hasattr(model, "layer5") or any(not isinstance(s, nn.Sequential) or len(s) == 0 for s in stages):
        raise ConversionError("from_timm", ["stages: the twin has four stages layer1..layer4 (non-default channels)"])
    kinds = {type(b) for s in stages for b in s}
    if not kinds <= {BasicBlock, Bottleneck} or len(kinds) != 1:
        names = ", ".join(sorted(f"{k.__module__}.{k.__name__}" for k in kinds))
        raise ConversionError("from_timm", [f"blocks: {names}; the twins build timm's BasicBlock or Bottleneck, one kind"])
    kind = kinds.pop()
    attn, cin = [], 64
    for i, (stage, width) in enumerate(zip(stages, STAGE_WIDTHS)):
        for j, block in enumerate(stage):
            where = f"layer{i + 1}.{j}"
            problems += _block_problems(block, where, width, 2 if i > 0 and j == 0 else 1, cin)
            layer, bad = _attention(block, where)
            attn.append((where, layer))
            problems += bad
            cin = width * kind.expansion
    first = attn[0][1]
    differ = [where for where, layer in attn if not _same_attention(layer, first)]
    if differ:
        problems.append(f"attention: blocks {differ[:4]} differ from layer1.0's; the twin puts one attn_layer in every block")
    problems += _norm_problems(model.bn1, "bn1")
    gp = model.global_pool
    if not (isinstance(gp, SelectAdaptivePool2d) and gp.pool_type == "avg"):
        problems.append(f"global_pool: {gp!r}; the twin has global_pool='avg'")
    if model.drop_rate:
        problems.append(f"drop_rate={model.drop_rate}: dropout before the classifier; the twin has none")
    if not isinstance(model.fc, nn.Linear | nn.Identity):
        problems.append(f"fc: {type(model.fc).__name__}; the twin has a Linear head (or none, num_classes=0)")
    dtypes = {p.dtype for p in model.parameters()}
    if len(dtypes) != 1 or not next(iter(dtypes)).is_floating_point:
        problems.append(f"parameters: dtypes {sorted(map(str, dtypes))}; expected one floating-point dtype")
    if problems:
        raise ConversionError("from_timm", _grouped(problems))
    return dict(
        block="basic" if kind is BasicBlock else "bottleneck",
        layers=tuple(len(s) for s in stages),
        num_classes=model.fc.out_features if isinstance(model.fc, nn.Linear) else 0,
        in_chans=stem.in_channels,
        attn_layer=first,
        param_dtype=numpy_dtype(dtypes.pop() if dtypes else torch.float32),
    )


def from_timm(model: Any, weights: Any = None, *, seed: int = 0, dtype: Any = None) -> ResNet:
    """The Flax NNX twin of a timm ResNet, holding its weights (or ``weights``).

    The architecture is read from ``model`` (:func:`twin_config`) and checked before anything
    is built; the twin is built abstract (``nnx.eval_shape``: no initialisation), filled by
    :func:`parity.torch_to_nnx`, and its attention blocks' dropout streams are seeded with
    ``seed`` (``nnx.reseed``). The twin starts in the model's mode (``model.eval()`` ->
    ``twin.eval()``).

    Args:
      model: a timm ResNet, e.g. ``timm.create_model("resnet50", pretrained=True)`` or one
        with ``block_args=dict(attn_layer=prcm_torch.AffinePRCM)``; on the meta device when
        ``weights`` is given.
      weights: the state_dict to copy instead of the model's own: a mapping, a
        ``.safetensors`` / ``.pth`` / ``.pt`` path, or another ``nn.Module``.
      seed: seed of the dropout streams.
      dtype: computation dtype of the twin (``None``: that of the inputs and weights).

    Raises:
      TypeError: ``model`` is not a timm ResNet.
      parity.ConversionError: a variant the twins do not cover, named (before any work), or
        weights whose keys, shapes or dtypes do not fit.

    >>> import timm, prcm_torch
    >>> t = timm.create_model("resnet18", num_classes=10, block_args=dict(attn_layer=prcm_torch.PRCM)).eval()
    >>> m = from_timm(t)
    >>> type(m.layer1[0].se).__name__, m.layer1[0].bn1.use_running_average
    ('PRCM', True)
    """
    import parity

    config = twin_config(model)
    if weights is None and any(t.is_meta for t in model.state_dict().values()):
        raise parity.ConversionError("from_timm", ["the model is on the meta device: pass weights= (a state_dict or a "
                                                   "checkpoint path)"])  # fmt: skip
    twin = nnx.eval_shape(lambda: ResNet(**config, dtype=dtype, rngs=nnx.Rngs(seed)))
    parity.torch_to_nnx(model if weights is None else weights, twin)
    nnx.reseed(twin, default=seed)
    if not model.training:
        twin.eval()
    return twin
