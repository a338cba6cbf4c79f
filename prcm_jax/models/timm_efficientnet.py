"""The :class:`~prcm_jax.models.EfficientNet` / :class:`~prcm_jax.models.MobileNetV3` arguments
of a timm ``EfficientNet`` / ``MobileNetV3``: every block read into a
:class:`~prcm_jax.models.efficientnet_blocks.BlockArgs` and checked
(:mod:`prcm_jax.models.timm_checks`) before anything is built.

Any width and depth is read as built, so ``efficientnet_b0`` .. ``b3``, the MobileNetV3s and
other models of these two classes made of ``ds`` / ``dsa`` / ``ir`` / ``cn`` blocks port alike;
what the blocks do not build is named (``tf_`` variants' 'same' padding and BatchNorm eps,
activations other than ReLU, ReLU6, SiLU and hard-swish, CondConv / EdgeResidual /
UniversalInvertedResidual blocks, space-to-depth, anti-aliasing, grouped pointwise convolutions,
``head_norm``, a pooling other than ``avg``).
"""

from __future__ import annotations

from typing import Any

from prcm_jax.models.efficientnet_blocks import BlockArgs
from prcm_jax.models.layers import ACTIVATIONS
from prcm_jax.models.timm_checks import (activation_name, catalog_attention, conv_problems, dtype_of, norm_problems,
                                         one_attention, padding_problems)  # fmt: skip

__all__ = ["efficientnet_config"]

_FAMILY_SE = "'se' (timm's efficientnet SqueezeExcite)"


def _se(se: Any, where: str) -> tuple[Any, tuple[int, str | None, str | None] | None, list[str]]:
    """``(se_layer, (rd_chs, act, gate) of a timm SqueezeExcite, problems)`` for one ``se`` slot."""
    from timm.models._efficientnet_blocks import SqueezeExcite

    if type(se) is not SqueezeExcite:
        layer, problems = catalog_attention(se, where, _FAMILY_SE)
        return layer, None, problems
    problems = [*conv_problems(se.conv_reduce, f"{where}.conv_reduce", kernel=1, stride=1, bias=True),
                *conv_problems(se.conv_expand, f"{where}.conv_expand", kernel=1, stride=1, bias=True)]  # fmt: skip
    for name in ("act1", "gate"):
        if activation_name(getattr(se, name)) not in ACTIVATIONS:
            problems.append(f"{where}.{name}: {type(getattr(se, name)).__name__}; the twin's SqueezeExcite has one of "
                            f"{', '.join(ACTIVATIONS)}")  # fmt: skip
    return "se", (se.conv_reduce.out_channels, activation_name(se.act1), activation_name(se.gate)), problems


def _common(block: Any, where: str) -> tuple[float, list[str]]:
    """``(drop-path rate, problems)`` of what every block may hold: drop-path, anti-aliasing, space-to-depth."""
    from timm.layers import DropPath
    from torch import nn

    problems = []
    if not isinstance(getattr(block, "aa", nn.Identity()), nn.Identity):
        problems.append(f"{where}.aa: anti-aliasing {type(block.aa).__name__} (aa_layer)")
    if getattr(block, "conv_s2d", None) is not None:
        problems.append(f"{where}.conv_s2d: space-to-depth (the 'd' block option)")
    rate = 0.0
    if isinstance(block.drop_path, DropPath):
        rate = block.drop_path.drop_prob
        if not block.drop_path.scale_by_keep:
            problems.append(f"{where}.drop_path: DropPath(scale_by_keep=False); the twin scales by 1 / keep")
    elif not isinstance(block.drop_path, nn.Identity):
        problems.append(f"{where}.drop_path: {type(block.drop_path).__name__}; the twin has timm's DropPath")
    return rate, problems


