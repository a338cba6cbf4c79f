"""A PRCM network end to end: train in PyTorch, port to Flax NNX, fine-tune in JAX, data-parallel.

The model is a small CNN for scikit-learn's 8x8 digits (shipped with scikit-learn, no
download): two blocks of conv + BatchNorm + ReLU + a recalibration block (none, PRCM,
AffinePRCM, ShiftOnlyPRCM or SEModule), global average pooling and a linear head. It is
written twice with mirrored names (``blocks.0.conv.weight`` <-> ``blocks/0/conv/kernel``), so
``parity`` converts it with no mapping to write.

``python -m prcm_examples.digits`` runs the whole path and prints what it measured:

1. train the PyTorch model and save it as ``.safetensors``;
2. load that file into the NNX model; compare logits (eps units) and accuracy;
3. compare one training step's gradients (train mode, same dropout mask) in both frameworks;
4. fine-tune in JAX with optax, the batch split across every device (``jax.sharding``);
5. write the JAX weights back to ``.safetensors`` and load them into PyTorch;
6. an ablation over the block types, trained in JAX: accuracy, parameters, latency per batch.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import safetensors.torch
import torch
import torch.nn.functional as F
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from torch import nn

import parity
import prcm_jax
import prcm_torch
from bench.timing import measure
from parity.arrays import to_numpy
from parity.proof.reference import error_in_eps
from prcm.cli import at_least, comma_choices
from prcm_jax.models import Modes

__all__ = ["BLOCKS", "TorchNet", "Net", "load_data", "channels_last", "train_torch", "train_step", "shard", "main"]

BLOCKS: tuple[str, ...] = ("none", "PRCM", "AffinePRCM", "ShiftOnlyPRCM", "SEModule")
WIDTHS = (16, 32)
CLASSES = 10
EPS32 = float(np.finfo(np.float32).eps)


# -- the model, twice -----------------------------------------------------------------------


class TorchBlock(nn.Module):
    """conv 3x3 + BatchNorm + ReLU + recalibration, channels-first.

    Args:
      cin: input channels.
      cout: output channels.
      block: recalibration: ``none`` or a class name of :mod:`prcm_torch`.
    """

    def __init__(self, cin: int, cout: int, block: str) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.recal = nn.Identity() if block == "none" else getattr(prcm_torch, block)(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.recal(F.relu(self.bn(self.conv(x))))


class TorchNet(nn.Module):
    """The digits CNN in PyTorch, ``(B, 1, 8, 8)`` -> ``(B, 10)`` logits.

    Args:
      block: recalibration in each block (see :data:`BLOCKS`).

    >>> tuple(TorchNet("AffinePRCM")(torch.zeros(2, 1, 8, 8)).shape)
    (2, 10)
    """

    def __init__(self, block: str = "AffinePRCM") -> None:
        super().__init__()
        self.blocks = nn.ModuleList([TorchBlock(1, WIDTHS[0], block), TorchBlock(WIDTHS[0], WIDTHS[1], block)])
        self.head = nn.Linear(WIDTHS[1], CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(self.blocks[0](x), 2)
        return self.head(self.blocks[1](x).mean(dim=(2, 3)))


class Block(Modes):
    """conv 3x3 + BatchNorm + ReLU + recalibration, channels-last (the twin of :class:`TorchBlock`).

    BatchNorm mirrors torch: momentum 0.9 (torch's 0.1), eps 1e-5, two-pass variance.

    Args:
      cin: input channels.
      cout: output channels.
      block: recalibration: ``none`` or a class name of :mod:`prcm_jax`.
      rngs: parameter and dropout streams.
    """

    def __init__(self, cin: int, cout: int, block: str, *, rngs: nnx.Rngs) -> None:
        self.conv = nnx.Conv(cin, cout, (3, 3), padding="SAME", use_bias=False, rngs=rngs)
        self.bn = nnx.BatchNorm(cout, momentum=0.9, epsilon=1e-5, use_fast_variance=False, rngs=rngs)
        self.recal = None if block == "none" else getattr(prcm_jax, block)(cout, rngs=rngs)

    def __call__(self, x: jax.Array, rngs: jax.Array | None = None) -> jax.Array:
        x = nnx.relu(self.bn(self.conv(x)))
        return x if self.recal is None else self.recal(x, rngs=rngs)


class Net(Modes):
    """The digits CNN in Flax NNX, ``(B, 8, 8, 1)`` -> ``(B, 10)`` logits.

    ``model.train()`` / ``model.eval()`` (or ``nnx.view``) switch BatchNorm and dropout
    together. In train mode each recalibration block draws its masks from its own dropout
    stream; ``rngs=key`` instead gives every block the mask ``keep_mask(key, ...)``, which
    is what the gradient check needs to reproduce the step in PyTorch.

    Args:
      block: recalibration in each block (see :data:`BLOCKS`).
      rngs: parameter and dropout streams.

    >>> Net("AffinePRCM", rngs=nnx.Rngs(0))(jnp.zeros((2, 8, 8, 1))).shape
    (2, 10)
    """

    def __init__(self, block: str = "AffinePRCM", *, rngs: nnx.Rngs) -> None:
        self.blocks = nnx.List([Block(1, WIDTHS[0], block, rngs=rngs), Block(WIDTHS[0], WIDTHS[1], block, rngs=rngs)])
        self.head = nnx.Linear(WIDTHS[1], CLASSES, rngs=rngs)

    def __call__(self, x: jax.Array, rngs: jax.Array | None = None) -> jax.Array:
        x = nnx.max_pool(self.blocks[0](x, rngs), (2, 2), strides=(2, 2))
        return self.head(self.blocks[1](x, rngs).mean(axis=(1, 2)))


# -- data and training ----------------------------------------------------------------------


@dataclass(frozen=True)
class Data:
    """scikit-learn's digits, scaled to [0, 1], channels-first, split 80/20 with a fixed seed."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    def batches(self, batch: int, seed: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Shuffled full batches of the training split (the remainder is dropped)."""
        order = np.random.default_rng(seed).permutation(len(self.x_train))
        for i in range(0, len(order) - batch + 1, batch):
            idx = order[i : i + batch]
            yield self.x_train[idx], self.y_train[idx]


def load_data(seed: int = 0) -> Data:
    """The digits data set (1,797 images of 8x8), as :class:`Data`."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    cut = int(0.8 * len(x))
    return Data(x[order[:cut]], y[order[:cut]], x[order[cut:]], y[order[cut:]])


def channels_last(x: np.ndarray) -> np.ndarray:
    """``(B, C, H, W)`` -> ``(B, H, W, C)``."""
    return np.ascontiguousarray(np.moveaxis(x, 1, -1))


def train_torch(model: TorchNet, data: Data, epochs: int, *, batch: int = 64, lr: float = 3e-3,
                on_epoch: Callable[[], None] | None = None) -> list[float]:  # fmt: skip
    """Adam on cross-entropy; returns the mean loss per epoch (``on_epoch`` runs after each)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    model.train()
    for epoch in range(epochs):
        total, steps = 0.0, 0
        for x, y in data.batches(batch, seed=epoch):
            loss = F.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, steps = total + loss.item(), steps + 1
        losses.append(total / steps)
        if on_epoch:
            on_epoch()
    model.eval()
    return losses


def torch_logits(model: TorchNet, x: np.ndarray) -> np.ndarray:
    """Eval-mode logits of the PyTorch model."""
    model.eval()
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


@nnx.jit
def _logits(model: Net, x: jax.Array) -> jax.Array:
    return model(x)


def jax_logits(model: Net, x: np.ndarray) -> np.ndarray:
    """Eval-mode logits of the NNX model (channels-first input); compiled once per shape."""
    model.eval()
    return np.asarray(_logits(model, jnp.asarray(channels_last(x))))


def loss_fn(model: Net, x: jax.Array, y: jax.Array, key: jax.Array | None = None) -> jax.Array:
    """Mean cross-entropy of the NNX model in its current mode (``key``: one mask for every block)."""
    return optax.softmax_cross_entropy_with_integer_labels(model(x, key), y).mean()


@nnx.jit
def train_step(model: Net, optimizer: nnx.Optimizer, x: jax.Array, y: jax.Array) -> jax.Array:
    """One optax step on the NNX model, each block drawing its own dropout masks; returns the loss."""
    loss, grads = nnx.value_and_grad(loss_fn)(model, x, y)
    optimizer.update(model, grads)
    return loss


def shard(mesh: Mesh, *arrays: np.ndarray) -> list[jax.Array]:
    """Put arrays on the mesh with the batch (first) axis split across its devices."""
    return [jax.device_put(a, NamedSharding(mesh, PartitionSpec("data"))) for a in arrays]


def replicate(mesh: Mesh, *nodes: nnx.Module | nnx.Optimizer) -> None:
    """Replicate every variable of the given models/optimizers on every device of the mesh."""
    state = nnx.state(nodes)
    nnx.update(nodes, jax.device_put(state, NamedSharding(mesh, PartitionSpec())))


def train_jax(model: Net, data: Data, epochs: int, *, batch: int = 64, lr: float = 1e-3,
              mesh: Mesh | None = None, on_epoch: Callable[[], None] | None = None) -> list[float]:  # fmt: skip
    """Adam (optax, ``nnx.Optimizer``) with the batch split across the mesh's devices (all, by
    default), dropout drawn from each block's own stream; returns the mean loss per epoch
    (``on_epoch`` runs after each)."""
    mesh = mesh or Mesh(np.array(jax.devices()), ("data",))
    optimizer = nnx.Optimizer(model, optax.adam(lr), wrt=nnx.Param)
    replicate(mesh, model, optimizer)
    losses = []
    model.train()
    for epoch in range(epochs):
        total, steps = 0.0, 0
        for x, y in data.batches(batch, seed=1000 + epoch):
            xs, ys = shard(mesh, channels_last(x), y)
            total, steps = total + float(train_step(model, optimizer, xs, ys)), steps + 1
        losses.append(total / steps)
        if on_epoch:
            on_epoch()
    model.eval()
    return losses


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(-1) == labels).mean())


