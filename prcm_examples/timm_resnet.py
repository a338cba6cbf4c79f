"""A timm ResNet-18 with AffinePRCM blocks: train in PyTorch, port to Flax NNX, fine-tune in JAX, back to timm.

The data are scikit-learn's 8x8 digits (shipped with scikit-learn, no download), upscaled to
32x32 and standardised, one channel (``in_chans=1``). ``python -m prcm_examples.timm_resnet``:

1. ``timm.create_model("resnet18", in_chans=1, num_classes=10, block_args=dict(attn_layer=prcm_torch.AffinePRCM))``
   trained a little in PyTorch, saved as ``.safetensors``;
2. the file loaded into the NNX twin with :func:`prcm_jax.models.from_timm` (the timm model
   only gives the architecture: a skeleton on the meta device); logits compared against a
   float64 copy of the timm model (eps units) and accuracy;
3. fine-tuned in JAX with optax (``nnx.Optimizer``), each AffinePRCM block drawing its dropout
   masks from its own stream, one compiled step;
4. written back with :func:`parity.save_safetensors`, loaded by a fresh timm model
   (``strict=True``) and evaluated there.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import safetensors.torch
import torch
import torch.nn.functional as F
from flax import nnx

import parity
import prcm_torch
from parity.proof.reference import error_in_eps
from prcm.cli import at_least
from prcm_examples.digits import Data, channels_last
from prcm_jax.models import ResNet, from_timm

__all__ = ["Data", "load_data", "create_timm", "train_torch", "torch_logits", "jax_logits", "train_jax", "main"]

CLASSES = 10
EPS32 = float(np.finfo(np.float32).eps)


def load_data(image: int = 32, seed: int = 0) -> Data:
    """scikit-learn's digits (1,797 images), bilinearly upscaled from 8x8 to ``image`` x ``image``.

    >>> load_data(16).x_train.shape
    (1437, 1, 16, 16)
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.from_numpy(digits.images.astype(np.float32) / 16.0)[:, None]
    x = F.interpolate(x, size=(image, image), mode="bilinear", align_corners=False).numpy()
    x = (x - x.mean()) / x.std()
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    cut = int(0.8 * len(x))
    return Data(x[order[:cut]], y[order[:cut]], x[order[cut:]], y[order[cut:]])


def create_timm(device: str | None = None) -> torch.nn.Module:
    """timm's resnet18 for 1-channel digits, an AffinePRCM block in every residual block."""
    import timm

    return timm.create_model("resnet18", in_chans=1, num_classes=CLASSES, block_args=dict(attn_layer=prcm_torch.AffinePRCM),
                             device=device)  # fmt: skip


