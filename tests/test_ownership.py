"""Converted values own their memory: changing the source after a conversion, in any way a user
would (an in-place op, an optimizer step, a train-mode forward that updates BatchNorm statistics,
``load_state_dict``, rewriting the checkpoint file; on the Flax side a train-mode forward, an
optax step, ``nnx.update``, a donated JAX update), never changes the converted model. JAX arrays
are immutable by contract; a buffer shared with a torch tensor is not. And a conversion holds
one tensor in flight on the host, never a second copy of the model."""

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


FLAX_MUTATIONS = ("train-mode forward", "optimizer step", "nnx.update")


@pytest.mark.parametrize("how", FLAX_MUTATIONS)
def test_nnx_to_torch_is_independent_of_the_nnx_model(how):
    """The torch model keeps its values when the NNX source then trains: a train-mode forward that
    updates BatchNorm statistics, an optax step through ``nnx.Optimizer``, ``nnx.update``."""
    optax = pytest.importorskip("optax")
    from prcm_examples.digits import Net, TorchNet

    model = Net("AffinePRCM", rngs=nnx.Rngs(0))
    torch_model = parity.nnx_to_torch(model, TorchNet("AffinePRCM"))
    before = {k: v.clone() for k, v in torch_model.state_dict().items()}
    x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 8, 8, 1)), jnp.float32)
    stats = _flax_values(nnx.state(model, nnx.BatchStat))
    if how == "train-mode forward":
        model.train()
        model(x)
        assert not _same(stats, _flax_values(nnx.state(model, nnx.BatchStat)))  # the statistics did move
    elif how == "optimizer step":
        model.train()
        optimizer = nnx.Optimizer(model, optax.sgd(0.5), wrt=nnx.Param)
        optimizer.update(model, nnx.grad(lambda m: jnp.sum(m(x) ** 2))(model))
    else:
        nnx.update(model, jax.tree.map(lambda a: a + 1, nnx.state(model, nnx.Any(nnx.Param, nnx.BatchStat))))
    for key, value in torch_model.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0, msg=key)


class _Stack(torch.nn.Module):
    def __init__(self, layers: int, width: int) -> None:
        super().__init__()
        self.layers = torch.nn.ModuleList([torch.nn.Linear(width, width) for _ in range(layers)])


class _NNXStack(nnx.Module):
    def __init__(self, layers: int, width: int, rngs: nnx.Rngs) -> None:
        self.layers = nnx.List([nnx.Linear(width, width, rngs=rngs) for _ in range(layers)])


@pytest.mark.parametrize("direction", ["torch -> nnx", "torch -> linen", "nnx -> torch", "linen -> torch"])
def test_conversion_holds_one_tensor_in_flight_not_a_second_model(direction):
    """Host memory a conversion holds in flight (numpy's copies, which tracemalloc sees, beyond
    what the result keeps) stays at the size of a few tensors, while the model is sixteen of
    them: values are made and put one at a time, never as a second copy of the model."""
    import tracemalloc

    layers, width = 16, 512
    source = _Stack(layers, width)
    nnx_model = _NNXStack(layers, width, nnx.Rngs(0))
    params = nnx.to_pure_dict(nnx.state(nnx_model, nnx.Param))["layers"]
    linen = {"params": {"layers": {str(i): params[i] for i in range(layers)}}}
    abstract, linen_abstract = nnx.eval_shape(lambda: _NNXStack(layers, width, nnx.Rngs(0))), jax.eval_shape(lambda: linen)
    convert = {
        "torch -> nnx": lambda: parity.torch_to_nnx(source, nnx.clone(abstract)),
        "torch -> linen": lambda: parity.torch_to_linen(source, linen_abstract),
        "nnx -> torch": lambda: parity.nnx_to_torch(nnx_model, source),
        "linen -> torch": lambda: parity.linen_to_torch(linen, source),
    }[direction]
    convert()  # once before measuring: what a first call caches (traces, dispatch tables) is not a copy of the model
    tensor = width * width * 4
    tracemalloc.start()
    try:
        result = convert()
        kept, peak = tracemalloc.get_traced_memory()  # kept: host buffers JAX's CPU client adopted as the result's own
    finally:
        tracemalloc.stop()
    extra = peak - kept
    # a tensor and its transposed copy, and one more that JAX's host transfer may release late on a busy machine
    assert extra < 4 * tensor, f"{direction}: {extra / 1e6:.1f} MB in flight at peak; one tensor is {tensor / 1e6:.1f} MB, the model {layers * tensor / 1e6:.1f} MB"
    assert result is not None


@pytest.mark.parametrize("source", ["nnx", "linen"])
def test_a_donated_source_array_converts_nothing(source):
    """A Flax value that cannot be read (donated to a jitted call) is refused before the first
    torch tensor is written: the target is not half-converted."""
    from prcm_examples.digits import Net, TorchNet

    model = Net("AffinePRCM", rngs=nnx.Rngs(0))
    variables = {"params": nnx.to_pure_dict(nnx.state(model, nnx.Param)), "batch_stats": nnx.to_pure_dict(nnx.state(model, nnx.BatchStat))}
    stats = nnx.state(model, nnx.BatchStat) if source == "nnx" else variables["batch_stats"]
    jax.jit(lambda s: jax.tree.map(lambda a: a * 0.9, s), donate_argnums=0)(stats)  # the last values are now deleted
    target = TorchNet("AffinePRCM")
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(parity.ConversionError, match=r"was deleted \(donated to a jitted call\?\)"):
        parity.nnx_to_torch(model, target) if source == "nnx" else parity.linen_to_torch(variables, target)
    for key, value in target.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0, msg=key)


def test_a_model_that_hooks_its_state_dict_is_loaded_through_it():
    """Where a module's hooks decide what load_state_dict does, Flax -> torch goes through it:
    a post-hook runs, and a state_dict hook that hands out new tensors still gets the values."""
    entry = CATALOG["AffinePRCM"]
    source = entry.build_nnx(16, 4)
    seen = []
    post = entry.build_torch(16, 4)
    post.register_load_state_dict_post_hook(lambda module, keys: seen.append(module))
    parity.nnx_to_torch(source, post)
    assert seen == [post]
    copies = entry.build_torch(16, 4)
    copies._register_state_dict_hook(lambda module, state, prefix, local: {k: v.clone() for k, v in state.items()})
    parity.nnx_to_torch(source, copies)
    np.testing.assert_array_equal(copies.basis.detach().numpy(), np.asarray(source.basis[...]))
