"""The family in timm models: every block as EfficientNet's ``se_layer``, timm's keywords
against timm's own blocks, and :func:`prcm_torch.timm.swap_attention` on each model family."""

import copy
import functools

import pytest
import timm
import torch
from timm.layers.cbam import CbamModule
from timm.layers.squeeze_excite import SEModule as TimmSE
from timm.layers.squeeze_excite import SqueezeExciteCl
from timm.layers import activations, activations_me
from timm.models._efficientnet_blocks import SqueezeExcite
from torch import nn

import prcm_torch
from prcm import CATALOG, MODULES
from prcm_torch.options import activation_name, gate_name
from prcm_torch.timm import ATTENTION_SLOTS, swap_attention, swappable

BASIS = [n for n in MODULES if CATALOG[n].kind == "basis"]


def _se_blocks(model: nn.Module) -> dict[str, nn.Module]:
    return {path: m for path, m in model.named_modules() if isinstance(m, swappable())}


# -- se_layer ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODULES)
def test_every_block_is_efficientnets_se_layer(name):
    """timm's builder probes ``se_layer(8, rd_ratio=1.0)``, builds ``se_layer(mid_chs, rd_ratio=0.25 / exp,
    act_layer=nn.SiLU, device=, dtype=)`` and zeroes every nn.Linear's bias: forward and backward run,
    each block sits where timm's SqueezeExcite sits, with its channels (SE: its width and SiLU too)."""
    torch.manual_seed(0)
    model = timm.create_model("efficientnet_b0", se_layer=getattr(prcm_torch, name), num_classes=10)
    reference = {p: m for p, m in timm.create_model("efficientnet_b0", num_classes=10).named_modules() if isinstance(m, SqueezeExcite)}
    blocks = {p: m for p, m in model.named_modules() if isinstance(m, getattr(prcm_torch, name))}
    assert blocks.keys() == reference.keys() and len(blocks) == 16
    for path, block in blocks.items():
        assert block.channels == reference[path].conv_reduce.in_channels
        if name == "SEModule":
            assert (block.rd_channels, block.act_layer, block.gate) == (reference[path].conv_reduce.out_channels, "silu", "sigmoid")
    x = torch.randn(2, 3, 32, 32, requires_grad=True)
    model(x).sum().backward()
    assert x.grad.abs().sum() > 0 and all(p.grad is not None for p in blocks["blocks.1.0.se"].parameters())


def test_mobilenetv3s_se_layer_partial_takes_a_block():
    """MobileNetV3 fixes se_layer = partial(SqueezeExcite, gate_layer='hard_sigmoid', force_act_layer=nn.ReLU,
    rd_round_fn=round_channels); the same partial of SEModule gives timm's widths, activation and gate."""
    from timm.models._efficientnet_builder import decode_arch_def, round_channels
    from timm.models.mobilenetv3 import MobileNetV3

    options = dict(gate_layer="hard_sigmoid", force_act_layer=nn.ReLU, rd_round_fn=round_channels)
    arch = [["ds_r1_k3_s2_e1_c16_se0.25_nre"], ["ir_r1_k5_s2_e4_c40_se0.25"]]  # mobilenetv3_small's first SE blocks
    model = MobileNetV3(decode_arch_def(arch), se_layer=functools.partial(prcm_torch.SEModule, **options), act_layer=nn.Hardswish)
    reference = MobileNetV3(decode_arch_def(arch), se_layer=functools.partial(SqueezeExcite, **options), act_layer=nn.Hardswish)
    got = [(m.channels, m.rd_channels, m.act_layer, m.gate) for m in model.modules() if isinstance(m, prcm_torch.SEModule)]
    want = [(m.conv_reduce.in_channels, m.conv_reduce.out_channels, "relu", "hard_sigmoid")
            for m in reference.modules() if isinstance(m, SqueezeExcite)]  # fmt: skip
    assert got == want and len(got) == 2


@pytest.mark.parametrize("channels", [16, 24, 96, 144, 240, 576])
@pytest.mark.parametrize("rd_ratio", [1 / 16, 0.25, 0.25 / 6, 1 / 3])
def test_se_width_follows_timms_own_blocks(channels, rd_ratio):
    """rd_ratio alone: EfficientNet's SqueezeExcite (round); with rd_divisor: timm.layers.SEModule
    (make_divisible, round_limit 0); with rd_round_fn: that function; rd_channels wins over rd_ratio."""
    from timm.models._efficientnet_builder import round_channels

    width = lambda **kw: prcm_torch.SEModule(channels, **kw).rd_channels  # noqa: E731
    assert width(rd_ratio=rd_ratio) == SqueezeExcite(channels, rd_ratio=rd_ratio).conv_reduce.out_channels
    assert width(rd_ratio=rd_ratio, rd_divisor=8) == TimmSE(channels, rd_ratio=rd_ratio, rd_divisor=8).fc1.out_channels
    assert width(rd_ratio=rd_ratio, rd_round_fn=round_channels) == SqueezeExcite(
        channels, rd_ratio=rd_ratio, rd_round_fn=round_channels).conv_reduce.out_channels  # fmt: skip
    assert width(rd_ratio=rd_ratio, rd_channels=7) == 7 == SqueezeExcite(channels, rd_ratio=rd_ratio, rd_channels=7).conv_reduce.out_channels