def _read_block(block: Any, where: str) -> tuple[dict[str, Any], list[str]]:
    """``BlockArgs`` fields of one timm block (``se`` slot apart), and what the twin does not build."""
    from timm.models._efficientnet_blocks import ConvBnAct, DepthwiseSeparableConv, InvertedResidual

    kind = {DepthwiseSeparableConv: "ds", InvertedResidual: "ir", ConvBnAct: "cn"}.get(type(block))
    if kind is None:
        return {}, [f"{where}: block {type(block).__module__}.{type(block).__name__}; the twins build DepthwiseSeparableConv, "
                    "InvertedResidual and ConvBnAct"]  # fmt: skip
    drop_path, problems = _common(block, where)
    convs = {"cn": ("conv",), "ds": ("conv_dw", "conv_pw"), "ir": ("conv_pw", "conv_dw", "conv_pwl")}[kind]
    other = [p for name in convs for p in conv_problems(getattr(block, name), f"{where}.{name}") if "nn.Conv2d" in p]
    if other:  # a MixedConv2d, CondConv2d or Conv2dSame: nothing more to read
        return {}, problems + other
    if kind == "cn":
        problems += conv_problems(block.conv, f"{where}.conv") + norm_problems(block.bn1, f"{where}.bn1", act=True)
        return dict(block_type="cn", in_chs=block.conv.in_channels, out_chs=block.conv.out_channels, kernel_size=block.conv.kernel_size[0],
                    stride=block.conv.stride[0], act=activation_name(block.bn1.act), drop_path=drop_path), problems  # fmt: skip
    dw = block.conv_dw
    norms = (("bn1", "bn2") if kind == "ds" else ("bn1", "bn2", "bn3"))
    for name in norms:
        problems += norm_problems(getattr(block, name), f"{where}.{name}", act=True)
    acts = [activation_name(getattr(block, name).act) for name in norms]
    problems += conv_problems(dw, f"{where}.conv_dw", groups=dw.in_channels)
    if dw.out_channels != dw.in_channels:
        problems.append(f"{where}.conv_dw: {dw.in_channels} -> {dw.out_channels} channels; the twin's is depthwise")
    pointwise = ("conv_pw",) if kind == "ds" else ("conv_pw", "conv_pwl")
    problems += [p for name in pointwise for p in conv_problems(getattr(block, name), f"{where}.{name}", kernel=1, stride=1)]
    act = acts[0]
    if kind == "ir" and (acts[1], acts[2]) != (act, None):
        problems.append(f"{where}: activations {acts} of bn1, bn2, bn3; the twin has (act, act, None)")
    if kind == "ds" and acts[1] not in (None, act):
        problems.append(f"{where}.bn2: activation {acts[1]} after the pointwise convolution; the twin has none or the block's ({act})")
    out = block.conv_pw if kind == "ds" else block.conv_pwl
    return dict(block_type=kind, in_chs=block.conv_pw.in_channels, out_chs=out.out_channels, kernel_size=dw.kernel_size[0],
                stride=dw.stride[0], mid_chs=dw.in_channels if kind == "ir" else 0, act=act,
                pw_act=kind == "ds" and acts[1] is not None, drop_path=drop_path), problems  # fmt: skip


def _se_options(found: list[tuple[str, tuple[int, str | None, str | None]]], acts: dict[str, str], default: tuple[str | None, str]
                ) -> tuple[tuple[str | None, str], list[str]]:  # fmt: skip
    """``(se_act, se_gate)`` of the network's timm SqueezeExcite blocks: one gate, and one activation
    (or each block's own, ``None``)."""
    if not found:
        return default, []
    gates = {gate for _, (_, _, gate) in found}
    se_acts = {act for _, (_, act, _) in found}
    problems = [] if len(gates) == 1 else [f"attention: SqueezeExcite gates {sorted(map(str, gates))}; the twin has one"]
    if len(se_acts) == 1:
        se_act = se_acts.pop()
    elif all(act == acts[where] for where, (_, act, _) in found):
        se_act = None
    else:
        se_act = None
        problems.append("attention: SqueezeExcite activations differ from block to block and from the blocks' own; the twin "
                        "has one, or each block's")  # fmt: skip
    return (se_act, gates.pop()), problems


