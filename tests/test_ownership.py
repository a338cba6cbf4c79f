"""Converted values own their memory: changing the source after a conversion, in any way a user
would (an in-place op, an optimizer step, a train-mode forward that updates BatchNorm statistics,
``load_state_dict``, rewriting the checkpoint file, a donated JAX update), never changes the
converted model. JAX arrays are immutable by contract; a buffer shared with a torch tensor is not."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import parity
from prcm import CATALOG, MODULES

MUTATIONS = ("in-place", "optimizer step", "load_state_dict")


def _mutate(module: torch.nn.Module, how: str) -> None:
    """Change every parameter and buffer of ``module`` in place."""
    if how == "in-place":
        with torch.no_grad():
            for t in (*module.parameters(), *module.buffers()):
                t.add_(1.0) if t.is_floating_point() else t.add_(1)
    elif how == "optimizer step":
        opt = torch.optim.SGD(module.parameters(), lr=0.5)
        for p in module.parameters():
            p.grad = torch.ones_like(p)
        opt.step()
    elif how == "load_state_dict":
        module.load_state_dict({k: v + 1 if v.is_floating_point() else v for k, v in module.state_dict().items()})


def _flax_values(tree) -> list[np.ndarray]:
    return [np.array(v, copy=True) for v in jax.tree.leaves(tree)]


def _same(before: list[np.ndarray], after: list[np.ndarray]) -> bool:
    return len(before) == len(after) and all(np.array_equal(a, b) for a, b in zip(before, after))


@pytest.mark.parametrize("how", MUTATIONS)
@pytest.mark.parametrize("name", MODULES)
@pytest.mark.parametrize("source_kind", ["module", "state_dict"])
def test_torch_to_nnx_is_independent_of_the_source(name, how, source_kind):
    entry = CATALOG[name]
    source = entry.build_torch(16, 4)
    model = parity.torch_to_nnx(source if source_kind == "module" else source.state_dict(), entry.build_nnx(16, 4))
    before = _flax_values(nnx.state(model, nnx.Param))
    _mutate(source, how)
    assert _same(before, _flax_values(nnx.state(model, nnx.Param)))


@pytest.mark.parametrize("how", MUTATIONS)
@pytest.mark.parametrize("name", MODULES)
def test_torch_to_linen_is_independent_of_the_source(name, how):
    entry = CATALOG[name]
    source = entry.build_torch(16, 4)
    variables = parity.torch_to_linen(source)
    before = _flax_values(variables)
    _mutate(source, how)
    assert _same(before, _flax_values(variables))


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_a_checkpoint_rewritten_after_conversion_changes_nothing(tmp_path, suffix):
    entry = CATALOG["AffinePRCM"]
    source = entry.build_torch(16, 4)
    path = tmp_path / f"w{suffix}"
    save = (lambda s, p: __import__("safetensors.torch").torch.save_file(s, p)) if suffix == ".safetensors" else torch.save
    save(source.state_dict(), str(path))
    model = parity.torch_to_nnx(path, entry.build_nnx(16, 4))
    before = _flax_values(nnx.state(model, nnx.Param))
    _mutate(source, "in-place")
    save(source.state_dict(), str(path))
    assert _same(before, _flax_values(nnx.state(model, nnx.Param)))


def test_from_timm_twin_keeps_its_batchnorm_statistics_when_timm_trains():
    timm = pytest.importorskip("timm")
    from prcm_jax.models import from_timm

    model = timm.create_model("resnet18", num_classes=4, block_args=dict(attn_layer=CATALOG["AffinePRCM"].torch)).eval()
    twin = from_timm(model)
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype(np.float32)
    before, logits = _flax_values(nnx.state(twin, nnx.Param, nnx.BatchStat)), np.asarray(twin(x))
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 3, 32, 32))  # updates every running_mean / running_var / num_batches_tracked
    _mutate(model, "optimizer step")
    assert _same(before, _flax_values(nnx.state(twin, nnx.Param, nnx.BatchStat)))
    np.testing.assert_array_equal(np.asarray(twin(x)), logits)


@pytest.mark.parametrize("name", MODULES)
@pytest.mark.parametrize("target", ["nnx", "linen", "state_dict"])
@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_flax_to_torch_is_independent_of_the_source(name, target, device):
    """The torch side does not alias a JAX buffer, whether the values are copied into a built
    model, assigned to a meta-device skeleton or returned as a state_dict: a donated update of
    the JAX state (which lets XLA reuse its buffers) leaves the torch tensors as they were."""
    entry = CATALOG[name]
    model = entry.build_nnx(16, 4)
    params = nnx.state(model, nnx.Param)
    skeleton = entry.build_torch(16, 4, device=device)
    if target == "state_dict":
        tensors = parity.torch_state_dict(model, skeleton)
    else:
        convert = parity.nnx_to_torch if target == "nnx" else parity.linen_to_torch
        tensors = convert(model if target == "nnx" else {"params": nnx.to_pure_dict(params)}, skeleton).state_dict()
    before = {k: v.clone() for k, v in tensors.items()}
    pointers = {a.unsafe_buffer_pointer() for a in jax.tree.leaves(params)}
    assert not pointers & {t.data_ptr() for t in tensors.values()}
    jax.block_until_ready(jax.jit(lambda p: jax.tree.map(lambda a: a * 3 + 1, p), donate_argnums=0)(params))
    for key, value in tensors.items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0, msg=key)


def test_sharded_and_committed_targets_get_their_own_copies():
    """With 4 CPU devices: an uncommitted, a one-device and a sharded target, each converted from
    a torch module that is then changed in place."""
    code = """
    import jax, numpy as np, torch
    from flax import nnx
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    import parity, prcm_jax, prcm_torch
    mesh = Mesh(np.array(jax.devices()), ("data",))
    places = {"uncommitted": None, "one device": jax.devices()[1], "sharded": NamedSharding(mesh, P(None, "data"))}
    for what, place in places.items():
        source = prcm_torch.AffinePRCM(16, 8)
        model = prcm_jax.AffinePRCM(16, 8, rngs=nnx.Rngs(0))
        if place is not None:
            model.basis.set_value(jax.device_put(model.basis[...], place))
        parity.torch_to_nnx(source, model)
        before = np.array(model.basis[...], copy=True)
        with torch.no_grad():
            source.basis.mul_(-3.0)
        assert np.array_equal(np.asarray(model.basis[...]), before), what
    """
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    run = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-4000:]