def test_reduction_keeps_the_seed_width_and_state_dict():
    module = prcm_torch.SEModule(64)
    assert (module.reduction, module.rd_channels, module.act_layer, module.gate) == (4, 16, "relu", "sigmoid")
    assert prcm_torch.SEModule(64, 8).rd_channels == 8 and prcm_torch.SEModule(64, rd_ratio=0.5).reduction is None


@pytest.mark.parametrize("act_layer", [nn.ReLU, nn.SiLU, nn.Hardswish])
@pytest.mark.parametrize("gate_layer", ["sigmoid", "hard_sigmoid"])
def test_se_computes_what_timms_squeeze_excite_computes(act_layer, gate_layer):
    """The same weights (1x1 convs as linears) give the same output, in float64."""
    torch.manual_seed(0)
    kw = dict(rd_ratio=0.25, act_layer=act_layer, gate_layer=gate_layer, dtype=torch.float64)
    timm_se, ours = SqueezeExcite(40, **kw), prcm_torch.SEModule(40, **kw)
    ours.load_state_dict({k.replace("conv_reduce", "fc1").replace("conv_expand", "fc2"): v.flatten(1) if v.ndim == 4 else v
                          for k, v in timm_se.state_dict().items()})  # fmt: skip
    x = 4 * torch.randn(3, 40, 5, 5, dtype=torch.float64)
    torch.testing.assert_close(ours(x), timm_se(x), rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("name", BASIS)
def test_basis_blocks_take_timms_keywords_and_change_nothing(name):
    """A PRCM block's width is num_basis: timm's reduction and activation keywords are accepted
    (as timm's EcaModule takes act_layer) and the block and its output are what they were."""
    cls = getattr(prcm_torch, name)
    torch.manual_seed(0)
    plain = cls(24, num_basis=4).eval()
    torch.manual_seed(0)
    timm_kw = cls(24, num_basis=4, rd_ratio=0.25, rd_channels=3, rd_divisor=8, rd_round_fn=round, act_layer=nn.GELU,
                  force_act_layer=nn.ReLU).eval()  # fmt: skip
    assert {k: v.shape for k, v in plain.state_dict().items()} == {k: v.shape for k, v in timm_kw.state_dict().items()}
    x = torch.randn(2, 24, 3, 3)
    torch.testing.assert_close(timm_kw(x), plain(x), rtol=0, atol=0)


@pytest.mark.parametrize("name", [n for n in BASIS if CATALOG[n].gated])
def test_hard_sigmoid_gate_is_torchs_hardsigmoid(name):
    torch.manual_seed(0)
    block = getattr(prcm_torch, name)(8, num_basis=2, gate="hard_sigmoid", dtype=torch.float64).eval()
    projection = getattr(block, type(block).scale_name)
    with torch.no_grad():
        projection.weight.mul_(20)  # logits well beyond ±3 as well
    x = torch.randn(4, 8, 3, 3, dtype=torch.float64)
    logits = projection(x.mean((2, 3)) @ block.basis.t())
    scale = nn.Hardsigmoid()(logits)
    shift = block.shift_proj(x.mean((2, 3)) @ block.basis.t()) if block.has_shift else 0.0
    assert (logits.abs() > 3).any() and (logits.abs() < 3).any()
    torch.testing.assert_close(block(x), x * scale[..., None, None] + (shift[..., None, None] if block.has_shift else 0.0))


def test_shift_only_has_no_gate_and_checks_the_keyword():
    assert prcm_torch.ShiftOnlyPRCM(8, gate_layer=nn.Hardsigmoid).gate is None
    with pytest.raises(ValueError, match="gate must be one of 'sigmoid', 'hard_sigmoid', got 'tanh'"):
        prcm_torch.ShiftOnlyPRCM(8, gate="tanh")


@pytest.mark.parametrize(
    "value,name",
    [("sigmoid", "sigmoid"), ("hard_sigmoid", "hard_sigmoid"), ("hardsigmoid", "hard_sigmoid"), (nn.Sigmoid, "sigmoid"),
     (nn.Hardsigmoid, "hard_sigmoid"), (activations.Sigmoid, "sigmoid"), (activations.HardSigmoid, "hard_sigmoid"),
     (activations_me.HardSigmoidMe, "hard_sigmoid"), (functools.partial(nn.Hardsigmoid, inplace=True), "hard_sigmoid")],
)  # fmt: skip
def test_gate_layer_names_and_classes(value, name):
    assert gate_name("PRCM", gate_layer=value) == name == prcm_torch.PRCM(8, gate_layer=value).gate


@pytest.mark.parametrize(
    "value,name",
    [("relu", "relu"), ("swish", "silu"), ("hard_swish", "hard_swish"), (nn.ReLU, "relu"), (nn.SiLU, "silu"),
     (nn.Hardswish, "hard_swish"), (activations.Swish, "silu"), (activations_me.SwishMe, "silu"),
     (activations.HardSwish, "hard_swish"), (activations_me.HardSwishMe, "hard_swish")],
)  # fmt: skip
def test_act_layer_names_and_classes(value, name):
    assert activation_name("SEModule", value) == name == prcm_torch.SEModule(8, act_layer=value).act_layer


# -- swap_attention -------------------------------------------------------------------------------

#: model -> (number of SE-like blocks, their class, their gate)
FAMILIES = {
    "mobilenetv3_large_100": (8, "SqueezeExcite", "hard_sigmoid"),
    "mobilenetv3_small_100": (9, "SqueezeExcite", "hard_sigmoid"),
    "efficientnet_b0": (16, "SqueezeExcite", "sigmoid"),
    "seresnet18": (8, "SEModule", "sigmoid"),
    "regnety_002": (13, "SEModule", "sigmoid"),
}


@pytest.mark.parametrize("model_name", FAMILIES)
def test_swap_replaces_every_se_block_in_place(model_name):
    count, old_class, gate = FAMILIES[model_name]
    model = timm.create_model(model_name, num_classes=10).eval()
    before = _se_blocks(model)
    channels = {p: next(iter(m.parameters())).shape[1] for p, m in before.items()}
    swaps = swap_attention(model, prcm_torch.AffinePRCM, num_basis=4)
    assert [s.path for s in swaps] == list(before) and len(swaps) == count
    for s in swaps:
        assert s.old.endswith("." + old_class) and s.new is model.get_submodule(s.path) and not s.new.training
        assert (s.channels, s.new.channels, s.new.gate, s.new.num_basis) == (channels[s.path],) * 2 + (gate, 4)
    assert not any(isinstance(m, type(next(iter(before.values())))) for m in model.modules())
    x = torch.randn(2, 3, 32, 32, requires_grad=True)
    model.train()(x).sum().backward()
    assert all(p.grad is not None for s in swaps for p in s.new.parameters())


def test_swap_keeps_device_dtype_and_mode_and_takes_any_block():
    model = timm.create_model("mobilenetv3_small_100", num_classes=10).to(torch.float64).train()
    swaps = swap_attention(model, functools.partial(prcm_torch.SEModule, rd_ratio=0.25), gate="sigmoid")
    assert {(s.new.fc1.weight.dtype, s.new.training, s.new.gate) for s in swaps} == {(torch.float64, True, "sigmoid")}
    with torch.device("meta"):
        skeleton = timm.create_model("efficientnet_b0", num_classes=10)
    swaps = swap_attention(skeleton, prcm_torch.ShiftOnlyPRCM)
    assert {s.new.basis.device.type for s in swaps} == {"meta"} and len(swaps) == 16
    again = swap_attention(skeleton, prcm_torch.PRCM)  # the family's own blocks are swappable too
    assert [s.old for s in again] == ["prcm_torch.prcm.ShiftOnlyPRCM"] * 16 and {s.new.gate for s in again} == {"sigmoid"}


def test_swap_reads_eca_channels_from_a_meta_pass():
    """ECA's weights hold no channel count: a meta-device pass reads each block's input."""
    model = timm.create_model("ecaresnet26t", num_classes=10)
    seen = {}
    handles = [m.register_forward_pre_hook(lambda m, a, p=p: seen.__setitem__(p, a[0].shape[1])) for p, m in _se_blocks(model).items()]
    model(torch.randn(2, 3, 32, 32))
    for h in handles:
        h.remove()
    swaps = swap_attention(model, prcm_torch.PRCM)
    assert len(swaps) == 8 and {s.path: s.channels for s in swaps} == seen


class _Block(nn.Module):
    def __init__(self, attn: nn.Module, channels: int = 8) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 1)
        self.attn = attn

    def forward(self, x):
        return self.attn(self.conv(x))