def _head(model: Any, mobilenet: bool, act: str | None) -> tuple[dict[str, Any], list[str]]:
    """The head's arguments (``num_features``, ``head_bias``) and problems."""
    from timm.layers import SelectAdaptivePool2d
    from torch import nn

    problems = []
    gp = model.global_pool
    if not (isinstance(gp, SelectAdaptivePool2d) and gp.pool_type == "avg"):
        problems.append(f"global_pool: {gp!r}; the twin has global_pool='avg'")
    if not isinstance(model.classifier, nn.Linear | nn.Identity):
        problems.append(f"classifier: {type(model.classifier).__name__}; the twin has a Linear head (or none, num_classes=0)")
    if mobilenet:
        problems += conv_problems(model.conv_head, "conv_head", kernel=1, stride=1, bias=model.conv_head.bias is not None)
        if not isinstance(model.norm_head, nn.Identity):
            problems.append("norm_head: a norm layer after conv_head (head_norm=True); the twin has none")
        if activation_name(model.act2) != act:
            problems.append(f"act2: {type(model.act2).__name__}; the twin's head has the stem's activation ({act})")
        return dict(num_features=model.conv_head.out_channels, head_bias=model.conv_head.bias is not None), problems
    if isinstance(model.conv_head, nn.Identity) and isinstance(model.bn2, nn.Identity):
        return dict(num_features=0), problems
    problems += conv_problems(model.conv_head, "conv_head", kernel=1, stride=1) + norm_problems(model.bn2, "bn2", act=True)
    if not problems and activation_name(model.bn2.act) != act:
        problems.append(f"bn2.act: {type(model.bn2.act).__name__}; the twin's head has the stem's activation ({act})")
    return dict(num_features=model.conv_head.out_channels), problems


def efficientnet_config(model: Any) -> tuple[dict[str, Any], list[str]]:
    """``(EfficientNet or MobileNetV3 arguments, problems)`` of a timm ``EfficientNet`` / ``MobileNetV3``."""
    from timm.models.mobilenetv3 import MobileNetV3
    from torch import nn

    mobilenet = isinstance(model, MobileNetV3)
    problems = [*conv_problems(model.conv_stem, "conv_stem", kernel=3, stride=2), *padding_problems(model),
                *norm_problems(model.bn1, "bn1", act=True)]  # fmt: skip
    act = activation_name(model.bn1.act)
    stages, attn, se_found, acts = [], [], [], {}
    for i, stage in enumerate(model.blocks):
        blocks = []
        for j, block in enumerate(stage):
            where = f"blocks.{i}.{j}"
            fields, bad = _read_block(block, where)
            problems += bad
            se = getattr(block, "se", nn.Identity())
            if fields and not isinstance(se, nn.Identity):
                layer, info, bad = _se(se, f"{where}.se")
                problems += bad
                attn.append((where, layer))
                fields.update(attn=True, rd_chs=info[0] if info else 0)
                if info:
                    se_found.append((where, info))
                    acts[where] = fields["act"]
            if fields:
                blocks.append(fields)
        stages.append(blocks)
    flat = [b for s in stages for b in s]
    chained = all(a["out_chs"] == b["in_chs"] for a, b in zip(flat, flat[1:])) and flat and flat[0]["in_chs"] == model.conv_stem.out_channels
    if not problems and not chained:
        problems.append("blocks: channels do not chain from conv_stem through the blocks")
    se_layer, bad = one_attention(attn)
    problems += bad
    (se_act, se_gate), bad = _se_options(se_found, acts, ("relu", "hard_sigmoid") if mobilenet else (None, "sigmoid"))
    head, bad_head = _head(model, mobilenet, act)
    param_dtype, bad_dtype = dtype_of(model)
    problems += bad + bad_head + bad_dtype
    block_args = tuple(tuple(BlockArgs(**fields, skip=block.has_skip) for fields, block in zip(s, stage))
                       for s, stage in zip(stages, model.blocks)) if not problems else ()  # fmt: skip
    classifier = model.classifier
    return dict(block_args=block_args, num_classes=classifier.out_features if isinstance(classifier, nn.Linear) else 0,
                in_chans=model.conv_stem.in_channels, stem_size=model.conv_stem.out_channels, act=act, se_layer=se_layer,
                se_act=se_act, se_gate=se_gate, drop_rate=float(model.drop_rate), **head, param_dtype=param_dtype), problems  # fmt: skip
