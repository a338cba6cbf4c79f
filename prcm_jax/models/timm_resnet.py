"""The :class:`~prcm_jax.models.ResNet` arguments of a timm ResNet / ResNet-D or a torchvision
ResNet, every part checked (:mod:`prcm_jax.models.timm_checks`) before anything is built.

torchvision's ResNet has timm's state_dict names (``conv1``, ``layer1.0.bn2``,
``layer2.0.downsample.0``, ``fc``) and no attention slot: a block takes one as
``block.bn2 = nn.Sequential(block.bn2, attention)`` (``bn3`` in a Bottleneck), which its
``forward`` calls where timm calls ``se``; the twin mirrors that (``attn_slot="norm"``), so the
converters pair the two by name in both directions.
"""

from __future__ import annotations

from typing import Any

from prcm_jax.models.layers import make_divisible
from prcm_jax.models.resnet import STAGE_WIDTHS, STEM_TYPES
from prcm_jax.models.timm_checks import catalog_attention, conv_problems, dtype_of, norm_problems, one_attention, padding_problems

__all__ = ["timm_resnet_config", "torchvision_resnet_config"]


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


def _attention(se: Any, where: str) -> tuple[Any, list[str]]:
    """``(attn_layer for the twin, problems)`` for one block's attention module (or ``None``)."""
    if se is None:
        return None, []
    if (type(se).__module__, type(se).__name__) == ("timm.layers.squeeze_excite", "SEModule"):  # timm need not be installed
        return "se", [f"{where}: {p}" for p in _se_problems(se, se.fc2.out_channels)]
    return catalog_attention(se, where, "'se' (timm SEModule)")


def _downsample_problems(ds: Any, where: str, needs: bool, stride: int, avg_down: bool) -> list[str]:
    """What makes a block's shortcut differ from the twin's: timm's ``downsample_conv`` (1x1 conv
    with the stride, BatchNorm) or, with ``avg_down``, ``downsample_avg`` (2x2 average pool, 1x1 conv, BatchNorm)."""
    from torch import nn

    if ds is None or not needs:
        return [] if (ds is None) == (not needs) else [f"{where}: {'missing' if needs else 'present'}, the twin "
                                                       f"{'has one' if needs else 'has none'} there"]  # fmt: skip
    kinds = [type(m).__name__ for m in ds] if isinstance(ds, nn.Sequential) else [type(ds).__name__]
    want = ["AvgPool2d" if stride != 1 else "Identity", "Conv2d", "BatchNorm2d"] if avg_down else ["Conv2d", "BatchNorm2d"]
    if kinds != want:
        return [f"{where}: {kinds}; the twin has {want} (avg_down={avg_down}, as the network's first shortcut)"]
    if avg_down and stride != 1:
        pool = ds[0]
        found = (pool.kernel_size, pool.stride, pool.padding, pool.ceil_mode, pool.count_include_pad)
        if found not in ((2, stride, 0, True, False), ((2, 2), (stride, stride), (0, 0), True, False)):
            return [f"{where}.0: AvgPool2d (kernel, stride, padding, ceil_mode, count_include_pad) = {found}; the twin has "
                    f"(2, {stride}, 0, True, False)"]  # fmt: skip
    conv = len(want) - 2
    return (conv_problems(ds[conv], f"{where}.{conv}", kernel=1, stride=1 if avg_down else stride)
            + norm_problems(ds[conv + 1], f"{where}.{conv + 1}"))  # fmt: skip


def _widths(block: Any, where: str, width: int, expansion: int, stride: int, stride_conv: Any) -> list[str]:
    """Convolution widths, groups, dilation and the stride of one block (timm's or torchvision's)."""
    convs = [block.conv1, block.conv2] + ([block.conv3] if expansion == 4 else [])
    problems = []
    if any(c.dilation != (1, 1) for c in convs):
        problems.append(f"{where}: dilated convolutions (output_stride < 32 / replace_stride_with_dilation)")
    if any(c.groups != 1 for c in convs):
        problems.append(f"{where}: grouped convolution (cardinality={block.conv2.groups}, ResNeXt)")
    widths = [c.out_channels for c in convs]
    want = [width, width * expansion] if expansion == 1 else [width, width, width * expansion]
    if widths != want:
        problems.append(f"{where}: convolution widths {widths}, the twin has {want} "
                        "(channels / base_width / width_per_group / block_reduce_first not the defaults)")  # fmt: skip
    if stride_conv.stride != (stride, stride):
        problems.append(f"{where}: stride {stride_conv.stride} where the twin has {stride}")
    return problems


