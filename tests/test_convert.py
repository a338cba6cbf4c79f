"""parity converters on single modules: exactness, strictness, atomicity, sources, placement,
abstract and meta targets, custom parameters."""

import os
import pickle
import subprocess
import sys
import textwrap

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

DTYPES = [torch.float32, torch.bfloat16, torch.float16]  # float64: test_float64_round_trip_in_x64_mode


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


@pytest.mark.parametrize("name", SEED)
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
        (lambda: torch_to_nnx(CATALOG["PRCM"].build_torch(8, device="meta"), CATALOG["PRCM"].build_nnx(8)), ConversionError, "torch 'basis' is on the meta device"),
        (lambda: torch_to_linen(CATALOG["SEModule"].build_torch(8, device="meta")), ConversionError, "torch 'fc1.weight' is on the meta device"),
        (lambda: nnx_to_torch(nnx.eval_shape(lambda: CATALOG["PRCM"].build_nnx(8)), CATALOG["PRCM"].build_torch(8)), ConversionError, "Flax 'basis' is abstract .* with torch_to_nnx"),
        (lambda: linen_to_torch(jax.eval_shape(lambda: torch_to_linen(CATALOG["PRCM"].build_torch(8))), CATALOG["PRCM"].build_torch(8)), ConversionError, "Flax 'basis' is abstract .* with torch_to_linen"),
        (lambda: torch_to_nnx(CATALOG["PRCM"].build_torch(8, dtype=torch.float64), CATALOG["PRCM"].build_nnx(8, param_dtype=jnp.bfloat16)), ConversionError, r"float64 vs Flax 'basis' bfloat16\n"),
        (lambda: torch_to_nnx(CATALOG["PRCM"].build_torch(8, dtype=torch.float64), CATALOG["PRCM"].build_nnx(8)), ConversionError, r"float64 vs Flax .* float32 \(JAX has 64-bit types off: jax.config.update\('jax_enable_x64', True\)"),
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


# -- float64 ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODULES)
def test_float64_round_trip_in_x64_mode(name):
    entry = CATALOG[name]
    torch.manual_seed(0)
    source = entry.build_torch(24, 4, dtype=torch.float64)
    with jax.enable_x64(True):
        model = torch_to_nnx(source, entry.build_nnx(24, 4, param_dtype=jnp.float64))
        assert {v.dtype for v in jax.tree.leaves(nnx.state(model, nnx.Param))} == {jnp.dtype("float64")}
        back = nnx_to_torch(model, entry.build_torch(24, 4, dtype=torch.float64))
    _assert_identical(_state(source), _state(back))


# -- placement: from host memory to where the target lives -------------------------------------


def _with_devices(code: str) -> None:
    """Run ``code`` in a fresh interpreter with 4 CPU devices (JAX fixes its devices at start-up)."""
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    run = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-4000:]


_MESH = """
    import jax, jax.numpy as jnp, numpy as np, torch
    from flax import nnx
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    import parity, prcm_jax, prcm_torch
    mesh = Mesh(np.array(jax.devices()), ("data",))
    torch.manual_seed(0)
    source = prcm_torch.AffinePRCM(16, 8)
    expected = source.basis.detach().numpy()
"""


def test_uncommitted_parameters_stay_uncommitted_and_take_a_sharded_batch():
    _with_devices(_MESH + """
    model = prcm_jax.AffinePRCM(16, 8, rngs=nnx.Rngs(0))
    parity.torch_to_nnx(source, model)
    assert not model.basis[...].committed and not model.scale_proj.kernel[...].committed
    x = jax.device_put(jnp.ones((8, 4, 4, 16)), NamedSharding(mesh, P("data")))
    y = nnx.jit(lambda m, x: m(x, deterministic=True))(model, x)  # raised "incompatible devices" before
    assert y.sharding.spec == P("data")
    """)


def test_committed_shardings_are_kept_in_nnx_and_linen_targets():
    _with_devices(_MESH + """
    sharded = NamedSharding(mesh, P(None, "data"))
    model = prcm_jax.AffinePRCM(16, 8, rngs=nnx.Rngs(0))
    model.basis.set_value(jax.device_put(model.basis[...], sharded))
    parity.torch_to_nnx(source, model)
    assert model.basis[...].sharding == sharded and np.array_equal(model.basis[...], expected)
    target = parity.torch_to_linen(source)
    for basis in (jax.device_put(target["params"]["basis"], sharded), jax.ShapeDtypeStruct((8, 16), jnp.float32, sharding=sharded)):
        target["params"]["basis"] = basis
        out = parity.torch_to_linen(source, target)["params"]["basis"]
        assert out.sharding == sharded and np.array_equal(out, expected), out.sharding
    """)


