"""parity converters on single modules: exactness, strictness, atomicity, sources."""

import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.torch
import torch
from flax import nnx

from parity import (
    CheckpointError,
    ConversionError,
    linen_to_torch,
    nnx_to_torch,
    save_safetensors,
    torch_state_dict,
    torch_to_linen,
    torch_to_nnx,
)
from prcm.catalog import CATALOG
from prcm import MODULES
from seed_modules import SEED

DTYPES = [torch.float32, torch.bfloat16, torch.float16]  # float64 needs JAX x64: test_dtypes.py


def _state(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _assert_identical(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k


def _np_dtype(dtype):
    from parity.arrays import numpy_dtype

    return numpy_dtype(dtype)


@pytest.mark.parametrize("name", MODULES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_torch_nnx_torch_is_bit_identical(name, dtype):
    twin = CATALOG[name]
    torch.manual_seed(0)
    source = twin.build_torch(24, 4, dtype=dtype)
    model = torch_to_nnx(source, twin.build_nnx(24, 4, param_dtype=_np_dtype(dtype)))
    back = nnx_to_torch(model, twin.build_torch(24, 4, dtype=dtype))
    _assert_identical(_state(source), _state(back))


@pytest.mark.parametrize("name", MODULES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_torch_linen_torch_is_bit_identical(name, dtype):
    twin = CATALOG[name]
    torch.manual_seed(0)
    source = twin.build_torch(24, 4, dtype=dtype)
    back = linen_to_torch(torch_to_linen(source), twin.build_torch(24, 4, dtype=dtype))
    _assert_identical(_state(source), _state(back))


@pytest.mark.parametrize("name", MODULES)
def test_nnx_torch_nnx_is_bit_identical(name):
    twin = CATALOG[name]
    model = twin.build_nnx(24, 4, seed=1)
    again = torch_to_nnx(nnx_to_torch(model, twin.build_torch(24, 4)), twin.build_nnx(24, 4, seed=2))
    for a, b in zip(jax.tree.leaves(nnx.state(model, nnx.Param)), jax.tree.leaves(nnx.state(again, nnx.Param))):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", MODULES)
def test_linen_result_matches_init_structure_with_and_without_target(name):
    twin = CATALOG[name]
    source = twin.build_torch(24, 4)
    target = jax.eval_shape(
        lambda: twin.build_linen(24, 4).init(jax.random.key(0), jnp.ones((1, 2, 2, 24)), deterministic=True)
    )
    with_target, without = torch_to_linen(source, target), torch_to_linen(source.state_dict())
    assert jax.tree.structure(with_target) == jax.tree.structure(target) == jax.tree.structure(without)
    for a, b in zip(jax.tree.leaves(with_target), jax.tree.leaves(without)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", MODULES)
def test_seed_checkpoint_runs_in_jax(name, tmp_path):
    torch.manual_seed(0)
    seed_module = SEED[name](32).eval()
    path = tmp_path / "seed.pt"
    torch.save(seed_module.state_dict(), path)
    model = torch_to_nnx(path, CATALOG[name].build_nnx(32))
    x = torch.randn(2, 32, 8, 8)
    y = model(jnp.asarray(x.permute(0, 2, 3, 1).numpy()), deterministic=True)
    expected = seed_module(x).detach().permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(np.asarray(y), expected, rtol=0, atol=8 * 2**-23 * np.abs(expected).max())


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".safetensors"])
def test_checkpoint_files(suffix, tmp_path):
    torch.manual_seed(0)
    source = CATALOG["AffinePRCM"].build_torch(16, 4)
    path = tmp_path / f"w{suffix}"
    if suffix == ".safetensors":
        safetensors.torch.save_file(source.state_dict(), path)
    else:
        torch.save(source.state_dict(), path)
    model = torch_to_nnx(str(path), CATALOG["AffinePRCM"].build_nnx(16, 4))
    np.testing.assert_array_equal(model.shift_proj.kernel[...], source.shift_proj.weight.detach().numpy().T)
    variables = torch_to_linen(path)
    np.testing.assert_array_equal(variables["params"]["basis"], source.basis.detach().numpy())


def test_save_safetensors_loads_strictly_into_torch(tmp_path):
    for source in (CATALOG["SEModule"].build_nnx(16), {"params": torch_to_linen(CATALOG["SEModule"].build_torch(16))["params"]}):
        path = tmp_path / "out.safetensors"
        target = CATALOG["SEModule"].build_torch(16)
        save_safetensors(source, target, path)
        fresh = CATALOG["SEModule"].build_torch(16)
        fresh.load_state_dict(safetensors.torch.load_file(path), strict=True)
        _assert_identical(_state(fresh), torch_state_dict(source, target))


# -- strictness ---------------------------------------------------------------------------


def test_every_problem_is_named_once_and_nothing_is_copied():
    torch.manual_seed(0)
    state = CATALOG["AffinePRCM"].build_torch(16, 4).state_dict()
    state.pop("shift_proj.weight")  # missing
    state["extra.weight"] = torch.zeros(3)  # unexpected
    state["scale_proj.weight"] = torch.zeros(16, 5)  # misshaped
    state["basis"] = state["basis"].double()  # mistyped
    model = CATALOG["AffinePRCM"].build_nnx(16, 4)
    before = jax.tree.map(np.array, nnx.to_pure_dict(nnx.state(model, nnx.Param)))
    with pytest.raises(ConversionError) as info:
        torch_to_nnx(state, model)
    message = str(info.value)
    assert len(info.value.problems) == 4
    assert "'shift_proj/kernel' (4, 16) has no torch key (expected 'shift_proj.weight or shift_proj.kernel')" in message
    assert "torch 'extra.weight' (3,) has no Flax variable" in message
    assert "torch 'scale_proj.weight' (16, 5) vs Flax 'scale_proj/kernel' (4, 16) (which needs torch shape (16, 4))" in message
    assert "dtype mismatch: torch 'basis' torch.float64 vs Flax 'basis' float32" in message
    after = jax.tree.map(np.array, nnx.to_pure_dict(nnx.state(model, nnx.Param)))
    jax.tree.map(np.testing.assert_array_equal, before, after)
    assert isinstance(info.value, ValueError)


def test_channel_mismatch_names_both_shapes_and_leaves_torch_untouched():
    target = CATALOG["PRCM"].build_torch(32)
    before = _state(target)
    with pytest.raises(ConversionError, match=r"torch 'basis' \(8, 32\) vs Flax 'basis' \(8, 64\)"):
        nnx_to_torch(CATALOG["PRCM"].build_nnx(64), target)
    _assert_identical(before, _state(target))
    with pytest.raises(ConversionError, match=r"fc1.weight' \(8, 32\) vs Flax 'fc1/kernel' \(64, 16\)"):
        linen_to_torch(torch_to_linen(CATALOG["SEModule"].build_torch(64)), CATALOG["SEModule"].build_torch(32))


def test_wrong_module_kind_is_refused():
    with pytest.raises(ConversionError) as info:
        torch_to_nnx(CATALOG["PRCM"].build_torch(16), CATALOG["SEModule"].build_nnx(16))
    assert "torch 'basis' (8, 16) has no Flax variable" in str(info.value)
    assert "'fc1/kernel' (16, 4) has no torch key (expected 'fc1.weight or fc1.kernel')" in str(info.value)


def test_linen_without_target_needs_a_family_module():
    with pytest.raises(ValueError, match="pass target="):
        torch_to_linen(torch.nn.Linear(3, 4))


@pytest.mark.parametrize(
    "call,error,match",
    [
        (lambda: torch_to_nnx(42, CATALOG["PRCM"].build_nnx(8)), TypeError, "expected an nn.Module, a state_dict or a checkpoint path"),
        (lambda: torch_to_nnx(CATALOG["PRCM"].build_torch(8), CATALOG["PRCM"].build_torch(8)), TypeError, "expected an nnx.Module, got PRCM"),
        (lambda: nnx_to_torch(CATALOG["PRCM"].build_torch(8), CATALOG["PRCM"].build_torch(8)), TypeError, "expected an nnx.Module as the source"),
        (lambda: nnx_to_torch(CATALOG["PRCM"].build_nnx(8), CATALOG["PRCM"].build_nnx(8)), TypeError, "expected a torch nn.Module as the target"),
        (lambda: linen_to_torch({"basis": np.zeros((8, 8))}, CATALOG["PRCM"].build_torch(8)), TypeError, r"expected linen variables \{'params'"),
        (lambda: linen_to_torch(CATALOG["PRCM"].build_nnx(8), CATALOG["PRCM"].build_torch(8)), TypeError, "use nnx_to_torch"),
        (lambda: torch_to_nnx({"basis": np.zeros((8, 8))}, CATALOG["PRCM"].build_nnx(8)), CheckpointError, r"non-tensor entries 'basis': ndarray"),
        (lambda: torch_to_nnx({"model": {"basis": torch.zeros(8, 8)}}, CATALOG["PRCM"].build_nnx(8)), CheckpointError, r"pass the state_dict inside it \(e.g. ckpt\['model'\]\)"),
    ],
)  # fmt: skip
def test_bad_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()


# -- checkpoint files ---------------------------------------------------------------------


class _Payload:
    def __reduce__(self):
        return (print, ("this code must never run",))


def test_pickle_with_code_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"basis": _Payload()}, f, protocol=2)
    with pytest.raises(CheckpointError, match="weights_only=True"):
        torch_to_linen(path)
    assert "must never run" not in capsys.readouterr().out


def test_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        torch_to_linen(tmp_path / "missing.pt")
    (tmp_path / "w.npz").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="unknown checkpoint format '.npz'"):
        torch_to_linen(tmp_path / "w.npz")
    good = tmp_path / "good.pt"
    torch.save(CATALOG["PRCM"].build_torch(8).state_dict(), good)
    (tmp_path / "cut.pt").write_bytes(good.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="could not be read"):
        torch_to_linen(tmp_path / "cut.pt")
    safe = tmp_path / "good.safetensors"
    safetensors.torch.save_file(CATALOG["PRCM"].build_torch(8).state_dict(), safe)
    (tmp_path / "cut.safetensors").write_bytes(safe.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match="not a valid .safetensors file"):
        torch_to_linen(tmp_path / "cut.safetensors")


def _safetensors_bytes(header: bytes, data: bytes = b"") -> bytes:
    return len(header).to_bytes(8, "little") + header + data


@pytest.mark.parametrize(
    "content",
    [
        _safetensors_bytes(b'{"basis": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}', b"\0" * 8),
        _safetensors_bytes(b'{"basis": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]'),  # bad JSON
        _safetensors_bytes(b'{"basis": {"dtype": "Q99", "shape": [2], "data_offsets": [0, 8]}}', b"\0" * 8),
        _safetensors_bytes(b'{"basis": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}', b"\0" * 8),
        (2**40).to_bytes(8, "little") + b"{}",  # header longer than the file
        b"\x01\x02",
    ],
    ids=["data-short", "bad-json", "unknown-dtype", "shape-vs-offsets", "huge-header", "tiny"],
)
def test_safetensors_headers_are_validated(content, tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    model = CATALOG["PRCM"].build_nnx(2, 2)
    before = np.array(model.basis[...])
    with pytest.raises(CheckpointError, match="not a valid .safetensors file"):
        torch_to_nnx(path, model)
    np.testing.assert_array_equal(model.basis[...], before)


def test_a_folder_is_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="is a folder; expected a checkpoint file"):
        torch_to_linen(tmp_path)
