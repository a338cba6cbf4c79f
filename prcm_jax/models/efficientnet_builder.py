"""timm's EfficientNet / MobileNetV3 builder (``timm.models._efficientnet_builder``), the part the
twins need: architecture strings decoded, depths and widths scaled, every block resolved into a
:class:`~prcm_jax.models.efficientnet_blocks.BlockArgs`, and the blocks built.

An architecture is timm's list of stages of block strings, e.g. ``"ir_r2_k3_s2_e6_c24_se0.25"``:
block type (``ds``, ``dsa``, ``ir``, ``cn``), ``r`` repeats, ``k`` kernel, ``s`` stride of the
stage's first block, ``e`` expansion, ``c`` output channels, ``se`` SE ratio, ``n`` activation
(``re`` ReLU, ``r6`` ReLU6, ``hs`` hard-swish, ``sw`` SiLU), ``noskip`` / ``skip``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import jax
from flax import nnx

from prcm_jax.models.efficientnet_blocks import BLOCK_TYPES, BlockArgs, SeLayer
from prcm_jax.models.layers import ACTIVATIONS, make_divisible

__all__ = ["ACT_CODES", "round_channels", "decode_arch_def", "resolve_block_args", "build_blocks", "forward_blocks",
           "check_network"]  # fmt: skip

#: the ``n`` option of a block string -> activation name (:data:`~prcm_jax.models.ACTIVATIONS`).
ACT_CODES = {"re": "relu", "r6": "relu6", "hs": "hard_swish", "sw": "silu"}
_OPTION = re.compile(r"^([a-z]+)(\d.*)$")
_KNOWN = {"r", "k", "s", "e", "c", "se"}


def round_channels(channels: float, multiplier: float = 1.0, divisor: int = 8) -> int:
    """timm's ``round_channels``: ``channels * multiplier`` rounded to a multiple of ``divisor``.

    Examples:
        >>> round_channels(1280, 1.1), round_channels(40, 1.2), round_channels(16 * 0.25)
        (1408, 48, 8)
    """
    if not multiplier:
        return int(channels)
    return make_divisible(channels * multiplier, divisor)


def _decode_block_str(block_str: str) -> tuple[dict[str, Any], int]:
    """One block string -> (arguments, repeats); refuses options the twins do not build."""
    block_type, *ops = block_str.split("_")
    if block_type not in ("ds", "dsa", "ir", "cn"):
        raise ValueError(f"decode_arch_def: block type {block_type!r} in {block_str!r}; the twins build ds, dsa, ir, cn")
    options: dict[str, str] = {}
    skip, act = None, None
    for op in ops:
        if op in ("skip", "noskip"):
            skip = op == "skip"
        elif op.startswith("n") and op[1:] in ACT_CODES:
            act = ACT_CODES[op[1:]]
        elif (match := _OPTION.match(op)) and match[1] in _KNOWN:
            options[match[1]] = match[2]
        else:
            raise ValueError(f"decode_arch_def: option {op!r} in {block_str!r} is not one the twins build")
    args = dict(block_type=block_type, out_chs=int(options["c"]), stride=int(options["s"]), act=act,
                kernel_size=int(options["k"]), exp_ratio=float(options.get("e", 1.0)), se_ratio=float(options.get("se", 0.0)),
                noskip=block_type == "dsa" or skip is False, skip=skip is True)  # fmt: skip
    return args, int(options["r"])


def _scale_stage_depth(stage: list[tuple[dict[str, Any], int]], depth_multiplier: float) -> list[dict[str, Any]]:
    """timm's ``_scale_stage_depth`` with ``depth_trunc='ceil'``: the stage's repeats scaled, the
    extra blocks given to its last definitions first."""
    repeats = [r for _, r in stage]
    num_repeat, scaled = sum(repeats), int(math.ceil(sum(repeats) * depth_multiplier))
    out = []
    for r in reversed(repeats):
        rs = max(1, round(r / num_repeat * scaled))
        out.append(rs)
        num_repeat, scaled = num_repeat - r, scaled - rs
    return [dict(args) for (args, _), n in zip(stage, reversed(out)) for _ in range(n)]


def decode_arch_def(arch_def: Sequence[Sequence[str]], depth_multiplier: float = 1.0) -> list[list[dict[str, Any]]]:
    """timm's ``decode_arch_def``: stages of block strings -> stages of block arguments.

    Args:
      arch_def: stages, each a list of block strings.
      depth_multiplier: scales each stage's repeats (rounded up).

    Examples:
        >>> [len(s) for s in decode_arch_def([["ds_r1_k3_s1_e1_c16"], ["ir_r2_k3_s2_e6_c24"]], 1.2)]
        [2, 3]
    """
    return [_scale_stage_depth([_decode_block_str(b) for b in stage], depth_multiplier) for stage in arch_def]


def resolve_block_args(stages: Sequence[Sequence[dict[str, Any]]], *, stem_size: int, act: str,
                       round_chs_fn: Callable[[float], int] = round_channels, se_from_exp: bool = False,
                       rd_round_fn: Callable[[float], int] = round, drop_path_rate: float = 0.0
                       ) -> tuple[tuple[BlockArgs, ...], ...]:  # fmt: skip
    """What timm's ``EfficientNetBuilder`` makes of decoded stages: channels rounded, the
    stride on each stage's first block, activations defaulted, SE widths, skips, drop-path rates.

    Args:
      stages: from :func:`decode_arch_def`.
      stem_size: channels into the first block.
      act: the network's activation (for blocks without their own).
      round_chs_fn: rounds each block's output channels (the width multiplier).
      se_from_exp: the SE ratio is of the expanded width (MobileNetV3); else of the block's
        input (EfficientNet: the ratio is divided by the expansion).
      rd_round_fn: rounds the SE's reduced width (``round``; MobileNetV3: :func:`round_channels`).
      drop_path_rate: the last block's drop-path rate (block ``i`` of ``n``: ``rate * i / n``).

    Examples:
        >>> (b,), = resolve_block_args(decode_arch_def([["ir_r1_k5_s2_e6_c40_se0.25"]]), stem_size=24, act="silu")
        >>> b.mid_chs, b.rd_chs, b.stride, b.skip
        (144, 6, 2, False)
    """
    total = sum(len(s) for s in stages)
    in_chs, index, out = stem_size, 0, []
    for stage in stages:
        blocks = []
        for j, a in enumerate(stage):
            kind = "ds" if a["block_type"] == "dsa" else a["block_type"]
            out_chs, stride = round_chs_fn(a["out_chs"]), a["stride"] if j == 0 else 1
            mid = make_divisible(in_chs * a["exp_ratio"]) if kind == "ir" else 0
            width = mid if kind == "ir" else in_chs
            ratio = a["se_ratio"] if se_from_exp else a["se_ratio"] / a["exp_ratio"]
            attn = bool(a["se_ratio"]) and kind != "cn"
            skip = (a["skip"] if kind == "cn" else not a["noskip"]) and stride == 1 and in_chs == out_chs
            blocks.append(BlockArgs(kind, in_chs, out_chs, a["kernel_size"], stride, mid, a["act"] or act, skip,
                                    pw_act=a["block_type"] == "dsa", attn=attn, rd_chs=rd_round_fn(width * ratio) if attn else 0,
                                    drop_path=drop_path_rate * index / total))  # fmt: skip
            in_chs, index = out_chs, index + 1
        out.append(tuple(blocks))
    return tuple(out)


def check_network(owner: str, block_args: Sequence[Sequence[BlockArgs]], *, num_classes: int, in_chans: int,
                  act: str, se_layer: SeLayer, se_act: str | None, se_gate: str, drop_rate: float) -> None:  # fmt: skip
    """A network's arguments, checked before anything is built (one clear error each)."""
    for name, value, minimum in (("num_classes", num_classes, 0), ("in_chans", in_chans, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{owner}: {name} must be an int >= {minimum}, got {value!r}")
    if not 0.0 <= drop_rate < 1.0:
        raise ValueError(f"{owner}: drop_rate must be in [0, 1), got {drop_rate!r}")
    for name, value in (("act", act), ("se_act", se_act or act), ("se_gate", se_gate)):
        if value not in ACTIVATIONS:
            raise ValueError(f"{owner}: {name} must be one of {', '.join(ACTIVATIONS)}, got {value!r}")
    if not (se_layer is None or se_layer == "se" or (callable(se_layer) and not isinstance(se_layer, str))):
        raise TypeError(f"{owner}: se_layer must be None, 'se' or a module class such as prcm_jax.AffinePRCM, got {se_layer!r}")
    flat = [b for stage in block_args for b in stage]
    if not flat or not all(isinstance(b, BlockArgs) for b in flat):
        raise TypeError(f"{owner}: block_args must be stages of BlockArgs (at least one block)")
    bad = [f"{b}" for b in flat if b.block_type not in BLOCK_TYPES or b.act not in ACTIVATIONS or not 0.0 <= b.drop_path < 1.0]
    if bad:
        raise ValueError(f"{owner}: blocks with a type not in {sorted(BLOCK_TYPES)}, an unknown act or a drop_path "
                         f"outside [0, 1): {bad[:2]}")  # fmt: skip
    if se_layer == "se" and any(b.attn and b.rd_chs < 1 for b in flat):
        raise ValueError(f"{owner}: se_layer='se' needs rd_chs >= 1 in every block with attn=True")


def build_blocks(block_args: Sequence[Sequence[BlockArgs]], **kwargs: Any) -> nnx.List:
    """The blocks as ``blocks[i][j]`` (timm's ``blocks.i.j``).

    Args:
      block_args: stages of :class:`BlockArgs`.
      **kwargs: ``se_layer``, ``se_act``, ``se_gate``, ``dtype``, ``param_dtype``, ``rngs``.
    """
    return nnx.List([nnx.List([BLOCK_TYPES[b.block_type](b, **kwargs) for b in stage]) for stage in block_args])


def forward_blocks(blocks: nnx.List, x: jax.Array, *, deterministic: bool | None = None, rngs: Any = None) -> jax.Array:
    """Every block in order (``deterministic`` and ``rngs`` reach each: its attention, its drop-path)."""
    for stage in blocks:
        for block in stage:
            x = block(x, deterministic=deterministic, rngs=rngs)
    return x