def test_sharded_abstract_targets_are_placed_on_the_mesh():
    """nnx.eval_shape under a mesh (with_partitioning) and linen nn.Partitioned boxes."""
    _with_devices(_MESH + """
    from flax import linen
    import prcm_jax.linen
    from prcm_jax.initializers import basis_init
    build = lambda: prcm_jax.AffinePRCM(16, 8, basis_init=nnx.with_partitioning(basis_init, (None, "data")), rngs=nnx.Rngs(0))
    with jax.set_mesh(mesh):
        abstract, again = nnx.eval_shape(build), nnx.eval_shape(build)
        model = parity.torch_to_nnx(source, abstract)
    assert model.basis[...].sharding == NamedSharding(mesh, P(None, "data")), model.basis[...].sharding
    assert np.array_equal(model.basis[...], expected)
    try:
        parity.torch_to_nnx(source, again)  # its abstract mesh, with no mesh set to resolve it
        raise AssertionError("an abstract mesh outside jax.set_mesh must be refused")
    except parity.ConversionError as err:
        assert "is on an abstract mesh" in str(err) and "jax.set_mesh" in str(err), err
    layer = prcm_jax.linen.AffinePRCM(num_basis=8, basis_init=linen.with_partitioning(basis_init, (None, "data")))
    shapes = jax.eval_shape(lambda: layer.init(jax.random.key(0), jnp.ones((1, 2, 2, 16)), deterministic=True))
    with jax.set_mesh(mesh):
        variables = parity.torch_to_linen(source, shapes)
    basis = variables["params"]["basis"]
    assert isinstance(basis, linen.Partitioned) and basis.value.sharding.spec == P(None, "data")
    y = layer.apply(variables, jnp.ones((2, 2, 2, 16)), deterministic=True)
    """)


def test_values_go_from_host_memory_straight_to_their_place(monkeypatch):
    puts = []
    original = jax.device_put
    monkeypatch.setattr(jax, "device_put", lambda x, *a, **k: puts.append(type(x)) or original(x, *a, **k))
    torch_to_nnx(CATALOG["AffinePRCM"].build_torch(16, 4), CATALOG["AffinePRCM"].build_nnx(16, 4))
    torch_to_linen(CATALOG["SEModule"].build_torch(16))
    assert len(puts) == 3 + 4 and set(puts) == {np.ndarray}  # never a device array moved again


# -- abstract (nnx.eval_shape) and meta-device targets ---------------------------------------------


@pytest.mark.parametrize("name", MODULES)
def test_abstract_nnx_target_is_filled(name):
    entry = CATALOG[name]
    torch.manual_seed(0)
    source = entry.build_torch(16, 4).eval()
    abstract = nnx.eval_shape(lambda: entry.build_nnx(16, 4, rngs=nnx.Rngs(0)))
    model = torch_to_nnx(source, abstract)
    params = nnx.state(model, nnx.Param)
    assert all(isinstance(v, jax.Array) for v in jax.tree.leaves(params))
    x = torch.randn(2, 16, 5, 5)
    y = model(jnp.asarray(x.permute(0, 2, 3, 1).numpy()), deterministic=True)
    np.testing.assert_allclose(np.moveaxis(np.asarray(y), -1, 1), source(x).detach().numpy(), rtol=0, atol=2e-6)


@pytest.mark.parametrize("name", [n for n, e in CATALOG.items() if e.dropout])
def test_abstract_target_runs_under_jit_and_in_train_mode(name):
    """RNG state no checkpoint holds starts from the converter's seed, one key per stream."""
    entry = CATALOG[name]

    class Two(nnx.Module):
        def __init__(self, rngs):
            self.a, self.b = entry.build_nnx(16, 4, rngs=rngs), entry.build_nnx(16, 4, rngs=rngs)

    source = torch.nn.ModuleDict({"a": entry.build_torch(16, 4), "b": entry.build_torch(16, 4)})
    model = torch_to_nnx(source, nnx.eval_shape(lambda: Two(nnx.Rngs(0))), seed=3)
    x = jnp.ones((2, 4, 4, 16))
    model.eval()
    np.testing.assert_array_equal(nnx.jit(lambda m, x: m.a(x))(model, x), model.a(x))
    model.train()
    masks = [np.asarray(nnx.jit(lambda m, x: m.a(x))(model, x)), np.asarray(model.b(x))]
    assert not np.array_equal(masks[0], masks[1])  # two streams, two keys
    again = torch_to_nnx(source, nnx.eval_shape(lambda: Two(nnx.Rngs(0))), seed=3)
    again.train()
    np.testing.assert_array_equal(np.asarray(again.a(x)), masks[0])  # the seed decides


