"""Each layer's own float32 error, JAX (XLA:CPU) beside torch (ATen, oneDNN), against float64.

The per-operation measurement the network limit is derived from (:data:`parity.proof.networks.OP_RATIO`).
A float64 copy of the timm model runs forward and backward; every layer (convolution, BatchNorm,
attention block, the head's ``fc``) records the input it got and the gradient it was sent back.
Rounded to float32, these go through that one layer in torch float32, in its NNX twin and in
torch float64, and each float32 result (the output, the input gradient, every parameter
gradient) gets its normwise error (:func:`parity.proof.reference.normwise_error_in_eps`): the
rounding that layer adds, at the very values the network feeds it.
"""

from __future__ import annotations

import copy
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx

from parity.arrays import to_numpy
from parity.convert import torch_state_dict
from parity.proof.precision import pinned_precision
from parity.proof.reference import normwise_error_in_eps

__all__ = ["OpError", "layer_errors"]

EPS32 = float(np.finfo(np.float32).eps)
_LAYERS = (torch.nn.Conv2d, torch.nn.BatchNorm2d, torch.nn.Linear)


class OpError(NamedTuple):
    """Normwise errors (float32 eps) of torch and JAX on one result of one layer.

    >>> OpError(torch=1.5, jax=3.0).ratio
    2.0
    """

    torch: float
    jax: float

    @property
    def ratio(self) -> float:
        """JAX's error over torch's."""
        return self.jax / self.torch


def _twin_layer(twin: nnx.Module, name: str) -> nnx.Module:
    """The twin's layer of a timm name (``layer2.0.downsample.0`` -> ``twin.layer2[0].downsample.layers[0]``)."""
    layer = twin
    for part in name.split("."):
        if not part.isdigit():
            layer = getattr(layer, part)
        else:
            layer = (layer.layers if isinstance(layer, nnx.Sequential) else layer)[int(part)]
    return layer


def _channels_last(a: np.ndarray) -> np.ndarray:
    return np.moveaxis(a, 1, -1) if a.ndim == 4 else a


def layer_errors(torch_model: torch.nn.Module, twin: nnx.Module, x: np.ndarray, *, train: bool = False, seed: int = 0,
                 names: tuple[str, ...] | None = None) -> dict[str, dict[str, OpError]]:  # fmt: skip
    """Every layer's own error, torch float32 and JAX float32, at the values the float64 model feeds it.

    Args:
      torch_model: the timm model; it is not modified.
      twin: its NNX twin holding the same weights.
      x: images ``(B, H, W, C)``, channels last.
      train: BatchNorm with batch statistics (train mode); the attention blocks run without
        dropout either way.
      seed: seed of the cotangent of the logits.
      names: the layers to measure (timm names); ``None``: every convolution, BatchNorm, attention
        block and linear layer.

    Returns:
      layer (timm name) -> ``"output"``, ``"grad input"``, ``"grad <parameter>"`` -> :class:`OpError`.

    >>> import timm
    >>> from prcm_jax.models import from_timm
    >>> model = timm.create_model("resnet18", num_classes=10)
    >>> errors = layer_errors(model, from_timm(model), np.ones((1, 32, 32, 3), np.float32), names=("conv1", "bn1"))
    >>> sorted(errors["conv1"]), sorted(errors["bn1"])
    (['grad input', 'grad weight', 'output'], ['grad bias', 'grad input', 'grad weight', 'output'])
    """
    model = copy.deepcopy(torch_model).double().train(train)
    seen: dict[str, list] = {}

    def record(name: str):
        def hook(module, inputs, output):
            seen[name] = [inputs[0].detach(), None]
            output.register_hook(lambda g: seen[name].__setitem__(1, g.detach()))
            return output.clone()  # what follows (timm's `x += shortcut`, in-place ReLUs) rewrites the copy

        return hook

    layers = {n: m for n, m in model.named_modules()
              if (isinstance(m, _LAYERS) and ".se." not in n or n.endswith(".se")) and (names is None or n in names)}  # fmt: skip
    for name, layer in layers.items():  # on a copy: nothing to remove afterwards
        layer.register_forward_hook(record(name))
        if getattr(layer, "dropout_rate", 0):
            layer.eval()
    with pinned_precision():
        y = model(torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 1))).double())
        y.backward(torch.from_numpy(np.random.default_rng(seed).standard_normal(y.shape)))
        return {name: _one_layer(layers[name], _twin_layer(twin, name), *seen[name], train) for name in layers if name in seen}


def _one_layer(layer: torch.nn.Module, twin_layer: nnx.Module, x64: torch.Tensor, g64: torch.Tensor,
               train: bool) -> dict[str, OpError]:  # fmt: skip
    """One layer in torch float64, torch float32 and its twin, on the float32 roundings of ``x64`` and ``g64``."""
    x, g = x64.float(), g64.float()
    got = {}
    for dtype in (torch.float64, torch.float32):
        module = copy.deepcopy(layer).to(dtype).train(train and isinstance(layer, torch.nn.BatchNorm2d))
        module.zero_grad(set_to_none=True)
        xi = x.to(dtype).clone().requires_grad_(True)
        out = module(xi)
        out.backward(g.to(dtype))
        got[dtype] = {"output": _channels_last(to_numpy(out.detach())), "grad input": _channels_last(to_numpy(xi.grad))}
        got[dtype].update({f"grad {n}": to_numpy(p.grad) for n, p in module.named_parameters()})
    got["jax"] = _jax_layer(module, twin_layer, _channels_last(x.numpy()), _channels_last(g.numpy()), train)
    ref = got[torch.float64]
    error = lambda source, k: normwise_error_in_eps(got[source][k], ref[k], EPS32)  # noqa: E731
    return {k: OpError(error(torch.float32, k), error("jax", k)) for k in ref}


@functools.partial(jax.jit, static_argnums=0)
def _layer_vjp(graphdef: nnx.GraphDef, params: nnx.State, rest: nnx.State, x: jax.Array, g: jax.Array):
    """One twin layer's output and the gradients of ``sum(output * g)`` (one program per layer kind and shape)."""

    def f(params, rest, x):  # rest (BatchNorm statistics) goes in too: the layer updates it in train mode
        layer = nnx.merge(graphdef, params, rest)
        return layer(x) if isinstance(layer, (nnx.Conv, nnx.Linear, nnx.BatchNorm)) else layer(x, deterministic=True)

    y, vjp = jax.vjp(f, params, rest, x)
    g_params, _, g_x = vjp(g)
    return y, g_params, g_x


def _jax_layer(layer: torch.nn.Module, twin_layer: nnx.Module, x: np.ndarray, g: np.ndarray,
               train: bool) -> dict[str, np.ndarray]:  # fmt: skip
    """The twin layer's output, input gradient and parameter gradients (torch names and layouts)."""
    view = nnx.view(twin_layer, use_running_average=not train) if isinstance(twin_layer, nnx.BatchNorm) else twin_layer
    y, g_params, g_x = _layer_vjp(*nnx.split(view, nnx.Param, ...), jnp.asarray(x), jnp.asarray(g))
    stats = nnx.to_pure_dict(nnx.state(twin_layer, nnx.BatchStat))
    named = torch_state_dict({"params": nnx.to_pure_dict(g_params), **({"batch_stats": stats} if stats else {})}, layer)
    params = dict(layer.named_parameters())
    grads = {f"grad {n}": to_numpy(t) for n, t in named.items() if n in params}
    return {"output": np.asarray(y), "grad input": np.asarray(g_x), **grads}