def test_unknown_attention_is_named_and_nothing_changes():
    model = nn.Sequential(_Block(TimmSE(8, rd_channels=2)), _Block(CbamModule(8)), _Block(nn.Identity()))
    state = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match=r"1 attention module\(s\) it cannot replace; nothing was changed .*\n  1.attn "
                                         r"\(timm.layers.cbam.CbamModule\): not a squeeze-and-excitation block"):
        swap_attention(model, prcm_torch.AffinePRCM)
    assert isinstance(model[0].attn, TimmSE) and model.state_dict().keys() == state.keys()
    swaps = swap_attention(model, prcm_torch.AffinePRCM, unknown="keep")
    assert [(s.path, s.new is None, s.reason[:5]) for s in swaps] == [("0.attn", False, ""), ("1.attn", True, "not a")]
    assert isinstance(model[1].attn, CbamModule) and isinstance(model[0].attn, prcm_torch.AffinePRCM)


def test_timms_other_attention_is_named_under_any_attribute():
    """CBAM or GlobalContext where no attention slot name says so is still named, not skipped."""
    from timm.layers import GlobalContext

    holder = nn.Module()
    holder.mixer, holder.post = CbamModule(8), GlobalContext(8)
    model = nn.Sequential(_Block(TimmSE(8)), holder)
    with pytest.raises(ValueError, match=r"2 attention module\(s\) it cannot replace.*\n  1.mixer \(timm.layers.cbam.CbamModule\)"
                                         r".*\n  1.post \(timm.layers.global_context.GlobalContext\)"):  # fmt: skip
        swap_attention(model, prcm_torch.AffinePRCM)
    assert isinstance(model[0].attn, TimmSE)
    swaps = swap_attention(model, prcm_torch.AffinePRCM, unknown="keep")
    assert [(s.path, s.new is None) for s in swaps] == [("0.attn", False), ("1.mixer", True), ("1.post", True)]