@pytest.mark.parametrize("name", MODULES)
@pytest.mark.parametrize("api", ["nnx", "linen"])
def test_meta_torch_skeleton_is_filled(name, api):
    entry = CATALOG[name]
    source = entry.build_nnx(16, 4, seed=3)
    if api == "linen":
        source = torch_to_linen(nnx_to_torch(source, entry.build_torch(16, 4)))
    with torch.device("meta"):
        skeleton = entry.build_torch(16, 4)
    filled = (nnx_to_torch if api == "nnx" else linen_to_torch)(source, skeleton)
    assert filled is skeleton and not any(t.is_meta for t in skeleton.state_dict().values())
    assert all(p.requires_grad and isinstance(p, torch.nn.Parameter) for p in skeleton.parameters())
    reference = (nnx_to_torch if api == "nnx" else linen_to_torch)(source, entry.build_torch(16, 4))
    _assert_identical(_state(skeleton), _state(reference))


class _BnNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.bn = torch.nn.BatchNorm2d(4)
        self.se = CATALOG["AffinePRCM"].build_torch(4)


class _BnTwin(nnx.Module):
    def __init__(self, rngs):
        self.bn = nnx.BatchNorm(4, rngs=rngs)
        self.se = CATALOG["AffinePRCM"].build_nnx(4, rngs=rngs)


def test_meta_network_with_batchnorm_gets_fresh_torch_only_buffers():
    with torch.device("meta"):
        skeleton = _BnNet()
    nnx_to_torch(_BnTwin(nnx.Rngs(0)), skeleton)
    assert skeleton.bn.num_batches_tracked.item() == 0 and skeleton.bn.running_var.device.type == "cpu"


def test_target_weights_are_never_read():
    """Only the target's torch-only buffers (``num_batches_tracked``) are read: no weight is
    copied, moved or turned into NumPy, so converting into a model on the GPU does not stage
    its weights on the host."""
    from torch.overrides import TorchFunctionMode

    target = _BnNet()
    weights = {t.data_ptr() for k, t in target.state_dict().items() if not k.endswith("num_batches_tracked")}
    reads = []

    class Reads(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            name = getattr(func, "__name__", str(func))
            if name not in ("detach", "__get__") and any(isinstance(a, torch.Tensor) and a.data_ptr() in weights for a in args):
                reads.append(name)
            return func(*args, **(kwargs or {}))

    source = _BnTwin(nnx.Rngs(0))
    with Reads():
        state = torch_state_dict(source, target)
    assert reads == [] and state["bn.num_batches_tracked"].data_ptr() != target.bn.num_batches_tracked.data_ptr()


# -- pairing: layer rules for their layers, every other variable by name ---------------------------


class _Scaled(torch.nn.Module):
    def __init__(self, shape=(4,)):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.randn(shape))
        self.norm = torch.nn.LayerNorm(4)
        self.register_buffer("running_scale", torch.randn(shape))


class _Buffer(nnx.Variable):
    """A custom variable type standing for a torch buffer."""


class _NnxScaled(nnx.Module):
    def __init__(self, rngs, shape=(4,)):
        self.scale = nnx.Param(jnp.zeros(shape))
        self.norm = nnx.LayerNorm(4, rngs=rngs)
        self.running_scale = _Buffer(jnp.zeros(shape))


class _Raw(torch.nn.Module):
    """A custom module whose raw parameters carry the names the layer rules rename."""

    def __init__(self):
        super().__init__()
        self.weight, self.bias, self.scale = (torch.nn.Parameter(torch.randn(4)) for _ in range(3))


class _NnxRaw(nnx.Module):
    def __init__(self):
        self.weight, self.bias, self.scale = (nnx.Param(jnp.zeros(4)) for _ in range(3))


@pytest.mark.parametrize("as_state_dict", [False, True])
def test_raw_parameters_named_like_layer_leaves_pair_by_name(as_state_dict):
    source = _Raw()
    model = torch_to_nnx(source.state_dict() if as_state_dict else source, _NnxRaw())
    for name in ("weight", "bias", "scale"):
        np.testing.assert_array_equal(getattr(model, name)[...], getattr(source, name).detach().numpy())
    _assert_identical(_state(source), _state(nnx_to_torch(model, _Raw())))


