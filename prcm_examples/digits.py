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
6. an ablation over the block types: each block trained with several seeds in both frameworks
   by the same recipe (a seed fixes the initial weights, the same in both, and the batch
   order); mean test accuracy with a 95% Student-t interval over seeds, each block's
   difference to ``none`` and the torch-minus-JAX gap, with their intervals.

The ablation is small (1,437 training and 360 test images, a few epochs, a few seeds): its
intervals resolve differences of a few points of accuracy, no smaller. Latency is the
benchmark's (``python -m bench``), not this example's. Its runs are saved as ``ablation.json``
in ``--out``; ``python -m prcm_examples.digits render FILE PAGE ...`` writes the ablation's
tables into a page's ``<!-- digits:ablation:start -->`` section from such a file alone.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import functools
import io
import json
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
import scipy.stats
import torch
import torch.nn.functional as F
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from rich.table import Table
from torch import nn

import parity
import prcm_jax
import prcm_torch
from parity.arrays import to_numpy
from parity.proof.reference import error_in_eps
from prcm import pages
from prcm.cli import at_least, comma_choices
from prcm.machine import commit_line, describe
from prcm_jax.models import Modes

__all__ = [
    "BLOCKS", "FRAMEWORKS", "TorchNet", "Net", "load_data", "channels_last", "train_torch", "train_step", "shard",
    "Estimate", "t_interval", "paired_difference", "welch_difference", "torch_init", "train_run", "evaluate", "Run",
    "Ablation", "ablation", "ablation_tables", "ablation_text", "save_ablation", "load_ablation", "render_page", "main",
]  # fmt: skip

