"""The digits example: porting keeps predictions, gradients agree, data-parallel equals one
device, and the JAX weights go back to PyTorch."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import optax
import pytest
import safetensors.torch
import torch
from flax import nnx

import jax
import jax.numpy as jnp

import parity
import prcm_jax.functional
from prcm_examples import digits

LIMIT = 64  # eps x max|value|, a whole network in float32


@pytest.fixture(scope="module")
def data():
    return digits.load_data()


@pytest.fixture(scope="module")
def trained(data):
    torch.manual_seed(0)
    model = digits.TorchNet("AffinePRCM")
    digits.train_torch(model, data, epochs=2)
    return model


def test_port_keeps_predictions(data, trained, tmp_path):
    path = tmp_path / "digits.safetensors"
    safetensors.torch.save_file(trained.state_dict(), path)
    model = parity.torch_to_nnx(path, digits.Net("AffinePRCM", rngs=nnx.Rngs(1)))
    errors = digits.logits_error(trained, model, data.x_test)
    assert errors["torch"] <= LIMIT and errors["jax"] <= LIMIT, errors
    np.testing.assert_array_equal(digits.torch_logits(trained, data.x_test).argmax(-1),
                                  digits.jax_logits(model, data.x_test).argmax(-1))  # fmt: skip


@pytest.mark.parametrize("block", digits.BLOCKS)
def test_training_gradients_agree(block, data):
    torch.manual_seed(0)
    torch_model = digits.TorchNet(block)
    model = parity.torch_to_nnx(torch_model, digits.Net(block, rngs=nnx.Rngs(1)))
    errors = digits.gradient_agreement(torch_model, model, data.x_train[:64], data.y_train[:64])
    assert set(errors) == {"loss", *(name for name, _ in torch_model.named_parameters())}
    # against the same step in float64: JAX within the gradient contract (64 eps x max|g|);
    # PyTorch's own float32 error is reported beside it (its BatchNorm backward reaches ~100)
    assert max(e["jax"] for e in errors.values()) <= LIMIT, errors
    assert all(np.isfinite(e["torch"]) for e in errors.values())


def test_finetuned_weights_go_back_to_torch(data, trained, tmp_path):
    model = parity.torch_to_nnx(trained, digits.Net("AffinePRCM", rngs=nnx.Rngs(1)))
    digits.train_jax(model, data, epochs=1)
    path = tmp_path / "back.safetensors"
    parity.save_safetensors(model, digits.TorchNet("AffinePRCM"), path)
    back = digits.TorchNet("AffinePRCM")
    back.load_state_dict(safetensors.torch.load_file(path), strict=True)
    np.testing.assert_array_equal(digits.torch_logits(back, data.x_test).argmax(-1),
                                  digits.jax_logits(model, data.x_test).argmax(-1))  # fmt: skip


def test_training_gives_each_block_its_own_dropout_masks(data, monkeypatch):
    """The shared mask belongs to the gradient check only (rngs=key); training draws per block."""
    masks = []
    original = prcm_jax.functional.keep_mask
    monkeypatch.setattr(prcm_jax.functional, "keep_mask", lambda *a: masks.append(np.asarray(original(*a))) or masks[-1])
    model = digits.Net("AffinePRCM", rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)
    model.train()
    x, y = jnp.asarray(digits.channels_last(data.x_train[:64])), jnp.asarray(data.y_train[:64])
    with jax.disable_jit():  # the training step itself, op by op, so the spy sees concrete masks
        digits.train_step(model, optimizer, x, y)
        digits.train_step(model, optimizer, x, y)
    assert len(masks) == 4 and not np.array_equal(masks[0], masks[1])
    assert not np.array_equal(masks[0], masks[2])  # the streams advance from step to step
    masks.clear()
    model(x, jax.random.key(0))
    assert len(masks) == 2 and np.array_equal(masks[0], masks[1])


def test_evaluation_compiles_once(data, monkeypatch):
    traces = []
    original = digits.Net.__call__
    monkeypatch.setattr(digits.Net, "__call__", lambda self, *a: traces.append(1) or original(self, *a))
    model = digits.Net("AffinePRCM", rngs=nnx.Rngs(0))
    x = data.x_test[:37]  # a batch size no other test compiles
    first = digits.jax_logits(model, x)
    for _ in range(2):
        np.testing.assert_array_equal(digits.jax_logits(model, x), first)
    assert len(traces) == 1


SHARDED = textwrap.dedent("""
    import json, jax, numpy as np
    from flax import nnx
    from jax.sharding import Mesh
    from prcm_examples import digits

    data = digits.load_data()
    assert len(jax.devices()) == 4, jax.devices()
    results = {}
    for name, devices in (("one", jax.devices()[:1]), ("four", jax.devices())):
        model = digits.Net("AffinePRCM", rngs=nnx.Rngs(0))
        losses = digits.train_jax(model, data, epochs=1, mesh=Mesh(np.array(devices), ("data",)))
        x, = digits.shard(Mesh(np.array(devices), ("data",)), digits.channels_last(data.x_train[:64]))
        results[name] = (losses, [np.asarray(v) for v in jax.tree.leaves(nnx.state(model, (nnx.Param, nnx.BatchStat)))], len(x.sharding.device_set))
    eps = float(np.finfo(np.float32).eps)
    loss_err = max(abs(a - b) / (eps * abs(b)) for a, b in zip(results["four"][0], results["one"][0]))
    param_err = max(float(np.max(np.abs(a - b)) / (eps * max(np.max(np.abs(b)), 1e-30)))
                    for a, b in zip(results["four"][1], results["one"][1]) if a.dtype.kind == "f")
    print(json.dumps({"loss_err": loss_err, "param_err": param_err, "shards": [results["one"][2], results["four"][2]]}))
""")


def test_data_parallel_step_equals_one_device():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", SHARDED], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["shards"] == [1, 4]
    # one epoch (22 Adam steps): the sharded batch reduces in a different order, nothing more
    assert result["loss_err"] <= LIMIT and result["param_err"] <= 4 * LIMIT, result


def test_command_runs_end_to_end(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "prcm_examples.digits", "--epochs", "1", "--finetune-epochs", "1",
         "--ablation-epochs", "1", "--ablation-blocks", "none,SEModule", "--out", str(tmp_path)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    for text in ("logits error vs float64, jax float32", "train-step gradients", "ablation", "SEModule", "none"):
        assert text in done.stdout
    assert (tmp_path / "digits_torch.safetensors").exists() and (tmp_path / "digits_jax.safetensors").exists()
    bad = subprocess.run([sys.executable, "-m", "prcm_examples.digits", "--epochs", "0"], capture_output=True, text=True)
    assert bad.returncode == 2 and "expected an integer >= 1, got 0" in bad.stderr