def _timm_block_problems(block: Any, where: str, width: int, stride: int, cin: int, avg_down: bool) -> list[str]:
    """Everything in one timm block the twin does not build the same way."""
    from timm.models.resnet import BasicBlock, Bottleneck
    from torch import nn

    expansion = 4 if isinstance(block, Bottleneck) else 1
    problems = _widths(block, where, width, expansion, stride, block.conv1 if isinstance(block, BasicBlock) else block.conv2)
    if not isinstance(getattr(block, "aa", nn.Identity()), nn.Identity):
        problems.append(f"{where}: anti-aliasing layer {type(block.aa).__name__} (aa_layer)")
    if not isinstance(getattr(block, "drop_block", nn.Identity()), nn.Identity):
        problems.append(f"{where}: DropBlock (drop_block_rate > 0)")
    if block.drop_path is not None:
        problems.append(f"{where}: DropPath (drop_path_rate > 0)")
    norms = [block.bn1, block.bn2] + ([block.bn3] if isinstance(block, Bottleneck) else [])
    for k, norm in enumerate(norms):
        problems += norm_problems(norm, f"{where}.bn{k + 1}")
    acts = [block.act1, block.act2] + ([block.act3] if isinstance(block, Bottleneck) else [])
    if any(type(a) is not nn.ReLU for a in acts):
        names = ", ".join(sorted({type(a).__name__ for a in acts}))
        problems.append(f"{where}: activation {names} (act_layer; the twin has ReLU)")
    needs = stride != 1 or cin != width * expansion
    return problems + _downsample_problems(block.downsample, f"{where}.downsample", needs, stride, avg_down)


def _stem(conv1: Any) -> tuple[str, int, list[str]]:
    """``(stem_type, stem_width, problems)`` of a timm ResNet's ``conv1``."""
    from torch import nn

    if isinstance(conv1, nn.Conv2d):
        problems = conv_problems(conv1, "conv1", kernel=7, stride=2)
        if conv1.out_channels != 64:
            problems.append(f"conv1: width {conv1.out_channels}; the twin's 7x7 stem has 64")
        return "", 64, problems
    kinds = [type(m).__name__ for m in conv1] if isinstance(conv1, nn.Sequential) else [type(conv1).__name__]
    if kinds != ["Conv2d", "BatchNorm2d", "ReLU", "Conv2d", "BatchNorm2d", "ReLU", "Conv2d"]:
        return "", 64, [f"conv1: a stem of {kinds}; the twin has one 7x7 convolution or timm's deep stem "
                        "[Conv2d, BatchNorm2d, ReLU, Conv2d, BatchNorm2d, ReLU, Conv2d]"]  # fmt: skip
    a, b, out = conv1[0].out_channels, conv1[3].out_channels, conv1[6].out_channels
    problems = [*conv_problems(conv1[0], "conv1.0", kernel=3, stride=2), *conv_problems(conv1[3], "conv1.3", kernel=3, stride=1),
                *conv_problems(conv1[6], "conv1.6", kernel=3, stride=1), *norm_problems(conv1[1], "conv1.1"),
                *norm_problems(conv1[4], "conv1.4")]  # fmt: skip
    width = out // 2
    kind = next((t for t, w in STEM_TYPES.items() if w is not None and w(width) == (a, b) and out == 2 * width), None)
    if kind is None:
        problems.append(f"conv1: deep stem widths ({a}, {b}, {out}); the twin has (w, w, 2w) ('deep') or "
                        "(3 * (w // 4), w, 2w) ('deep_tiered')")  # fmt: skip
    return kind or "deep", width, problems


