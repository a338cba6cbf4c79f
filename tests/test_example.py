"""The digits example: porting keeps predictions, gradients agree, data-parallel equals one
device, the JAX weights go back to PyTorch, and the ablation trains both frameworks by one
recipe over several seeds with intervals that match scipy's."""

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import optax
import pytest
import safetensors.torch
import scipy.stats
import torch
from flax import nnx

import jax
import jax.numpy as jnp

import parity
import prcm_jax.functional
from prcm_examples import digits
from fresh import run_fresh, run_module_fresh

LIMIT = 64  # eps x max|value|, a whole network in float32
DOCS = Path(__file__).parent.parent / "docs" / "examples" / "digits.md"
DOC_BLOCKS = re.findall(r"```python\n(.*?)```", DOCS.read_text(), flags=re.S)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """As ``main`` does: batches of 64 8x8 images gain nothing from intra-op threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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


def test_training_compiles_once_per_block(data, monkeypatch):
    """Each seed's model is new, its optimizer too: the step must not recompile for each."""
    traces = []
    original = digits.loss_fn
    monkeypatch.setattr(digits, "loss_fn", lambda *a: traces.append(1) or original(*a))
    for seed in (0, 1):
        digits.train_run("jax", "none", seed, data, epochs=1, batch=48)  # a batch size no other test compiles
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
    """CI's smoke path: the whole command at a test-sized setting (same code as the default)."""
    done = run_module_fresh("prcm_examples.digits", "--epochs", "1", "--finetune-epochs", "1", "--ablation-epochs", "1",
                            "--seeds", "2", "--ablation-blocks", "none,SEModule", "--out", str(tmp_path))  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    for text in ("logits error vs float64, jax float32", "train-step gradients", "2 seeds x 2 frameworks", "framework gap",
                 "minus none", "exclude 0 by chance"):  # fmt: skip
        assert text in done.stdout, text
    assert "latency" not in done.stdout  # the benchmark's business
    rows = re.findall(r"^\W*(none|SEModule|)\W+(?:[\d,]+\W+)?(torch|jax)\W+\d", done.stdout, flags=re.M)
    assert [framework for _, framework in rows] == ["torch", "jax"] * 2, done.stdout
    assert (tmp_path / "digits_torch.safetensors").exists() and (tmp_path / "digits_jax.safetensors").exists()
    saved, meta = digits.load_ablation(tmp_path / "ablation.json")  # what it printed, from the file alone
    assert saved.blocks == ("none", "SEModule") and saved.seeds == (0, 1) and meta["date"]
    assert " ".join(digits.ablation_text(saved).split()) in " ".join(done.stdout.split())


@pytest.mark.parametrize("args, expected", [
    (["--epochs", "0"], "expected an integer >= 1, got 0"),
    (["--seeds", "0"], "expected an integer >= 2, got 0"),
    (["--seeds", "1"], "expected an integer >= 2, got 1"),
    (["--seeds", "five"], "expected an integer >= 2, got 'five'"),
    (["--ablation-blocks", "none,CBAM"], "unknown block CBAM; choose from none, PRCM"),
])  # fmt: skip
def test_command_refuses_bad_arguments_before_any_work(args, expected):
    done = run_module_fresh("prcm_examples.digits", *args)
    assert done.returncode == 2 and expected in done.stderr, done.stderr
    assert done.stdout == ""  # nothing loaded or trained


# -- the ablation ---------------------------------------------------------------------------

_rng = np.random.default_rng(25)
SAMPLES = {
    "textbook": ([1.0, 2.0, 3.0, 4.0, 5.0], [2.0, 2.5, 2.0, 5.0, 4.5]),
    "issue 25, AffinePRCM jax / torch": ([80.6, 73.9, 84.7, 91.7], [95.0, 73.6, 88.9, 91.9]),
    "unequal spread": (list(_rng.normal(95.0, 0.5, 6)), list(_rng.normal(90.0, 6.0, 6))),
    "two runs": ([96.4, 97.2], [95.0, 96.1]),
}


