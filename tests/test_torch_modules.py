"""prcm_torch: seed compatibility, parameter counts, shapes, bad input."""

import pytest
import torch
from flax import nnx

import prcm_torch
from prcm import CATALOG, MODULES
from seed_modules import SEED, SEED_PARAMS


@pytest.mark.parametrize("name", SEED)
def test_parameter_count_matches_seed_table(name):
    module = CATALOG[name].torch(64)
    assert sum(p.numel() for p in module.parameters()) == SEED_PARAMS[CATALOG[name].seed_name]


@pytest.mark.parametrize("name", SEED)
@pytest.mark.parametrize("channels,config", [(64, 8), (24, 4), (7, 1)])
def test_seed_state_dict_loads_strictly_and_computes_the_same(name, channels, config):
    kw = {"reduction": min(config, channels)} if CATALOG[name].kind == "se" else {"num_basis": config}
    torch.manual_seed(3)
    seed_module = SEED[name](channels, **kw).eval()
    ours = getattr(prcm_torch, name)(channels, **kw).eval()
    ours.load_state_dict(seed_module.state_dict(), strict=True)
    x = torch.randn(2, channels, 9, 5)
    torch.testing.assert_close(ours(x), seed_module(x), rtol=0, atol=0)


@pytest.mark.parametrize("name", SEED)
def test_same_seed_same_initialisation_as_seed(name):
    torch.manual_seed(11)
    seed_module = SEED[name](32)
    torch.manual_seed(11)
    ours = getattr(prcm_torch, name)(32)
    for (k1, v1), (k2, v2) in zip(seed_module.state_dict().items(), ours.state_dict().items(), strict=True):
        assert k1 == k2
        torch.testing.assert_close(v1, v2, rtol=0, atol=0)


@pytest.mark.parametrize("name", MODULES)
def test_meta_skeleton_materialises_through_reset_parameters(name):
    """PyTorch's deferred initialisation (as FSDP does it): build on meta, ``to_empty``, then
    ``reset_parameters`` of every module that has one gives what an eager build draws."""
    with torch.device("meta"):
        skeleton = getattr(prcm_torch, name)(32)
    skeleton.to_empty(device="cpu")
    torch.manual_seed(5)
    for module in skeleton.modules():
        if callable(getattr(module, "reset_parameters", None)):
            module.reset_parameters()
    torch.manual_seed(5)
    eager = getattr(prcm_torch, name)(32)
    for (key, got), want in zip(skeleton.state_dict().items(), eager.state_dict().values(), strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0, msg=key)


@pytest.mark.parametrize("name", ["PRCM", "AffinePRCM"])
def test_dropout_rate_is_the_dropout_layers_rate(name):
    module = getattr(prcm_torch, name)(16, dropout_rate=0.5)
    module.coeff_dropout.p = 0.1
    assert module.dropout_rate == 0.1 and getattr(prcm_torch, name)(16, dropout_rate=0.0).dropout_rate == 0.0
    with pytest.raises(AttributeError):
        module.dropout_rate = 0.2


@pytest.mark.parametrize("name", MODULES)
@pytest.mark.parametrize("variant", range(4))
def test_catalog_reads_back_the_constructor_arguments(name, variant):
    """What ``from_timm`` gives a block's NNX twin: the torch block's own arguments (options
    included), not defaults; and the NNX and linen classes take them as they are."""
    entry = CATALOG[name]
    options = entry.variants[variant % len(entry.variants)]
    sizes = ({"reduction": 2}, {"rd_channels": 3})[variant % 2] if entry.kind == "se" else {"num_basis": 5}
    config = {**sizes, **({"dropout_rate": 0.3} if entry.dropout else {}), **options}
    assert entry.config_of(entry.torch(16, **config)) == config
    assert entry.config_of(entry.torch(16, **{**sizes, **({"dropout_rate": 0.3} if entry.dropout else {}),
                                              **{k: v.upper() for k, v in options.items()}})) == config  # canonical names
    assert entry.nnx(16, **config, rngs=nnx.Rngs(0)).channels == 16 and entry.linen(**config).name is None
    with pytest.raises(TypeError, match=f"config_of needs a prcm_torch.{name}, got torch.nn.modules.linear.Linear"):
        entry.config_of(torch.nn.Linear(2, 2))


@pytest.mark.parametrize("name", MODULES)
@pytest.mark.parametrize("shape", [(1, 16, 1, 1), (3, 16, 33), (2, 16, 3, 4, 5), (2, 16, 7, 9)])
def test_any_number_of_spatial_axes(name, shape):
    module = getattr(prcm_torch, name)(16).eval()
    assert module(torch.randn(shape)).shape == shape


@pytest.mark.parametrize("name", MODULES)
def test_channels_last_and_non_contiguous_inputs_agree(name):
    module = getattr(prcm_torch, name)(16).eval()
    x = torch.randn(2, 16, 6, 7)
    y = module(x)
    torch.testing.assert_close(module(x.to(memory_format=torch.channels_last)), y)
    strided = torch.randn(2, 16, 12, 7)[:, :, ::2]
    torch.testing.assert_close(module(strided), module(strided.contiguous()))


@pytest.mark.parametrize("name", ["PRCM", "AffinePRCM"])
def test_dropout_only_in_train_mode(name):
    module = getattr(prcm_torch, name)(16, dropout_rate=0.5)
    x = torch.randn(4, 16, 5, 5)
    module.eval()
    torch.testing.assert_close(module(x), module(x), rtol=0, atol=0)
    module.train()
    torch.manual_seed(0)
    a = module(x)
    torch.manual_seed(1)
    assert not torch.equal(a, module(x))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("name", MODULES)