BLOCKS: tuple[str, ...] = ("none", "PRCM", "AffinePRCM", "ShiftOnlyPRCM", "SEModule")
FRAMEWORKS: tuple[str, ...] = ("torch", "jax")
WIDTHS = (16, 32)
CLASSES = 10
EPS32 = float(np.finfo(np.float32).eps)
#: The tag of a page's ablation section (:mod:`prcm.pages`).
TAG = "digits:ablation"


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

    Examples:
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

    Examples:
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

    def batches(self, batch: int, seed: int | Sequence[int]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Shuffled full batches of the training split (the remainder is dropped); ``seed`` as
        :func:`numpy.random.default_rng` takes it (``(run, epoch)`` gives each epoch of a run its order)."""
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


def train_torch(model: TorchNet, data: Data, epochs: int, *, batch: int = 64, lr: float = 3e-3, seed: int = 0,
                on_epoch: Callable[[], None] | None = None) -> list[float]:  # fmt: skip
    """Adam on cross-entropy, epoch ``e`` in the batch order ``(seed, e)``; dropout from torch's
    global generator. Returns the mean loss per epoch (``on_epoch`` runs after each)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    model.train()
    for epoch in range(epochs):
        total, steps = 0.0, 0
        for x, y in data.batches(batch, seed=(seed, epoch)):
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


@functools.cache
def _adam(lr: float) -> optax.GradientTransformation:
    """``optax.adam(lr)``, one object per rate: the optimizer's transform is static in
    :func:`train_step`'s cache key, so a fresh one would recompile the step for every model."""
    return optax.adam(lr)


def train_jax(model: Net, data: Data, epochs: int, *, batch: int = 64, lr: float = 1e-3, seed: int = 0,
              mesh: Mesh | None = None, on_epoch: Callable[[], None] | None = None) -> list[float]:  # fmt: skip
    """Adam (optax, ``nnx.Optimizer``) with the batch split across the mesh's devices (all, by
    default), epoch ``e`` in the batch order ``(seed, e)`` (as :func:`train_torch`), dropout
    drawn from each block's own stream; returns the mean loss per epoch (``on_epoch`` runs
    after each)."""
    mesh = mesh or Mesh(np.array(jax.devices()), ("data",))
    optimizer = nnx.Optimizer(model, _adam(lr), wrt=nnx.Param)
    replicate(mesh, model, optimizer)
    losses = []
    model.train()
    for epoch in range(epochs):
        total, steps = 0.0, 0
        for x, y in data.batches(batch, seed=(seed, epoch)):
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


# -- the ablation ---------------------------------------------------------------------------

#: Confidence level of every interval in the ablation.
CONFIDENCE = 0.95
#: The ablation's recipe, the same in both frameworks: Adam, this learning rate, batches of 64.
ABLATION_LR = 3e-3


@dataclass(frozen=True)
class Estimate:
    """A mean (or a mean difference) with its confidence interval; formats as ``mean [lo, hi]``.

    Attributes:
      mean: the estimate.
      lo: lower end of the interval.
      hi: upper end of the interval.

    Examples:
        >>> e = Estimate(1.5, -0.3, 3.3)
        >>> f"{e:+.1f}", e.excludes_zero
        ('+1.5 [-0.3, +3.3]', False)
    """

    mean: float
    lo: float
    hi: float

    @property
    def excludes_zero(self) -> bool:
        """Whether the interval lies on one side of 0 (a difference significant at its level)."""
        return self.lo > 0 or self.hi < 0

    def clipped(self, lo: float, hi: float) -> Estimate:
        """The interval cut to ``[lo, hi]`` (a t interval on an accuracy can pass 100%).

        Examples:
            >>> f"{Estimate(98.0, 95.5, 100.5).clipped(0, 100):.1f}"
            '98.0 [95.5, 100.0]'
        """
        return Estimate(self.mean, max(self.lo, lo), min(self.hi, hi))

    def __format__(self, spec: str) -> str:
        return f"{self.mean:{spec}} [{self.lo:{spec}}, {self.hi:{spec}}]"


def _runs(values: Sequence[float] | np.ndarray) -> np.ndarray:
    runs = np.asarray(values, dtype=np.float64)
    if runs.ndim != 1 or len(runs) < 2 or not np.isfinite(runs).all():
        raise ValueError(f"expected a finite value per run, at least two runs, got {runs.tolist()!r}")
    return runs


def _t(mean: float, se: float, df: float, confidence: float) -> Estimate:
    if se == 0:  # every run gave the same value: no spread to scale t by
        return Estimate(float(mean), float(mean), float(mean))
    lo, hi = scipy.stats.t.interval(confidence, df, loc=mean, scale=se)
    return Estimate(float(mean), float(lo), float(hi))


def t_interval(values: Sequence[float] | np.ndarray, confidence: float = CONFIDENCE) -> Estimate:
    """Mean of independent runs with its Student-t interval (``n - 1`` degrees of freedom).

    Args:
      values: one value per run, at least two.
      confidence: the interval's level.

    Examples:
        >>> e = t_interval([1.0, 2.0, 3.0, 4.0, 5.0])  # mean 3, s.e.m. sqrt(1/2), t(0.975, 4) = 2.7764
        >>> round(e.mean, 4), round(e.lo, 4), round(e.hi, 4)
        (3.0, 1.0368, 4.9632)
    """
    runs = _runs(values)
    return _t(runs.mean(), scipy.stats.sem(runs), len(runs) - 1, confidence)


def paired_difference(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray,
                      confidence: float = CONFIDENCE) -> Estimate:  # fmt: skip
    """Mean of ``a - b`` over paired runs (the same seed on both sides), with its t interval.

    Args:
      a: one value per run.
      b: the paired value of each run of ``a``, in the same order.
      confidence: the interval's level.

    Examples:
        >>> f"{paired_difference([3.0, 5.0, 4.0], [1.0, 2.0, 3.0]):.2f}"  # differences 2, 3, 1: s.e.m. sqrt(1/3), 2 d.f.
        '2.00 [-0.48, 4.48]'
    """
    a, b = _runs(a), _runs(b)
    if a.shape != b.shape:
        raise ValueError(f"expected paired runs, got {len(a)} and {len(b)} values")
    return t_interval(a - b, confidence)


def welch_difference(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray,
                     confidence: float = CONFIDENCE) -> Estimate:  # fmt: skip
    """``mean(a) - mean(b)`` for independent runs, with Welch's t interval (unequal variances,
    Welch-Satterthwaite degrees of freedom).

    Args:
      a: one value per run.
      b: one value per run of the other group.
      confidence: the interval's level.

    Examples:
        >>> f"{welch_difference([3.0, 5.0, 4.0], [1.0, 2.0, 3.0]):.2f}"  # s.e. sqrt(2/3), 4 d.f.: 2 -+ 2.7764 x 0.8165
        '2.00 [-0.27, 4.27]'
    """
    a, b = _runs(a), _runs(b)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)) if va + vb > 0 else 1.0
    return _t(a.mean() - b.mean(), np.sqrt(va + vb), df, confidence)