def param_count(model: Net) -> int:
    return sum(int(np.prod(v.shape)) for v in jax.tree.leaves(nnx.state(model, nnx.Param)))


# -- the checks -----------------------------------------------------------------------------


def logits_error(torch_model: TorchNet, model: Net, x: np.ndarray) -> dict[str, float]:
    """Errors (eps x max|ref|) of both frameworks' float32 logits against float64 PyTorch."""
    ref = copy.deepcopy(torch_model).double().eval()
    with torch.no_grad():
        want = ref(torch.from_numpy(x).double()).numpy()
    return {"torch": error_in_eps(torch_logits(torch_model, x), want, EPS32),
            "jax": error_in_eps(jax_logits(model, x), want, EPS32)}  # fmt: skip


def gradient_agreement(torch_model: TorchNet, model: Net, x: np.ndarray, y: np.ndarray, seed: int = 0) -> dict[str, dict[str, float]]:
    """One training batch in train mode (batch statistics, the same dropout mask on both sides).

    Returns, per parameter (and ``loss``), the error of PyTorch float32 and of JAX float32
    against the same step in float64 PyTorch, in eps x max|g|: BatchNorm's backward cancels
    terms, so the meaningful question is whether JAX is as close to the exact gradient as
    PyTorch itself is.
    """
    key = jax.random.key(seed)
    block = next((b.recal for b in model.blocks if b.recal is not None and getattr(b.recal, "dropout_rate", 0)), None)
    keep = None
    if block is not None:
        keep = np.asarray(prcm_jax.functional.keep_mask(key, block.dropout_rate, (len(x), block.num_basis)))

    def torch_step(net: TorchNet, dtype: torch.dtype) -> dict[str, np.ndarray]:
        net.train()
        net.zero_grad(set_to_none=True)
        with parity.shared_dropout_mask(net, keep) if keep is not None else contextlib.nullcontext():
            loss = F.cross_entropy(net(torch.from_numpy(x).to(dtype)), torch.from_numpy(y))
        loss.backward()
        net.eval()
        return {"loss": loss.detach().numpy(), **{n: to_numpy(p.grad) for n, p in net.named_parameters()}}

    reference = torch_step(copy.deepcopy(torch_model).double(), torch.float64)
    got_torch = torch_step(torch_model, torch.float32)
    model.train()
    loss, grads = nnx.value_and_grad(loss_fn)(model, jnp.asarray(channels_last(x)), jnp.asarray(y), key)
    model.eval()
    variables = {"params": nnx.to_pure_dict(grads), "batch_stats": nnx.to_pure_dict(nnx.state(model, nnx.BatchStat))}
    got_jax = {"loss": np.asarray(loss), **{k: to_numpy(v) for k, v in parity.torch_state_dict(variables, torch_model).items()}}
    return {name: {side: error_in_eps(got[name], want, EPS32) for side, got in (("torch", got_torch), ("jax", got_jax))}
            for name, want in reference.items()}  # fmt: skip