def test_dtype_follows_module(name, dtype):
    module = getattr(prcm_torch, name)(16).eval().to(dtype)
    assert module(torch.randn(2, 16, 4, 4, dtype=dtype)).dtype == dtype


# -- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODULES)
@pytest.mark.parametrize(
    "x,error,match",
    [
        (torch.randn(2, 16), ValueError, r"at least one spatial axis.*got shape \(2, 16\)"),
        (torch.randn(2, 8, 4, 4), ValueError, r"expected 16 channels on axis 1.*got 8"),
        (torch.ones(2, 16, 4, 4, dtype=torch.int64), TypeError, "floating-point input, got dtype torch.int64"),
        (torch.randn(2, 16, 4, 4, dtype=torch.float64), TypeError, "input is torch.float64 but the parameters are"),
        (torch.randn(2, 16, 0, 4), ValueError, "spatial axis must be non-empty"),
        (torch.randn(2, 16, 4, 4).numpy(), TypeError, "expected a torch.Tensor input, got ndarray"),
    ],
)
def test_bad_input_is_named(name, x, error, match):
    with pytest.raises(error, match=match):
        getattr(prcm_torch, name)(16)(x)


@pytest.mark.parametrize(
    "cls,args,error,match",
    [
        (prcm_torch.PRCM, (0,), ValueError, "channels must be >= 1, got 0"),
        (prcm_torch.AffinePRCM, (16, 0), ValueError, "num_basis must be >= 1, got 0"),
        (prcm_torch.PRCM, (16, 8, 1.0), ValueError, r"dropout_rate must be in \[0, 1\), got 1.0"),
        (prcm_torch.AffinePRCM, (16, 8, -0.1), ValueError, r"dropout_rate must be in \[0, 1\)"),
        (prcm_torch.PRCMNoDropout, (16.5,), TypeError, "channels must be an int"),
        (prcm_torch.ShiftOnlyPRCM, (16, True), TypeError, "num_basis must be an int"),
        (prcm_torch.SEModule, (3, 4), ValueError, r"channels // reduction must be >= 1, got 3 // 4 = 0"),
        (prcm_torch.SEModule, (16, 0), ValueError, "reduction must be >= 1, got 0"),
    ],
)
def test_bad_constructor_arguments(cls, args, error, match):
    with pytest.raises(error, match=match):
        cls(*args)


@pytest.mark.parametrize(
    "cls,kwargs,error,match",
    [
        (prcm_torch.PRCM, {"gate": "tanh"}, ValueError, "PRCM: gate must be one of 'sigmoid', 'hard_sigmoid', got 'tanh'"),
        (prcm_torch.AffinePRCM, {"gate_layer": torch.nn.Tanh}, TypeError,
         r"AffinePRCM: gate_layer must be one of 'sigmoid', 'hard_sigmoid' or a layer class for one \(nn.Sigmoid, nn.Hardsigmoid"),
        (prcm_torch.ShiftOnlyPRCM, {"gate": "relu"}, ValueError, "ShiftOnlyPRCM: gate must be one of"),
        (prcm_torch.PRCMNoDropout, {"gate": "sigmoid", "gate_layer": "hard_sigmoid"}, ValueError,
         "gate='sigmoid' and gate_layer='hard_sigmoid' disagree"),
        (prcm_torch.PRCMNoDropout, {"dropout_rate": 0.1}, TypeError, "unexpected keyword argument 'dropout_rate' \\(it has no dropout\\)"),
        (prcm_torch.PRCM, {"reduction": 4}, TypeError, "unexpected keyword argument 'reduction'"),
        (prcm_torch.SEModule, {"act_layer": torch.nn.GELU}, TypeError,
         r"SEModule: act_layer must be one of 'relu', 'silu', 'hard_swish' or a layer class for one \(nn.ReLU, nn.SiLU, nn.Hardswish"),
        (prcm_torch.SEModule, {"force_act_layer": "gelu"}, ValueError, "SEModule: act_layer must be one of"),
        (prcm_torch.SEModule, {"reduction": 4, "rd_ratio": 0.25}, ValueError, "give the hidden width one way"),
        (prcm_torch.SEModule, {"rd_round_fn": round}, ValueError, "pass rd_ratio too"),
        (prcm_torch.SEModule, {"rd_ratio": 0.25, "rd_divisor": 8, "rd_round_fn": round}, ValueError, "give one"),
        (prcm_torch.SEModule, {"rd_ratio": 0.0}, ValueError, "rd_ratio must be > 0, got 0.0"),
        (prcm_torch.SEModule, {"rd_ratio": "1/16"}, TypeError, "rd_ratio must be a number"),
        (prcm_torch.SEModule, {"rd_channels": 0}, ValueError, "rd_channels must be >= 1, got 0"),
        (prcm_torch.SEModule, {"rd_ratio": 0.01}, ValueError, r"the hidden width round\(16 \* 0.01\) must be an int >= 1, got 0"),
        (prcm_torch.SEModule, {"rd_ratio": 0.25, "rd_round_fn": lambda v: v}, ValueError, r"rd_round_fn\(16 \* 0.25\) must be an int"),
    ],
)  # fmt: skip
def test_bad_options_are_named_before_any_work(monkeypatch, cls, kwargs, error, match):
    """Raised before a parameter is allocated (torch.empty, which nn.Linear and the basis call, is never reached)."""
    monkeypatch.setattr(torch, "empty", lambda *a, **k: pytest.fail("a parameter was allocated"))
    with pytest.raises(error, match=match):
        cls(16, **kwargs)