def test_a_model_with_only_unknown_attention_says_so_when_kept():
    model = nn.Sequential(_Block(CbamModule(8)))
    with pytest.raises(ValueError, match=r"Sequential has no block it can replace, only 1 attention module\(s\) it does not know "
                                         r"\(nothing was changed\):\n  0.attn \(timm.layers.cbam.CbamModule\)"):  # fmt: skip
        swap_attention(model, prcm_torch.AffinePRCM, unknown="keep")
    assert isinstance(model[0].attn, CbamModule)


def test_channels_last_se_is_refused_by_name():
    model = nn.Sequential(_Block(SqueezeExciteCl(8)), _Block(TimmSE(8)))
    with pytest.raises(ValueError, match=r"0.attn \(timm.layers.squeeze_excite.SqueezeExciteCl\): it works on channels-last"):
        swap_attention(model, prcm_torch.PRCM)


def test_a_gate_the_family_lacks_is_named_unless_a_gate_is_given():
    model = nn.Sequential(_Block(TimmSE(8, gate_layer="tanh")))
    with pytest.raises(ValueError, match=r"0.attn \(timm.layers.squeeze_excite.SEModule\) gates with Tanh; pass gate='sigmoid'"):
        swap_attention(model, prcm_torch.PRCM)
    assert isinstance(model[0].attn, TimmSE)
    assert swap_attention(model, prcm_torch.PRCM, gate="hard_sigmoid")[0].new.gate == "hard_sigmoid"


@pytest.mark.parametrize(
    "args,kwargs,error,match",
    [
        ((timm.create_model("resnet10t", num_classes=2),), {}, ValueError, "found no squeeze-and-excitation block in ResNet"),
        ((nn.Linear(2, 2).state_dict(),), {}, TypeError, "expected a torch nn.Module"),
        ((nn.Sequential(_Block(TimmSE(8))), "AffinePRCM"), {}, TypeError, "block must be a class"),
        ((nn.Sequential(_Block(TimmSE(8))),), {"unknown": "skip"}, ValueError, "unknown must be 'raise' or 'keep'"),
        ((nn.Sequential(_Block(TimmSE(8))),), {"gate": "tanh"}, ValueError, "AffinePRCM: gate must be one of"),
    ],
)  # fmt: skip
def test_bad_arguments(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        swap_attention(*args, **kwargs)


def test_attention_slots_are_where_timm_puts_attention():
    slots = {p.rpartition(".")[2] for p, _ in _se_blocks(timm.create_model("efficientnet_b0")).items()}
    slots |= {p.rpartition(".")[2] for p, _ in _se_blocks(timm.create_model("legacy_seresnet18")).items()}
    assert slots <= set(ATTENTION_SLOTS) and {"se", "se_module"} <= slots