@pytest.mark.parametrize("confidence", [0.95, 0.9])
@pytest.mark.parametrize("name", SAMPLES)
def test_intervals_match_scipy(name, confidence):
    a, b = (np.array(v) for v in SAMPLES[name])
    cases = [  # (ours, the mean, scipy's interval from its t-tests)
        (digits.t_interval(a, confidence), a.mean(), scipy.stats.ttest_1samp(a, 0.0)),
        (digits.paired_difference(a, b, confidence), (a - b).mean(), scipy.stats.ttest_rel(a, b)),
        (digits.welch_difference(a, b, confidence), a.mean() - b.mean(), scipy.stats.ttest_ind(a, b, equal_var=False)),
    ]
    for got, mean, test in cases:
        want = test.confidence_interval(confidence)
        np.testing.assert_allclose([got.mean, got.lo, got.hi], [mean, want.low, want.high], rtol=1e-12, atol=1e-12)


def test_intervals_of_identical_runs_are_points():
    assert digits.t_interval([95.0] * 5) == digits.Estimate(95.0, 95.0, 95.0)
    assert digits.paired_difference([95.0, 96.0], [95.0, 96.0]) == digits.Estimate(0.0, 0.0, 0.0)
    assert digits.welch_difference([95.0, 95.0], [94.0, 94.0]) == digits.Estimate(1.0, 1.0, 1.0)
    assert not digits.Estimate(0.0, 0.0, 0.0).excludes_zero and digits.Estimate(1.0, 1.0, 1.0).excludes_zero


@pytest.mark.parametrize("call, message", [
    (lambda: digits.t_interval([95.0]), "at least two runs"),
    (lambda: digits.t_interval([95.0, float("nan")]), "a finite value per run"),
    (lambda: digits.paired_difference([1.0, 2.0, 3.0], [1.0, 2.0]), "expected paired runs, got 3 and 2"),
    (lambda: digits.ablation(None, seeds=[0], epochs=1), "at least two distinct seeds"),
    (lambda: digits.ablation(None, seeds=[0, 0], epochs=1), "at least two distinct seeds"),
    (lambda: digits.ablation(None, blocks=["SE"], seeds=[0, 1], epochs=1), "unknown block SE"),
    (lambda: digits.train_run("tf", "none", 0, None, epochs=1), "unknown framework 'tf'"),
])  # fmt: skip
def test_ablation_refuses_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def _leaves(model, block):
    """Parameters and batch statistics of either framework's model, as NNX arrays."""
    if isinstance(model, digits.TorchNet):
        model = parity.torch_to_nnx(model, digits.Net(block, rngs=nnx.Rngs(0)))
    return [np.asarray(v) for v in jax.tree.leaves(nnx.state(model, (nnx.Param, nnx.BatchStat)))]


@pytest.mark.parametrize("block", ["none", "ShiftOnlyPRCM"])  # no dropout: one recipe leaves only float rounding
def test_frameworks_train_by_one_recipe(block, data):
    """One epoch from the same seed in each framework ends where the other does, up to float
    rounding: a different learning rate, Adam detail, batch order or BatchNorm momentum moves
    the weights by a sizeable part of what training moves them."""
    trained = {framework: digits.train_run(framework, block, 0, data, epochs=1)[0] for framework in digits.FRAMEWORKS}
    init = _leaves(digits.torch_init(block, 0), block)
    got, want = _leaves(trained["torch"], block), _leaves(trained["jax"], block)
    moved = max(float(np.abs(w - i).max()) for w, i in zip(want, init))
    gap = max(float(np.abs(g - w).max()) for g, w in zip(got, want))
    assert gap <= 0.01 * moved, (gap, moved)


@pytest.fixture(scope="module")
def small_ablation(data):
    return digits.ablation(data, ("none", "PRCM"), seeds=(0, 1, 2), epochs=1)


