"""Whole networks: every layer type and container convention, both directions, NNX and linen,
from a module, a .pt and a .safetensors file; forward outputs of the converted twins agree."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.torch
import torch
import torch.nn.functional as F
from flax import linen, nnx
from torch import nn

import prcm_jax
import prcm_jax.linen
import prcm_torch
from parity import ConversionError, linen_to_torch, nnx_to_torch, save_safetensors, torch_to_linen, torch_to_nnx
from parity.proof.reference import error_in_eps

EPS32 = float(np.finfo(np.float32).eps)
LIMIT = 16  # eps x max|y| against a float64 torch run: about 4 eps per layer, 4 layers deep


# -- three twins: 2-D CNN (Sequential + ModuleList), 1-D sequence model, 3-D top-level Sequential


class TorchCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                      prcm_torch.AffinePRCM(8, num_basis=4))  # fmt: skip
        self.blocks = nn.ModuleList([
            nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=2), nn.GroupNorm(2, 8), prcm_torch.SEModule(8)),
            nn.Sequential(nn.Conv2d(8, 8, 1), prcm_torch.PRCM(8, num_basis=2)),
        ])  # fmt: skip
        self.head = nn.Linear(8, 5)

    def forward(self, x):
        x = self.features(x)
        for block in self.blocks:
            x = block(x)
        return self.head(x.mean(dim=(2, 3)))


class NnxCNN(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.features = nnx.Sequential(
            nnx.Conv(3, 8, (3, 3), rngs=rngs), nnx.BatchNorm(8, use_fast_variance=False, rngs=rngs), nnx.relu,
            prcm_jax.AffinePRCM(8, num_basis=4, rngs=rngs),
        )  # fmt: skip
        self.blocks = nnx.List([
            nnx.Sequential(nnx.Conv(8, 8, (3, 3), feature_group_count=2, rngs=rngs),
                           nnx.GroupNorm(8, num_groups=2, epsilon=1e-5, rngs=rngs), prcm_jax.SEModule(8, rngs=rngs)),
            nnx.Sequential(nnx.Conv(8, 8, (1, 1), rngs=rngs), prcm_jax.PRCM(8, num_basis=2, rngs=rngs)),
        ])  # fmt: skip
        self.head = nnx.Linear(8, 5, rngs=rngs)

    def __call__(self, x):
        x = self.features(x)
        for block in self.blocks:
            x = block(x)
        return self.head(x.mean(axis=(1, 2)))


class LinenCNN(linen.Module):
    def setup(self):
        self.features = linen.Sequential([
            linen.Conv(8, (3, 3)), linen.BatchNorm(use_running_average=True, use_fast_variance=False), linen.relu,
            prcm_jax.linen.AffinePRCM(4, deterministic=True),
        ])  # fmt: skip
        self.blocks = [
            linen.Sequential([linen.Conv(8, (3, 3), feature_group_count=2), linen.GroupNorm(2, epsilon=1e-5),
                              prcm_jax.linen.SEModule()]),
            linen.Sequential([linen.Conv(8, (1, 1)), prcm_jax.linen.PRCM(2, deterministic=True)]),
        ]  # fmt: skip
        self.head = linen.Dense(5)

    def __call__(self, x):
        x = self.features(x)
        for block in self.blocks:
            x = block(x)
        return self.head(x.mean(axis=(1, 2)))


class TorchSeq(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(20, 6)
        self.conv = nn.Conv1d(6, 6, 3, padding=1)
        self.bn = nn.BatchNorm1d(6)
        self.recal = prcm_torch.ShiftOnlyPRCM(6, num_basis=3)
        self.norm = nn.LayerNorm(6)
        self.out = nn.Linear(6, 4)

    def forward(self, tokens):
        x = self.recal(F.relu(self.bn(self.conv(self.embed(tokens).transpose(1, 2)))))
        return self.out(self.norm(x.transpose(1, 2)))


class NnxSeq(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.embed = nnx.Embed(20, 6, rngs=rngs)
        self.conv = nnx.Conv(6, 6, (3,), rngs=rngs)
        self.bn = nnx.BatchNorm(6, use_fast_variance=False, rngs=rngs)
        self.recal = prcm_jax.ShiftOnlyPRCM(6, num_basis=3, rngs=rngs)
        self.norm = nnx.LayerNorm(6, epsilon=1e-5, rngs=rngs)
        self.out = nnx.Linear(6, 4, rngs=rngs)

    def __call__(self, tokens):
        return self.out(self.norm(self.recal(nnx.relu(self.bn(self.conv(self.embed(tokens)))))))


class LinenSeq(linen.Module):
    @linen.compact
    def __call__(self, tokens):
        x = linen.Embed(20, 6, name="embed")(tokens)
        x = linen.BatchNorm(use_running_average=True, use_fast_variance=False, name="bn")(linen.Conv(6, (3,), name="conv")(x))
        x = prcm_jax.linen.ShiftOnlyPRCM(3, name="recal")(linen.relu(x))
        return linen.Dense(4, name="out")(linen.LayerNorm(epsilon=1e-5, name="norm")(x))


def torch_vol():
    return nn.Sequential(nn.Conv3d(2, 4, 3, padding=1), nn.BatchNorm3d(4), prcm_torch.PRCMNoDropout(4),
                         prcm_torch.AffinePRCMNoDropout(4, num_basis=2))  # fmt: skip


def nnx_vol(rngs):
    return nnx.Sequential(nnx.Conv(2, 4, (3, 3, 3), rngs=rngs), nnx.BatchNorm(4, use_fast_variance=False, rngs=rngs),
                          prcm_jax.PRCMNoDropout(4, rngs=rngs), prcm_jax.AffinePRCMNoDropout(4, num_basis=2, rngs=rngs))  # fmt: skip


def linen_vol():
    return linen.Sequential([linen.Conv(4, (3, 3, 3)), linen.BatchNorm(use_running_average=True, use_fast_variance=False),
                             prcm_jax.linen.PRCMNoDropout(), prcm_jax.linen.AffinePRCMNoDropout(2)])  # fmt: skip


def _image(shape):
    return np.random.default_rng(0).standard_normal(shape).astype(np.float32)


NETS = {  # name: (torch factory, nnx factory, linen factory, torch input, to Flax layout, output back)
    "cnn2d": (TorchCNN, NnxCNN, LinenCNN, _image((2, 3, 9, 7)), lambda x: np.moveaxis(x, 1, -1), lambda y: y),
    "seq1d": (TorchSeq, NnxSeq, LinenSeq, np.random.default_rng(0).integers(0, 20, (3, 11)), lambda x: x, lambda y: y),
    "vol3d": (torch_vol, nnx_vol, linen_vol, _image((2, 2, 5, 4, 6)), lambda x: np.moveaxis(x, 1, -1),
              lambda y: np.moveaxis(y, -1, 1)),
}  # fmt: skip


def _torch_model(name):
    torch.manual_seed(0)
    model = NETS[name][0]()
    model.train()
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for _ in range(3):
            model(torch.as_tensor(NETS[name][3]))
    return model.eval()


def _linen_target(name):
    x = jnp.asarray(NETS[name][4](NETS[name][3]))
    return jax.eval_shape(lambda: NETS[name][2]().init(jax.random.key(0), x))


def _source(model, kind, tmp_path):
    if kind == "module":
        return model
    path = tmp_path / f"model.{kind}"
    if kind == "pt":
        torch.save(model.state_dict(), path)
    else:
        safetensors.torch.save_file(model.state_dict(), path)
    return path


def _check_forward(name, torch_model, flax_out):
    x = torch.as_tensor(NETS[name][3])
    with torch.no_grad():
        want = _double(torch_model)(x if x.dtype == torch.int64 else x.double()).numpy()
        got_torch = torch_model(x).numpy()
    assert error_in_eps(got_torch, want, EPS32) <= LIMIT
    assert error_in_eps(NETS[name][5](np.asarray(flax_out)), want, EPS32) <= LIMIT


def _double(model):
    import copy

    return copy.deepcopy(model).double().eval()


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("kind", ["module", "pt", "safetensors"])
@pytest.mark.parametrize("name", list(NETS))
def test_torch_to_nnx_and_back(name, kind, tmp_path):
    source = _torch_model(name)
    model = torch_to_nnx(_source(source, kind, tmp_path), NETS[name][1](nnx.Rngs(1)))
    model.eval()
    _check_forward(name, source, model(jnp.asarray(NETS[name][4](NETS[name][3]))))
    back = NETS[name][0]()
    nnx_to_torch(model, back)
    want, got = _state(source), _state(back)
    for key in want:
        if key.endswith("num_batches_tracked"):  # torch-only: the target keeps its own count
            assert got[key] == 0 and want[key] == 3
        else:
            assert want[key].dtype == got[key].dtype and torch.equal(want[key], got[key]), key


@pytest.mark.parametrize("kind", ["module", "pt", "safetensors"])
@pytest.mark.parametrize("name", list(NETS))
def test_torch_to_linen_and_back(name, kind, tmp_path):
    source = _torch_model(name)
    target = _linen_target(name)
    variables = torch_to_linen(_source(source, kind, tmp_path), target)
    assert jax.tree.structure(variables) == jax.tree.structure(target)
    assert set(variables) == {"params", "batch_stats"}
    _check_forward(name, source, NETS[name][2]().apply(variables, jnp.asarray(NETS[name][4](NETS[name][3]))))
    back = linen_to_torch(variables, NETS[name][0]())
    for key, value in _state(source).items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(value, back.state_dict()[key]), key


@pytest.mark.parametrize("name", list(NETS))
def test_nnx_to_torch_runs_the_same_function(name, tmp_path):
    model = NETS[name][1](nnx.Rngs(3))
    for path, stat in nnx.to_flat_state(nnx.state(model, nnx.BatchStat)):  # non-trivial statistics
        stat[...] = stat[...] + 0.25 if path[-1] == "mean" else stat[...] * 1.5
    model.eval()
    target = nnx_to_torch(model, NETS[name][0]())
    _check_forward(name, target.eval(), model(jnp.asarray(NETS[name][4](NETS[name][3]))))
    save_safetensors(model, NETS[name][0](), tmp_path / "w.safetensors")
    fresh = NETS[name][0]()
    fresh.load_state_dict(safetensors.torch.load_file(tmp_path / "w.safetensors"), strict=True)
    for key, value in target.state_dict().items():
        assert torch.equal(value, fresh.state_dict()[key]), key


def test_linen_to_torch_from_init():
    x = jnp.asarray(NETS["cnn2d"][4](NETS["cnn2d"][3]))
    variables = LinenCNN().init(jax.random.key(5), x)
    target = linen_to_torch(variables, TorchCNN()).eval()
    _check_forward("cnn2d", target, LinenCNN().apply(variables, x))


# -- strictness on networks ------------------------------------------------------------------


class Renamed(TorchCNN):
    def __init__(self):
        super().__init__()
        self.classifier = self.head
        del self.head


def test_mismatched_names_are_all_named():
    with pytest.raises(ConversionError) as info:
        torch_to_nnx(Renamed(), NnxCNN(nnx.Rngs(0)))
    message = str(info.value)
    assert "Flax 'head/kernel' (8, 5) has no torch key (expected 'head.weight or head.kernel')" in message
    assert "Flax 'head/bias' (5,) has no torch key (expected 'head.bias')" in message
    assert "torch 'classifier.weight' (5, 8) has no Flax variable" in message
    assert len(info.value.problems) == 4


def test_wrong_layer_type_and_unsupported_layers():
    class Transposed(TorchCNN):
        def __init__(self):
            super().__init__()
            self.features[0] = nn.ConvTranspose2d(8, 3, 3, padding=1)

    with pytest.raises(ConversionError, match=r"unsupported torch layer nn.ConvTranspose2d at 'features.0'") as info:
        torch_to_nnx(Transposed(), NnxCNN(nnx.Rngs(0)))
    assert not any("torch 'features.0." in problem for problem in info.value.problems)  # named once, as a layer

    class EmbedAsLinear(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Embedding(8, 5)

    class LinearHead(nnx.Module):
        def __init__(self):
            self.head = nnx.Linear(5, 8, use_bias=False, rngs=nnx.Rngs(0))

    with pytest.raises(ConversionError, match=r"torch 'head.weight' belongs to nn.Embedding but Flax 'head/kernel' is a 'kernel'"):
        torch_to_nnx(EmbedAsLinear(), LinearHead())


def test_ambiguous_keys_are_refused():
    state = {"blocks.0.weight": torch.zeros(3, 2), "blocks_0.weight": torch.zeros(3, 2)}

    class M(nnx.Module):
        def __init__(self):
            self.blocks = nnx.List([nnx.Linear(2, 3, use_bias=False, rngs=nnx.Rngs(0))])

    with pytest.raises(ConversionError, match=r"Flax 'blocks/0/kernel' is ambiguous: it matches torch keys \['blocks.0.weight', 'blocks_0.weight'\]"):
        torch_to_nnx(state, M())


def test_batch_stats_missing_from_target_is_an_error():
    variables = jax.tree.map(np.asarray, torch_to_linen(_torch_model("vol3d"), _linen_target("vol3d")))
    with pytest.raises(ConversionError, match=r"torch '1.running_mean' \(4,\) has no Flax variable"):
        linen_to_torch({"params": variables["params"]}, torch_vol())