def _stages(model: Any, kinds: tuple[type, type]) -> tuple[list[Any], type]:
    """The four stages and their one block type, or a ConversionError (nothing else can be checked)."""
    from torch import nn

    from parity import ConversionError

    stages = [getattr(model, f"layer{i}", None) for i in range(1, 5)]
    if hasattr(model, "layer5") or any(not isinstance(s, nn.Sequential) or len(s) == 0 for s in stages):
        raise ConversionError("from_timm", ["stages: the twin has four stages layer1..layer4 (non-default channels)"])
    found = {type(b) for s in stages for b in s}
    if not found <= set(kinds) or len(found) != 1:
        names = ", ".join(sorted(f"{k.__module__}.{k.__name__}" for k in found))
        raise ConversionError("from_timm", [f"blocks: {names}; the twins build {kinds[0].__module__}'s BasicBlock or "
                                            "Bottleneck, one kind"])  # fmt: skip
    return stages, found.pop()


def _head_problems(fc: Any) -> list[str]:
    from torch import nn

    if not isinstance(fc, nn.Linear | nn.Identity):
        return [f"fc: {type(fc).__name__}; the twin has a Linear head (or none, num_classes=0)"]
    return []


def _config(block: str, stages: list[Any], fc: Any, in_chans: int, attn: list[tuple[str, Any]], model: Any,
            **arch: Any) -> tuple[dict[str, Any], list[str]]:  # fmt: skip
    from torch import nn

    attn_layer, problems = one_attention(attn)
    param_dtype, bad = dtype_of(model)
    config = dict(block=block, layers=tuple(len(s) for s in stages), num_classes=fc.out_features if isinstance(fc, nn.Linear) else 0,
                  in_chans=in_chans, attn_layer=attn_layer, **arch, param_dtype=param_dtype)  # fmt: skip
    return config, problems + bad


def timm_resnet_config(model: Any) -> tuple[dict[str, Any], list[str]]:
    """``(ResNet arguments, problems)`` of a ``timm.models.resnet.ResNet``."""
    from timm.layers import SelectAdaptivePool2d
    from timm.models.resnet import BasicBlock, Bottleneck
    from torch import nn

    stem_type, stem_width, problems = _stem(model.conv1)
    cin = 64 if not stem_type else 2 * stem_width
    pool = model.maxpool
    if not (isinstance(pool, nn.MaxPool2d) and (pool.kernel_size, pool.stride, pool.padding, pool.dilation, pool.ceil_mode)
            in (((3, 3), (2, 2), (1, 1), (1, 1), False), (3, 2, 1, 1, False))):  # fmt: skip
        problems.append(f"maxpool: {pool!r} (replace_stem_pool / aa_layer); the twin has MaxPool2d(3, stride=2, padding=1)")
    problems += padding_problems(model)
    if type(model.act1) is not nn.ReLU:
        problems.append(f"act1: {type(model.act1).__name__} (act_layer); the twin has ReLU")
    stages, kind = _stages(model, (BasicBlock, Bottleneck))
    shortcuts = [b.downsample for s in stages for b in s if b.downsample is not None]
    avg_down = bool(shortcuts) and isinstance(shortcuts[0], nn.Sequential) and len(shortcuts[0]) == 3
    attn = []
    for i, (stage, width) in enumerate(zip(stages, STAGE_WIDTHS)):
        for j, block in enumerate(stage):
            where = f"layer{i + 1}.{j}"
            problems += _timm_block_problems(block, where, width, 2 if i > 0 and j == 0 else 1, cin, avg_down)
            layer, bad = _attention(block.se, where)
            attn.append((where, layer))
            problems += bad
            cin = width * (4 if kind is Bottleneck else 1)
    problems += norm_problems(model.bn1, "bn1")
    gp = model.global_pool
    if not (isinstance(gp, SelectAdaptivePool2d) and gp.pool_type == "avg"):
        problems.append(f"global_pool: {gp!r}; the twin has global_pool='avg'")
    if model.drop_rate:
        problems.append(f"drop_rate={model.drop_rate}: dropout before the classifier; the twin has none")
    in_chans = model.conv1.in_channels if stem_type == "" else model.conv1[0].in_channels
    arch = dict(stem_type=stem_type, stem_width=stem_width, avg_down=avg_down) if stem_type or avg_down else {}
    config, bad = _config("basic" if kind is BasicBlock else "bottleneck", stages, model.fc, in_chans, attn, model, **arch)
    return config, problems + bad + _head_problems(model.fc)


_TORCHVISION_CHILDREN = {1: {"conv1", "bn1", "relu", "conv2", "bn2", "downsample"},
                         4: {"conv1", "bn1", "relu", "conv2", "bn2", "conv3", "bn3", "downsample"}}  # fmt: skip