def test_ablation_has_every_block_in_both_frameworks(small_ablation):
    result = small_ablation
    assert result.blocks == ("none", "PRCM") and result.seeds == (0, 1, 2)
    assert set(result.runs) == {(block, framework) for block in ("none", "PRCM") for framework in ("torch", "jax")}
    assert all(len(runs) == 3 for runs in result.runs.values())
    table, gaps, note = digits.ablation_tables(result)
    cells = {column.header: list(column.cells) for column in table.columns}
    assert cells["block"] == ["none", "", "PRCM", ""] and cells["framework"] == ["torch", "jax"] * 2
    keys = [(block, framework) for block in ("none", "PRCM") for framework in ("torch", "jax")]
    assert cells["accuracy"] == [f"{digits.t_interval(result.accuracy(*key)).clipped(0, 100):.1f}" for key in keys]
    assert cells["per seed"] == [" ".join(f"{a:.1f}" for a in result.accuracy(*key)) for key in keys]
    assert cells["minus none, points"][:2] == ["", ""] and all(c.strip() for c in cells["minus none, points"][2:])
    assert [list(column.cells) for column in gaps.columns][0] == ["none", "PRCM"]
    assert all(len(c.split()) == 3 for c in list(gaps.columns[2].cells))
    assert "exclude 0 by chance" in note and "What it cannot" in note


def test_each_seed_trains_its_own_model(small_ablation):
    for key, runs in small_ablation.runs.items():
        losses = [run.loss for run in runs]
        assert len(set(losses)) == len(losses), (key, losses)
    assert len({run.accuracy for runs in small_ablation.runs.values() for run in runs}) > 1


def test_the_seed_pairs_the_frameworks(small_ablation):
    """Without dropout, a seed's torch and JAX runs are the same run up to rounding: closer to
    each other than to any other seed's run (what the paired interval relies on)."""
    torch_loss, jax_loss = (np.array([run.loss for run in small_ablation.runs["none", f]]) for f in digits.FRAMEWORKS)
    between_seeds = np.abs(torch_loss[:, None] - jax_loss[None, :])[~np.eye(3, dtype=bool)].min()
    assert np.abs(torch_loss - jax_loss).max() < 0.01 * between_seeds, (torch_loss, jax_loss)


def test_a_saved_ablation_loads_back_as_it_was(small_ablation, tmp_path):
    path = digits.save_ablation(small_ablation, tmp_path / "ablation.json")
    loaded, meta = digits.load_ablation(path)
    assert loaded == small_ablation and digits.ablation_text(loaded) == digits.ablation_text(small_ablation)
    assert meta["machine"]["cpu_model"]
    (tmp_path / "other.json").write_text(json.dumps({"seeds": [0, 1]}))
    with pytest.raises(ValueError, match="expected an ablation.json of python -m prcm_examples.digits"):
        digits.load_ablation(tmp_path / "other.json")


def test_the_docs_ablation_is_rendered_from_the_committed_run():
    committed = DOCS.parent.parent / "results" / "digits-ablation.json"
    text = DOCS.read_text()
    assert "<!-- digits:ablation:start -->" in text
    assert digits.render_page(text, committed, source="docs/results/digits-ablation.json") == text, \
        "run python -m prcm_examples.digits render docs/results/digits-ablation.json docs/examples/digits.md"
    result, _ = digits.load_ablation(committed)
    assert result.blocks == digits.BLOCKS and len(result.seeds) == 5 and result.epochs == 10  # the default run


@pytest.mark.parametrize("block", DOC_BLOCKS, ids=[f"block{i}" for i in range(len(DOC_BLOCKS))])
def test_docs_block_runs_on_its_own(block, tmp_path):
    done = run_fresh(block, tmp_path)
    assert done.returncode == 0, f"{block}\n--- stderr ---\n{done.stderr[-3000:]}"