def torch_init(block: str, seed: int) -> TorchNet:
    """The initial model of a run: ``torch.manual_seed(seed)``, then built. Both frameworks start
    from it (JAX converts it), and in PyTorch the generator goes on to draw that run's dropout masks."""
    torch.manual_seed(seed)
    return TorchNet(block)


def train_run(framework: str, block: str, seed: int, data: Data, *, epochs: int, lr: float = ABLATION_LR, batch: int = 64,
              mesh: Mesh | None = None,
              on_epoch: Callable[[], None] | None = None) -> tuple[TorchNet | Net, list[float]]:  # fmt: skip
    """Train one model by the ablation's recipe; returns it (in eval mode) and its mean loss per epoch.

    Both frameworks start from :func:`torch_init` (JAX: converted with :func:`parity.torch_to_nnx`)
    and see the same batches in the same order (``(seed, epoch)``); each draws its own dropout
    masks (PyTorch from its generator after the init, JAX from ``nnx.Rngs(seed)``).

    Args:
      framework: ``"torch"`` or ``"jax"``.
      block: recalibration in each block (see :data:`BLOCKS`).
      seed: initial weights, batch order and dropout masks.
      data: the digits.
      epochs: passes over the training split.
      lr: Adam's learning rate.
      batch: images per step.
      mesh: JAX's devices (default: all).
      on_epoch: called after each epoch.
    """
    if framework not in FRAMEWORKS:
        raise ValueError(f"unknown framework {framework!r}; choose from {', '.join(FRAMEWORKS)}")
    model = torch_init(block, seed)
    recipe = dict(batch=batch, lr=lr, seed=seed, on_epoch=on_epoch)
    if framework == "torch":
        return model, train_torch(model, data, epochs, **recipe)
    twin = parity.torch_to_nnx(model, Net(block, rngs=nnx.Rngs(seed)))
    return twin, train_jax(twin, data, epochs, mesh=mesh, **recipe)


def evaluate(model: TorchNet | Net, data: Data) -> float:
    """Eval-mode accuracy of either framework's model on the test split."""
    logits = torch_logits(model, data.x_test) if isinstance(model, TorchNet) else jax_logits(model, data.x_test)
    return accuracy(logits, data.y_test)


@dataclass(frozen=True)
class Run:
    """One trained model: test accuracy and the mean training loss of its last epoch."""

    accuracy: float
    loss: float


@dataclass(frozen=True)
class Ablation:
    """Every run of an ablation: ``runs[block, framework]`` holds one :class:`Run` per seed, in ``seeds`` order.

    Attributes:
      seeds: the seeds, the same for every block and framework.
      epochs: training epochs of every run.
      lr: Adam's learning rate of every run.
      train_images: size of the training split.
      test_images: size of the test split (one image is ``100 / test_images`` points of accuracy).
      runs: the runs.
    """

    seeds: tuple[int, ...]
    epochs: int
    lr: float
    train_images: int
    test_images: int
    runs: dict[tuple[str, str], tuple[Run, ...]]

    @property
    def blocks(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(block for block, _ in self.runs))

    def accuracy(self, block: str, framework: str) -> np.ndarray:
        """Test accuracy per seed, in percent."""
        return np.array([100 * run.accuracy for run in self.runs[block, framework]])