def _torchvision_block(block: Any, where: str, width: int, stride: int, cin: int) -> tuple[Any, list[str]]:
    """``(attention, problems)`` of one torchvision block; the attention sits in the last norm
    (``nn.Sequential(norm, attention)``)."""
    from torch import nn

    expansion = block.expansion
    problems = _widths(block, where, width, expansion, stride, block.conv1 if expansion == 1 else block.conv2)
    extra = sorted(set(block._modules) - _TORCHVISION_CHILDREN[expansion])
    if extra:
        last = "bn2" if expansion == 1 else "bn3"
        problems.append(f"{where}: modules {extra}, which torchvision's {type(block).__name__}.forward never calls; put "
                        f"attention where it runs: block.{last} = nn.Sequential(block.{last}, attention)")  # fmt: skip
    if type(block.relu) is not nn.ReLU:
        problems.append(f"{where}.relu: {type(block.relu).__name__}; the twin has ReLU")
    last = f"bn{2 if expansion == 1 else 3}"
    norms = [getattr(block, f"bn{k}") for k in range(1, 4 if expansion == 4 else 3)]
    attention, problems_attn = None, []
    if isinstance(norms[-1], nn.Sequential):
        if len(norms[-1]) != 2:
            problems_attn.append(f"{where}.{last}: nn.Sequential of {len(norms[-1])}; the twin has (BatchNorm2d, attention)")
        else:
            attention, problems_attn = _attention(norms[-1][1], f"{where}.{last}.1")
            norms[-1] = norms[-1][0]
    for k, norm in enumerate(norms):
        problems += norm_problems(norm, f"{where}.bn{k + 1}" + (".0" if k + 1 == len(norms) and attention else ""))
    needs = stride != 1 or cin != width * expansion
    return attention, problems + problems_attn + _downsample_problems(block.downsample, f"{where}.downsample", needs, stride, False)


def torchvision_resnet_config(model: Any) -> tuple[dict[str, Any], list[str]]:
    """``(ResNet arguments, problems)`` of a ``torchvision.models.resnet.ResNet``."""
    from torch import nn
    from torchvision.models.resnet import BasicBlock, Bottleneck

    problems = conv_problems(model.conv1, "conv1", kernel=7, stride=2) + padding_problems(model) + norm_problems(model.bn1, "bn1")
    if model.conv1.out_channels != 64:
        problems.append(f"conv1: width {model.conv1.out_channels}; the twin's stem has 64")
    if type(model.relu) is not nn.ReLU:
        problems.append(f"relu: {type(model.relu).__name__}; the twin has ReLU")
    pool = model.maxpool
    if not (isinstance(pool, nn.MaxPool2d) and (pool.kernel_size, pool.stride, pool.padding, pool.dilation, pool.ceil_mode)
            == (3, 2, 1, 1, False)):  # fmt: skip
        problems.append(f"maxpool: {pool!r}; the twin has MaxPool2d(3, stride=2, padding=1)")
    if not (isinstance(model.avgpool, nn.AdaptiveAvgPool2d) and model.avgpool.output_size in (1, (1, 1))):
        problems.append(f"avgpool: {model.avgpool!r}; the twin has AdaptiveAvgPool2d((1, 1))")
    extra = sorted(set(model._modules) - {"conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool", "fc"})
    if extra:
        problems.append(f"model: modules {extra}, which torchvision's ResNet.forward never calls")
    stages, kind = _stages(model, (BasicBlock, Bottleneck))
    attn, cin = [], 64
    for i, (stage, width) in enumerate(zip(stages, STAGE_WIDTHS)):
        for j, block in enumerate(stage):
            where = f"layer{i + 1}.{j}"
            layer, bad = _torchvision_block(block, where, width, 2 if i > 0 and j == 0 else 1, cin)
            attn.append((where, layer))
            problems += bad
            cin = width * kind.expansion
    slot = dict(attn_slot="norm") if any(layer is not None for _, layer in attn) else {}
    config, bad = _config("basic" if kind is BasicBlock else "bottleneck", stages, model.fc, model.conv1.in_channels, attn,
                          model, **slot)  # fmt: skip
    return config, problems + bad + _head_problems(model.fc)