class _MyLayerNorm(torch.nn.Module):
    """A user's own norm layer (not a subclass of nn.LayerNorm), as in many model repositories."""

    def __init__(self, dim):
        super().__init__()
        self.weight, self.bias = torch.nn.Parameter(torch.randn(dim)), torch.nn.Parameter(torch.randn(dim))


@pytest.mark.parametrize("as_state_dict", [False, True])
def test_a_custom_torch_layer_takes_the_rule_of_its_flax_twin(as_state_dict):
    source = torch.nn.Sequential(_MyLayerNorm(4))
    twin = nnx.Sequential(nnx.LayerNorm(4, rngs=nnx.Rngs(0)))
    model = torch_to_nnx(source.state_dict() if as_state_dict else source, twin)
    np.testing.assert_array_equal(model.layers[0].scale[...], source[0].weight.detach().numpy())
    _assert_identical(_state(source), _state(nnx_to_torch(model, torch.nn.Sequential(_MyLayerNorm(4)))))
    with pytest.raises(ConversionError, match=r"belongs to nn.Linear but Flax 'layers/0/scale' is a 'scale'"):
        torch_to_nnx(torch.nn.Sequential(torch.nn.Linear(4, 4)), twin)  # a built-in layer of another kind still is not


class _Conv1D(torch.nn.Module):
    """A custom layer computing ``x @ weight`` with ``weight`` ``(in, out)`` (GPT-2's ``Conv1D``)."""

    def __init__(self, n):
        super().__init__()
        self.weight, self.bias = torch.nn.Parameter(torch.randn(n, n)), torch.nn.Parameter(torch.randn(n))


class _Vector(nnx.Module):
    def __init__(self):
        self.kernel = nnx.Param(jnp.zeros(4))


def test_a_custom_layer_never_takes_a_transposing_rule():
    """Its weight layout is its own: transposing it as nn.Linear's would be silently wrong when square."""
    with pytest.raises(ConversionError, match=r"torch '0.weight' belongs to _Conv1D but Flax 'layers/0/kernel' is a 'kernel'"):
        torch_to_nnx(torch.nn.Sequential(_Conv1D(4)), nnx.Sequential(nnx.Linear(4, 4, rngs=nnx.Rngs(0))))
    with pytest.raises(ConversionError, match=r"Flax 'kernel' \(4,\) is a 'kernel' paired with torch 'weight' \(4,\)"):
        torch_to_nnx({"weight": torch.ones(4)}, _Vector())  # a 1-D kernel: a message, not an IndexError


def test_subclasses_of_param_follow_the_layer_rules():
    source = torch.nn.Linear(4, 3)
    model = nnx.Linear(4, 3, rngs=nnx.Rngs(0))
    model.kernel = nnx.LoRAParam(model.kernel[...])  # a Param subclass, registered under no name of its own
    torch_to_nnx(source, model)
    np.testing.assert_array_equal(model.kernel[...], source.weight.detach().numpy().T)


@pytest.mark.parametrize("shape", [(), (4,)], ids=["0-d", "1-d"])
def test_plain_parameters_and_custom_variables_convert_by_name(shape):
    source = _Scaled(shape)
    model = torch_to_nnx(source, _NnxScaled(nnx.Rngs(0), shape))
    assert model.scale[...].shape == model.running_scale[...].shape == shape  # a 0-d value stays 0-d
    np.testing.assert_array_equal(model.scale[...], source.scale.detach().numpy())
    np.testing.assert_array_equal(model.running_scale[...], source.running_scale.numpy())
    np.testing.assert_array_equal(model.norm.scale[...], source.norm.weight.detach().numpy())
    back = nnx_to_torch(model, _Scaled(shape))
    _assert_identical(_state(source), _state(back))
    variables = torch_to_linen(source, {"params": {"scale": jnp.zeros(shape), "norm": {"scale": jnp.zeros(4), "bias": jnp.zeros(4)}},
                                        "buffers": {"running_scale": jnp.zeros(shape)}})  # fmt: skip
    assert variables["params"]["scale"].shape == shape
    np.testing.assert_array_equal(variables["buffers"]["running_scale"], source.running_scale.numpy())
    _assert_identical(_state(source), _state(linen_to_torch(variables, _Scaled(shape))))