def ablation(data: Data, blocks: Sequence[str] = BLOCKS, seeds: Sequence[int] = range(5), *, epochs: int,
             lr: float = ABLATION_LR, mesh: Mesh | None = None,
             on_epoch: Callable[[], None] | None = None) -> Ablation:  # fmt: skip
    """Train every block with every seed in both frameworks (:func:`train_run`).

    Args:
      data: the digits.
      blocks: block types (see :data:`BLOCKS`).
      seeds: at least two distinct seeds.
      epochs: training epochs of every run.
      lr: Adam's learning rate of every run.
      mesh: JAX's devices (default: all).
      on_epoch: called after each epoch of each run.
    """
    seeds = tuple(seeds)
    if len(set(seeds)) < 2 or len(set(seeds)) != len(seeds):
        raise ValueError(f"expected at least two distinct seeds, got {seeds}")
    if unknown := [b for b in blocks if b not in BLOCKS]:
        raise ValueError(f"unknown block {', '.join(unknown)}; choose from {', '.join(BLOCKS)}")

    def run(framework: str, block: str, seed: int) -> Run:
        model, losses = train_run(framework, block, seed, data, epochs=epochs, lr=lr, mesh=mesh, on_epoch=on_epoch)
        return Run(evaluate(model, data), losses[-1])

    runs = {(block, framework): tuple(run(framework, block, seed) for seed in seeds)
            for block in blocks for framework in FRAMEWORKS}  # fmt: skip
    return Ablation(seeds, epochs, lr, len(data.y_train), len(data.y_test), runs)


def _marked(estimate: Estimate) -> str:
    return f"{estimate:+.1f}" + (" *" if estimate.excludes_zero else "  ")


def _accuracy_table(result: Ablation, baseline: str) -> tuple[Table, list[Estimate]]:
    """Accuracy per block and framework; each block minus ``baseline`` (Welch: even at the same
    seed a block's initial weights differ from the baseline's). Returns the differences too."""
    table = Table(title=f"ablation: test accuracy (%), {len(result.seeds)} seeds x {len(FRAMEWORKS)} frameworks, "
                        f"one recipe (Adam lr {result.lr:g}, {_epochs(result)}, batch 64), "
                        "mean [95% t interval over seeds, cut at 100]")  # fmt: skip
    for column in ("block", "parameters", "framework", "accuracy", f"minus {baseline}, points", "per seed"):
        table.add_column(column, justify="right")
    differences = []
    for block in result.blocks:
        params = param_count(nnx.eval_shape(lambda: Net(block, rngs=nnx.Rngs(0))))
        for framework in FRAMEWORKS:
            acc = result.accuracy(block, framework)
            versus = ""
            if baseline in result.blocks and block != baseline:
                differences.append(welch_difference(acc, result.accuracy(baseline, framework)))
                versus = _marked(differences[-1])
            first = framework == FRAMEWORKS[0]
            mean = t_interval(acc).clipped(0, 100)
            table.add_row(block if first else "", f"{params:,}" if first else "", framework, f"{mean:.1f}", versus,
                          " ".join(f"{a:.1f}" for a in acc), end_section=framework == FRAMEWORKS[-1])  # fmt: skip
    return table, differences


def _gap_table(result: Ablation) -> tuple[Table, dict[str, Estimate]]:
    """torch minus JAX per block, paired by seed. Returns the gaps too."""
    table = Table(title="framework gap: torch minus JAX, points, paired by seed (the same initial weights and batch "
                        "order; each framework draws its own dropout masks), mean [95% t interval]")  # fmt: skip
    for column in ("block", "torch - jax", "per seed"):
        table.add_column(column, justify="right")
    gaps = {}
    for block in result.blocks:
        torch_acc, jax_acc = (result.accuracy(block, framework) for framework in FRAMEWORKS)
        gaps[block] = paired_difference(torch_acc, jax_acc)
        table.add_row(block, _marked(gaps[block]), " ".join(f"{d:+.1f}" for d in torch_acc - jax_acc))
    return table, gaps


def _epochs(result: Ablation) -> str:
    return f"{result.epochs} epoch{'s' * (result.epochs != 1)}"


def _half_widths(estimates: Sequence[Estimate]) -> str:
    widths = [(e.hi - e.lo) / 2 for e in estimates]
    return f"+-{min(widths):.1f} to +-{max(widths):.1f} points"