def latency_ms(model: Net, x: np.ndarray, repeat: int = 200) -> float:
    """Median eval-mode latency of one jitted batch, synchronised (:func:`bench.timing.measure`)."""
    model.eval()
    graphdef, state = nnx.split(model)
    leaves, treedef = jax.tree.flatten(state)
    xs = jnp.asarray(channels_last(x))
    compiled = jax.jit(lambda leaves, x: nnx.merge(graphdef, jax.tree.unflatten(treedef, leaves))(x)).lower(leaves, xs).compile()
    return measure(lambda _: compiled(leaves, xs), jax.block_until_ready, warmup=10, repeat=repeat).median_ms


# -- the command ----------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the whole example and print what it measured."""
    parser = argparse.ArgumentParser(prog="python -m prcm_examples.digits", description=__doc__.split("\n\n")[0])
    parser.add_argument("--block", choices=BLOCKS[1:], default="AffinePRCM", help="recalibration block of the ported model")
    parser.add_argument("--epochs", type=at_least(1), default=15, help="PyTorch training epochs")
    parser.add_argument("--finetune-epochs", type=at_least(1), default=5, help="JAX fine-tuning epochs")
    parser.add_argument("--ablation-epochs", type=at_least(1), default=15, help="JAX training epochs per block type")
    parser.add_argument("--ablation-blocks", type=comma_choices("block", BLOCKS), default=BLOCKS,
                        help="comma-separated block types for the ablation (default: all)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=None, help="folder for the .safetensors files (default: a temporary one)")
    args = parser.parse_args(argv)

    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    console = Console() if sys.stdout.isatty() else Console(width=120)
    out = args.out or Path(tempfile.mkdtemp(prefix="prcm-digits-"))
    out.mkdir(parents=True, exist_ok=True)
    data = load_data()
    mesh = Mesh(np.array(jax.devices()), ("data",))
    console.print(f"digits: {len(data.x_train)} train / {len(data.x_test)} test images; "
                  f"JAX devices: {len(jax.devices())} ({jax.devices()[0].platform}); block: {args.block}")  # fmt: skip
    total = args.epochs + args.finetune_epochs + args.ablation_epochs * len(args.ablation_blocks)
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("training", total=total)

        def progress() -> None:
            bar.advance(task)

        torch.manual_seed(0)
        torch_model = TorchNet(args.block)
        train_torch(torch_model, data, args.epochs, on_epoch=progress)
        checkpoint = out / "digits_torch.safetensors"
        safetensors.torch.save_file(torch_model.state_dict(), checkpoint)

        model = parity.torch_to_nnx(checkpoint, Net(args.block, rngs=nnx.Rngs(0)))
        errors = logits_error(torch_model, model, data.x_test)
        acc_torch = accuracy(torch_logits(torch_model, data.x_test), data.y_test)
        acc_jax = accuracy(jax_logits(model, data.x_test), data.y_test)
        grads = gradient_agreement(torch_model, model, data.x_train[:64], data.y_train[:64])

        train_jax(model, data, args.finetune_epochs, mesh=mesh, on_epoch=progress)
        acc_tuned = accuracy(jax_logits(model, data.x_test), data.y_test)
        exported = out / "digits_jax.safetensors"
        parity.save_safetensors(model, TorchNet(args.block), exported)
        back = TorchNet(args.block)
        back.load_state_dict(safetensors.torch.load_file(exported), strict=True)
        acc_back = accuracy(torch_logits(back, data.x_test), data.y_test)

        ablation = []
        for block in args.ablation_blocks:
            candidate = Net(block, rngs=nnx.Rngs(0))
            train_jax(candidate, data, args.ablation_epochs, mesh=mesh, on_epoch=progress)
            ablation.append((block, accuracy(jax_logits(candidate, data.x_test), data.y_test), param_count(candidate),
                             latency_ms(candidate, data.x_test[:64])))  # fmt: skip

    port = Table(title=f"port: PyTorch-trained {args.block} network -> Flax NNX (from {checkpoint.name})")
    for column in ("check", "value"):
        port.add_column(column)
    port.add_row("logits error vs float64, torch float32", f"{errors['torch']:.2f} eps x max|logit|")
    port.add_row("logits error vs float64, jax float32", f"{errors['jax']:.2f} eps x max|logit|")
    port.add_row("test accuracy torch / jax", f"{acc_torch:.4f} / {acc_jax:.4f}")
    worst = max((k for k in grads if k != "loss"), key=lambda k: grads[k]["jax"])
    port.add_row("train-step loss vs float64, torch / jax", f"{grads['loss']['torch']:.2f} / {grads['loss']['jax']:.2f} eps")
    port.add_row("train-step gradients vs float64, worst, torch / jax",
                 f"{grads[worst]['torch']:.2f} / {grads[worst]['jax']:.2f} eps x max|g| ({worst})")  # fmt: skip
    port.add_row(f"fine-tuned in JAX on {len(jax.devices())} device(s), accuracy", f"{acc_tuned:.4f}")
    port.add_row("written back to .safetensors, accuracy in torch", f"{acc_back:.4f}")
    console.print(port)
    table = Table(title=f"ablation: trained in JAX, {args.ablation_epochs} epochs each")
    for column in ("block", "test accuracy", "parameters", "latency / batch of 64 (ms)"):
        table.add_column(column, justify="right")
    for block, acc, params, ms in ablation:
        table.add_row(block, f"{acc:.4f}", f"{params:,}", f"{ms:.3f}")
    console.print(table)
    console.print(f"checkpoints in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