def train_torch(model: torch.nn.Module, data: Data, epochs: int, *, batch: int = 64, lr: float = 1e-3) -> list[float]:
    """Adam on cross-entropy in PyTorch; returns the mean loss per epoch."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    model.train()
    for epoch in range(epochs):
        total = []
        for x, y in data.batches(batch, seed=epoch):
            loss = F.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total.append(loss.item())
        losses.append(float(np.mean(total)))
    return losses


def torch_logits(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    """Eval-mode logits of a timm model (any dtype), as NumPy."""
    model.eval()
    with torch.no_grad():
        return model(torch.from_numpy(x).to(next(model.parameters()).dtype)).numpy()


@nnx.jit
def _logits(model: ResNet, x: jax.Array) -> jax.Array:
    return model(x)


def jax_logits(model: ResNet, x: np.ndarray) -> np.ndarray:
    """Eval-mode logits of the twin (channels-first input), through one compiled function."""
    return np.asarray(_logits(nnx.view(model, deterministic=True, use_running_average=True), jnp.asarray(channels_last(x))))


def _loss(model: ResNet, x: jax.Array, y: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()


@nnx.jit
def _train_step(model: ResNet, optimizer: nnx.Optimizer, x: jax.Array, y: jax.Array) -> jax.Array:
    """One Adam step in train mode; each AffinePRCM block draws its mask from its own stream."""
    loss, grads = nnx.value_and_grad(_loss)(model, x, y)
    optimizer.update(model, grads)
    return loss


def train_jax(model: ResNet, data: Data, epochs: int, *, batch: int = 64, lr: float = 3e-4) -> list[float]:
    """Fine-tune the twin with optax's Adam (``nnx.Optimizer``); returns the mean loss per epoch."""
    optimizer = nnx.Optimizer(model, optax.adam(lr), wrt=nnx.Param)
    model.train()
    losses = []
    for epoch in range(epochs):
        total = [float(_train_step(model, optimizer, jnp.asarray(channels_last(x)), jnp.asarray(y)))
                 for x, y in data.batches(batch, seed=1000 + epoch)]  # fmt: skip
        losses.append(float(np.mean(total)))
    model.eval()
    return losses


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(-1) == labels).mean())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the example and print what it measured."""
    parser = argparse.ArgumentParser(prog="python -m prcm_examples.timm_resnet", description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=at_least(1), default=2, help="PyTorch training epochs (default 2)")
    parser.add_argument("--finetune-epochs", type=at_least(1), default=1, help="JAX fine-tuning epochs (default 1)")
    parser.add_argument("--image", type=at_least(8), default=32, help="image size the 8x8 digits are upscaled to (default 32)")
    parser.add_argument("--train-images", type=at_least(64), default=None,
                        help="train on the first N training images only (a smoke run; default all 1,437)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=None, help="folder for the .safetensors files (default: a temporary one)")
    args = parser.parse_args(argv)

    from rich.console import Console
    from rich.table import Table

    console = Console() if sys.stdout.isatty() else Console(width=120)
    out = args.out or Path(tempfile.mkdtemp(prefix="prcm-timm-"))
    out.mkdir(parents=True, exist_ok=True)
    data = load_data(args.image)
    if args.train_images is not None:
        data = Data(data.x_train[: args.train_images], data.y_train[: args.train_images], data.x_test, data.y_test)
    console.print(f"digits at {args.image}x{args.image}: {len(data.x_train)} train / {len(data.x_test)} test images; "
                  "timm resnet18 with AffinePRCM blocks")  # fmt: skip

    start = time.perf_counter()
    torch.manual_seed(0)
    torch_model = create_timm()
    losses = train_torch(torch_model, data, args.epochs)
    console.print(f"PyTorch: {args.epochs} epoch(s), mean loss per epoch {', '.join(f'{v:.3f}' for v in losses)} "
                  f"({time.perf_counter() - start:.0f} s)")  # fmt: skip
    checkpoint = out / "resnet18_affineprcm.safetensors"
    safetensors.torch.save_file(torch_model.state_dict(), checkpoint)

    skeleton = create_timm(device="meta").eval()  # the architecture only: no memory, no init
    model = from_timm(skeleton, weights=checkpoint)
    want = torch_logits(copy.deepcopy(torch_model).double(), data.x_test)
    got_torch, got_jax = torch_logits(torch_model, data.x_test), jax_logits(model, data.x_test)
    acc_torch, acc_jax = accuracy(got_torch, data.y_test), accuracy(got_jax, data.y_test)
    agree = float((got_torch.argmax(-1) == got_jax.argmax(-1)).mean())

    console.print(f"ported and compared ({time.perf_counter() - start:.0f} s)")
    losses = train_jax(model, data, args.finetune_epochs)
    console.print(f"JAX fine-tuning: {args.finetune_epochs} epoch(s), mean loss per epoch "
                  f"{', '.join(f'{v:.3f}' for v in losses)} ({time.perf_counter() - start:.0f} s)")  # fmt: skip
    tuned_jax = jax_logits(model, data.x_test)
    exported = out / "resnet18_affineprcm_jax.safetensors"
    parity.save_safetensors(model, skeleton, exported)
    back = create_timm()
    back.load_state_dict(safetensors.torch.load_file(exported), strict=True)
    tuned_torch = torch_logits(back, data.x_test)
    tuned_ref = torch_logits(copy.deepcopy(back).double(), data.x_test)

    table = Table(title=f"timm resnet18 + AffinePRCM: PyTorch -> JAX (from {checkpoint.name}) -> timm")
    for column in ("check", "value"):
        table.add_column(column)
    table.add_row("ported logits vs float64 timm, torch float32", f"{error_in_eps(got_torch, want, EPS32):.2f} eps x max|logit|")
    table.add_row("ported logits vs float64 timm, jax float32", f"{error_in_eps(got_jax, want, EPS32):.2f} eps x max|logit|")
    table.add_row("test accuracy torch / jax (same predictions)", f"{acc_torch:.4f} / {acc_jax:.4f} ({agree:.2%})")
    table.add_row("fine-tuned in JAX, test accuracy", f"{accuracy(tuned_jax, data.y_test):.4f}")
    table.add_row("exported to timm (strict load), test accuracy", f"{accuracy(tuned_torch, data.y_test):.4f}")
    errors = (error_in_eps(tuned_torch, tuned_ref, EPS32), error_in_eps(tuned_jax, tuned_ref, EPS32))
    table.add_row("exported logits vs float64 timm, torch / jax", f"{errors[0]:.2f} / {errors[1]:.2f} eps x max|logit|")
    console.print(table)
    console.print(f"checkpoints in {out}; {time.perf_counter() - start:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