def ablation_tables(result: Ablation, baseline: str = "none") -> tuple[Table, Table, str]:
    """The ablation as a reader sees it: accuracy per block and framework, the gap between the
    frameworks per block, and a note on what these intervals can and cannot show.

    Args:
      result: the runs.
      baseline: the block the others are compared with (no comparison when it was not run).
    """
    table, differences = _accuracy_table(result, baseline)
    gap_table, gaps = _gap_table(result)
    off = [block for block, gap in gaps.items() if gap.excludes_zero]
    intervals = len(differences) + len(gaps)
    note = [
        f"* the interval excludes 0. {len(result.seeds)} seeds each, {result.test_images} test images (one image is "
        f"{100 / result.test_images:.2f} points), {_epochs(result)} on {result.train_images:,} images: a small experiment.",
        "What it can show: differences of several points"
        + (f" (the intervals on a block minus {baseline} are {_half_widths(differences)} wide)." if differences else "."),
        "What it cannot: a smaller effect, or an order among blocks whose intervals overlap (more --seeds narrow the "
        f"intervals as 1/sqrt(n)); where blocks stand after longer training (a block that learns more slowly ranks "
        f"lower after {_epochs(result)} than later: see --ablation-epochs); what a block does in a larger network.",
        f"Of these {intervals} intervals at 95%, about {intervals / 20:.1f} exclude 0 by chance alone.",
        f"torch and JAX differ beyond the seeds' spread for {', '.join(off)}: with one recipe that is a defect to find "
        "(or a chance exclusion: rerun with more --seeds)."
        if off else f"No block's torch - JAX gap excludes 0 (they are resolved to {_half_widths(list(gaps.values()))}).",
    ]  # fmt: skip
    return table, gap_table, "\n".join(note)


def ablation_text(result: Ablation, width: int = 120) -> str:
    """:func:`ablation_tables` as plain text, as the command prints it on a ``width``-column terminal."""
    from rich.console import Console

    console = Console(file=io.StringIO(), width=width, record=True, color_system=None)
    for part in ablation_tables(result):
        console.print(part)
    return console.export_text()


def save_ablation(result: Ablation, path: Path | str, argv: Sequence[str] | None = None) -> Path:
    """Write every run of ``result`` and where it ran (command, versions, machine, commit, date) as JSON."""
    command = " ".join(["python -m prcm_examples.digits", *(sys.argv[1:] if argv is None else argv)])
    versions = {"python": sys.version.split()[0], "torch": torch.__version__, "jax": jax.__version__, "numpy": np.__version__}
    data = {"meta": {"command": command, "versions": versions, **describe()}, **dataclasses.asdict(result),
            "runs": [{"block": b, "framework": f, "runs": [dataclasses.asdict(r) for r in runs]} for (b, f), runs in result.runs.items()]}  # fmt: skip
    path = Path(path)
    path.write_text(json.dumps(data, indent=1) + "\n")
    return path


def load_ablation(path: Path | str) -> tuple[Ablation, dict]:
    """A saved ablation and its ``meta``, checked.

    Raises:
      ValueError: not a file of :func:`save_ablation`, naming the file.
    """
    try:
        data = json.loads(Path(path).read_text())
        runs = {(r["block"], r["framework"]): tuple(Run(float(run["accuracy"]), float(run["loss"])) for run in r["runs"])
                for r in data["runs"]}  # fmt: skip
        result = Ablation(tuple(int(s) for s in data["seeds"]), int(data["epochs"]), float(data["lr"]), int(data["train_images"]),
                          int(data["test_images"]), runs)  # fmt: skip
        if not runs or any(len(r) != len(result.seeds) for r in runs.values()) or len(result.seeds) < 2:
            raise ValueError(f"expected one run per seed ({len(result.seeds)}, at least 2) for each block and framework")
        return result, dict(data.get("meta") or {})
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"{path}: expected an ablation.json of python -m prcm_examples.digits; {type(err).__name__}: {err}") from None


def render_page(text: str, path: Path | str, source: str | None = None) -> str:
    """``text`` (a markdown page) with its ablation sections (:data:`TAG`) written from a saved ablation.

    Args:
      text: the page.
      path: an ``ablation.json``.
      source: how the page names the file (default: ``path`` as given).
    """
    result, meta = load_ablation(path)
    where = commit_line(meta.get("commit"))
    block = (f"```text\n{ablation_text(result).rstrip()}\n```\n\nRendered from `{source or Path(path).as_posix()}` "
             f"(`{meta.get('command', 'python -m prcm_examples.digits')}`; {where}, {str(meta.get('date', 'date unknown'))[:10]}) "
             "by `python -m prcm_examples.digits render`.")  # fmt: skip
    return pages.fill(text, TAG, lambda _: block)


def render_command(argv: Sequence[str]) -> int:
    """``python -m prcm_examples.digits render FILE PAGE ... [--check]`` (:func:`prcm.pages.render_command`)."""
    return pages.render_command("python -m prcm_examples.digits render", TAG, render_page, argv,
                                what="an ablation.json written by python -m prcm_examples.digits")  # fmt: skip


# -- the command ----------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the whole example and print what it measured (``render``: see :func:`render_command`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["render"]:
        return render_command(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m prcm_examples.digits", description=__doc__.split("\n\n")[0])
    parser.add_argument("--block", choices=BLOCKS[1:], default="AffinePRCM", help="recalibration block of the ported model")
    parser.add_argument("--epochs", type=at_least(1), default=15, help="PyTorch training epochs")
    parser.add_argument("--finetune-epochs", type=at_least(1), default=5, help="JAX fine-tuning epochs")
    parser.add_argument("--ablation-epochs", type=at_least(1), default=10, help="training epochs per ablation run")
    parser.add_argument("--seeds", type=at_least(2), default=5,
                        help="seeds per block and framework in the ablation (0..N-1; at least 2 for an interval)")  # fmt: skip
    parser.add_argument("--ablation-blocks", type=comma_choices("block", BLOCKS), default=BLOCKS,
                        help="comma-separated block types for the ablation (default: all)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for the .safetensors files and ablation.json (default: a temporary one)")
    args = parser.parse_args(argv)
    # batches of 64 8x8 images: intra-op threads only add synchronisation, and on a shared
    # machine they wait for each other (10x slower at load 4 on 2 cores, measured)
    torch.set_num_threads(1)

    from rich.console import Console
    from rich.progress import Progress

    console = Console() if sys.stdout.isatty() else Console(width=120)
    out = args.out or Path(tempfile.mkdtemp(prefix="prcm-digits-"))
    out.mkdir(parents=True, exist_ok=True)
    data = load_data()
    mesh = Mesh(np.array(jax.devices()), ("data",))
    console.print(f"digits: {len(data.x_train)} train / {len(data.x_test)} test images; "
                  f"JAX devices: {len(jax.devices())} ({jax.devices()[0].platform}); block: {args.block}")  # fmt: skip
    runs = len(args.ablation_blocks) * args.seeds * len(FRAMEWORKS)
    total = args.epochs + args.finetune_epochs + args.ablation_epochs * runs
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

        train_jax(model, data, args.finetune_epochs, seed=1, mesh=mesh, on_epoch=progress)
        acc_tuned = accuracy(jax_logits(model, data.x_test), data.y_test)
        exported = out / "digits_jax.safetensors"
        parity.save_safetensors(model, TorchNet(args.block), exported)
        back = TorchNet(args.block)
        back.load_state_dict(safetensors.torch.load_file(exported), strict=True)
        acc_back = accuracy(torch_logits(back, data.x_test), data.y_test)

        result = ablation(data, args.ablation_blocks, range(args.seeds), epochs=args.ablation_epochs, mesh=mesh,
                          on_epoch=progress)  # fmt: skip

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
    table, gaps, note = ablation_tables(result)
    console.print(table)
    console.print(gaps)
    console.print(note)
    save_ablation(result, out / "ablation.json", argv)
    console.print(f"checkpoints and ablation.json in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
