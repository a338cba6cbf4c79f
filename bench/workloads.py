"""What a lane runs: one item of a point written for both frameworks.

Four kinds of workload:

* ``forward``: a module's eval-mode forward pass (``variant`` ``fresh``, ``donated`` or
  ``loop``: :data:`LOOP` blocks one after another in one call, as inside a model);
* ``train``: one training step in train mode — forward, the loss ``sum(y * cot)``, and the
  gradients with respect to the input and every parameter;
* ``backward``: the same step as a block runs it inside a network — forward in train mode
  (its output ``y`` is returned, for the next layer) and the backward pass for an upstream
  gradient ``cot``, with no loss value (``torch.autograd.grad(y, ..., cot)``, ``jax.vjp``):
  the same gradients, without the scalar ``sum(y * cot)``;
* ``op``: one of the seed's component operations, or a ``copy`` (the bandwidth reference);

and, for the ``network`` suite, a timm network with an attention block against its NNX twin
(inference, or one training step), torch's side in either memory layout.

Each gives a :class:`~bench.backends.Call` per framework flavour (``torch``, ``torch-compile``,
``jax`` for jit, ``jax-eager``), the torch-eager reference each backend is checked against
(:meth:`Workload.check`), and the minimum bytes one application must move
(:data:`~bench.plan.MIN_TRAFFIC`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as TF
from flax import nnx

from bench.backends import Call, Device, channels_first
from bench.plan import COMPONENTS, FRAMEWORK, LOOP, MIN_TRAFFIC
from parity.arrays import to_numpy
from parity.convert import torch_state_dict, torch_to_nnx
from parity.proof.dropout import shared_dropout_mask
from parity.proof.reference import error_in_eps, normwise_error_in_eps
from prcm.catalog import CATALOG
from prcm.cli import unavailable
from prcm_jax.functional import keep_mask

__all__ = ["Workload", "build", "inputs", "network_unavailable", "ATTENTION_ARGS", "CHECK_SEED", "EPS32"]

EPS32 = float(np.finfo(np.float32).eps)
#: Seed of torch's generator and of the JAX dropout key when outputs are checked.
CHECK_SEED = 0


def inputs(batch: int, channels: int, resolution: int, num_basis: int) -> dict[str, np.ndarray]:
    """Random inputs of a point, channels-first, shared by all its lanes.

    Examples:
        >>> sorted(inputs(1, 4, 2, 3))
        ['alpha', 'basis', 'beta', 'coeff', 'cot', 'ctx', 'weight', 'x']
    """
    rng = np.random.default_rng(0)
    b, c, r, k = batch, channels, resolution, num_basis
    return {
        "x": rng.standard_normal((b, c, r, r), dtype=np.float32),
        "cot": rng.standard_normal((b, c, r, r), dtype=np.float32),
        "ctx": rng.standard_normal((b, c), dtype=np.float32),
        "coeff": rng.standard_normal((b, k), dtype=np.float32),
        "alpha": rng.standard_normal((b, c), dtype=np.float32),
        "beta": rng.standard_normal((b, c), dtype=np.float32),
        "basis": rng.standard_normal((k, c), dtype=np.float32),
        "weight": rng.standard_normal((c, k), dtype=np.float32) / math.sqrt(k),
    }


class Arrays:
    """A point's inputs on the device, in each framework's layout, converted once."""

    def __init__(self, values: dict[str, np.ndarray], device: Device) -> None:
        self.values, self.device = values, device
        self._torch: dict[str, torch.Tensor] = {}
        self._jax: dict[str, jax.Array] = {}

    def torch(self, name: str) -> torch.Tensor:
        if name not in self._torch:
            value = self.values[name]
            value = value[:, :, None, None] if name in ("alpha", "beta") else value
            self._torch[name] = torch.from_numpy(value).to(self.device.torch)
        return self._torch[name]

    def jax(self, name: str) -> jax.Array:
        if name not in self._jax:
            value = self.values[name]
            if name in ("x", "cot"):
                value = np.moveaxis(value, 1, -1)
            elif name in ("alpha", "beta"):
                value = value[:, None, None, :]
            elif name == "weight":
                value = value.T  # torch (out, in) -> Flax kernel (in, out)
            self._jax[name] = jax.device_put(np.asarray(value, order="C"), self.device.jax)
        return self._jax[name]


@dataclass
class Workload:
    """One item of a point in both frameworks.

    Attributes:
      calls: the :class:`Call` per flavour: ``torch`` (eager), ``torch-compile``, ``jax``
        (jitted) and ``jax-eager``; a missing flavour falls back to its framework's first.
      references: the torch-eager output per framework (``torch``, ``jax``), which that
        framework's backends are checked against (they differ only for a training step with
        dropout, where torch draws its own mask and JAX's mask is given to torch).
      per_call: applications per call (``loop``: :data:`LOOP`).
      donate: index of the jitted function's argument to donate, or ``None``.
      bytes: the fewest bytes one application moves (:data:`MIN_TRAFFIC` x the input's size).
      tolerance: check limit, in float32 eps: x max|reference| per tensor, or (``normwise``)
        x the reference's 2-norm.
      normwise: judge the normwise error of all output tensors as one vector
        (:func:`parity.proof.reference.normwise_error_in_eps`) instead of each tensor's worst
        entry: a network's training step, whose gradients jump where float32 rounding puts a
        ReLU's or max-pool's input on the other side of a kink, and some of whose tensors are
        zero in exact arithmetic (in EfficientNet and MobileNetV3 the gradient of a BatchNorm
        bias that reaches a train-mode BatchNorm through linear layers only), all rounding.
      nnx_model: the NNX module (for the dispatch paths), or ``None``.
      torch_modules: the torch modules the calls use (their parameters are copied afresh
        between rounds, as the NNX model's are).
      params: parameter counts per framework (networks).
    """

    calls: dict[str, Call]
    references: dict[str, Callable[[], list[np.ndarray]]]
    per_call: int = 1
    donate: int | None = None
    bytes: int | None = None
    tolerance: float = 16.0
    normwise: bool = False
    nnx_model: Any = None
    torch_modules: tuple[torch.nn.Module, ...] = ()
    params: dict[str, int] | None = None
    _cache: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def call(self, backend: str) -> Call:
        """The call ``backend`` runs."""
        flavour = {"torch-eager": "torch", "jax-jit": "jax"}.get(backend, backend)
        return self.calls.get(flavour) or self.calls[FRAMEWORK[backend]]

    def reference(self, backend: str) -> list[np.ndarray]:
        """The torch-eager output ``backend`` is checked against (computed once)."""
        side = FRAMEWORK[backend]
        if side not in self._cache:
            self._cache[side] = self.references[side]()
        return self._cache[side]

    def check(self, backend: str, got: list[np.ndarray]) -> float:
        """How far ``backend``'s output ``got`` is from the reference, in float32 eps x max|y|
        per tensor, the worst tensor's (where :attr:`normwise`: x the 2-norm of all tensors together)."""
        want = self.reference(backend)
        if self.normwise:  # the whole step as one vector
            if len(got) != len(want):
                raise ValueError(f"expected {len(want)} output tensors, got {len(got)}")
            flat = lambda ts: np.concatenate([np.ravel(t) for t in ts]) if ts else np.zeros(0)  # noqa: E731
            return normwise_error_in_eps(flat(got), flat(want), EPS32)
        return max(_error_in_eps(g, w) for g, w in zip(got, want, strict=True))


#: Elements per piece when a large output is checked (its float64 temporaries stay in the caches).
CHUNK = 1 << 20


def _error_in_eps(got: np.ndarray, want: np.ndarray) -> float:
    """:func:`parity.proof.reference.error_in_eps` in float32 eps x max|want|, taken piece by piece
    for a large tensor (the roofline's 134 MB outputs: about ten times faster than whole), the
    same value: the largest error of any piece against the whole tensor's scale.

    Examples:
        >>> want = np.linspace(-2, 1, 3 * CHUNK, dtype=np.float32)
        >>> got = want.copy(); got[-1] += 8 * EPS32  # off by 8 eps in the last piece, against max|want| = 2
        >>> _error_in_eps(got, want), error_in_eps(got, want, EPS32)
        (4.0, 4.0)
    """
    if np.shape(got) != np.shape(want) or np.size(want) <= CHUNK:
        return error_in_eps(got, want, EPS32)
    got, want = np.ravel(got), np.ravel(want)
    pieces = [slice(i, i + CHUNK) for i in range(0, want.size, CHUNK)]
    scale = max(float(np.max(np.abs(want[p]), initial=0.0, where=np.isfinite(want[p]))) for p in pieces)
    if scale == 0.0:
        return error_in_eps(got, want, EPS32)
    return max(error_in_eps(got[p], want[p], EPS32, scale) for p in pieces)


def _first(out: Any) -> list[np.ndarray]:
    return [to_numpy(out)]


def _modules(name: str, channels: int, num_basis: int, device: Device) -> tuple[torch.nn.Module, Any]:
    """The torch module (seeded) and its NNX twin with the same weights."""
    entry = CATALOG[name]
    torch.manual_seed(0)
    module = entry.build_torch(channels, num_basis)
    model = torch_to_nnx(module, entry.build_nnx(channels, num_basis))
    return module.to(device.torch), model


def _split(model: Any, device: Device) -> tuple[Callable[..., Any], tuple[jax.Array, ...]]:
    """``apply(leaves, x, **kw)`` over the parameters of one ``nnx.split`` as a flat tuple of
    arrays (cheap to dispatch); the rest of the state (dropout streams) is closed over."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    leaves, treedef = jax.tree.flatten(params)

    def apply(leaves: tuple[jax.Array, ...], x: jax.Array, **kwargs: Any) -> jax.Array:
        return nnx.merge(graphdef, jax.tree.unflatten(treedef, list(leaves)), rest)(x, **kwargs)

    return apply, tuple(jax.device_put(leaves, device.jax))


def _forward(name: str, variant: str, channels: int, num_basis: int, arrays: Arrays) -> Workload:
    module, model = _modules(name, channels, num_basis, arrays.device)
    module.eval()
    model.eval()
    apply, leaves = _split(model, arrays.device)
    x_torch, x_jax = arrays.torch("x"), arrays.jax("x")
    per_call = LOOP if variant == "loop" else 1

    def torch_fn(x: torch.Tensor) -> torch.Tensor:
        for _ in range(per_call):
            x = module(x)
        return x

    def jax_fn(leaves: tuple[jax.Array, ...], x: jax.Array) -> jax.Array:
        for _ in range(per_call):  # unrolled: the blocks as distinct layers of a jitted model
            x = apply(leaves, x, deterministic=True)
        return x

    def eager_fn(x: jax.Array) -> jax.Array:
        for _ in range(per_call):
            x = model(x)
        return x

    out = lambda y: channels_first([y])  # noqa: E731
    calls = {"torch": Call(torch_fn, (x_torch,), _first), "jax": Call(jax_fn, (leaves, x_jax), out),
             "jax-eager": Call(eager_fn, (x_jax,), out)}  # fmt: skip
    reference = _no_grad(lambda: _first(torch_fn(x_torch)))
    return Workload(calls, {"torch": reference, "jax": reference}, per_call,
                    donate=1 if variant in ("donated", "loop") else None,
                    bytes=int(MIN_TRAFFIC[variant] * arrays.values["x"].nbytes), tolerance=16.0 * per_call,
                    nnx_model=model, torch_modules=(module,))  # fmt: skip


def _no_grad(fn: Callable[[], Any]) -> Callable[[], Any]:
    def wrapped() -> Any:
        with torch.no_grad():
            return fn()

    return wrapped


def _torch_saved(step: Callable[[], Any], inputs: list[torch.Tensor]) -> tuple[int, int]:
    """Bytes of the distinct storages autograd saves in one step, and of those that are inputs."""
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        saved[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    own = {t.untyped_storage().data_ptr() for t in inputs}
    return sum(saved.values()), sum(n for ptr, n in saved.items() if ptr in own)


def _jax_saved(loss: Callable[..., jax.Array], args: tuple, inputs: list[jax.Array]) -> tuple[int, int]:
    """Bytes of the distinct residuals ``jax.vjp`` keeps, and of those that are inputs."""
    _, vjp = jax.vjp(loss, *args)
    buffers = {}
    for leaf in jax.tree.leaves(vjp):
        if isinstance(leaf, jax.Array):
            buffers[leaf.unsafe_buffer_pointer()] = leaf.nbytes
    own = {a.unsafe_buffer_pointer() for a in inputs}
    return sum(buffers.values()), sum(n for ptr, n in buffers.items() if ptr in own)


def _grads_out(model: Any, module: torch.nn.Module, names: list[str], grads_of: Callable[[Any], Any]) -> Callable[[Any], list[np.ndarray]]:
    """Reads a JAX step's ``(parameter gradients as flat leaves, input gradient)`` as torch
    arrays: the input's channels-first, then each parameter's under its torch name and layout."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    treedef = jax.tree.structure(params)

    def out(result: Any) -> list[np.ndarray]:
        dleaves, dx = grads_of(result)
        named = torch_state_dict(nnx.merge(graphdef, jax.tree.unflatten(treedef, list(dleaves)), rest), module)
        return [*channels_first([dx]), *(to_numpy(named[n]) for n in names)]

    return out


def _train(name: str, channels: int, num_basis: int, arrays: Arrays, *, loss_value: bool = True) -> Workload:
    """A training step (``loss_value``: the ``train`` workload) or a block's forward and
    backward pass for the upstream gradient ``cot`` (the ``backward`` workload). Both return
    ``(scalar loss or y, gradients)`` in each framework's order, and are checked on the gradients."""
    entry = CATALOG[name]
    module, model = _modules(name, channels, num_basis, arrays.device)
    module.train()
    model.train()
    names = [n for n, _ in module.named_parameters()]
    params = [p for _, p in module.named_parameters()]
    x = arrays.torch("x").clone().requires_grad_(True)
    cot = arrays.torch("cot")

    def seed() -> None:
        torch.manual_seed(CHECK_SEED)

    # torch-eager: autograd, as a user trains
    def step(x: torch.Tensor, cot: torch.Tensor) -> tuple[torch.Tensor, ...]:
        y = module(x)
        if not loss_value:
            return y.detach(), *torch.autograd.grad(y, (x, *params), cot)
        loss = (y * cot).sum()
        return loss.detach(), *torch.autograd.grad(loss, (x, *params))

    # torch-compile: the whole step as one function (torch.func), so forward and backward compile together
    detached = {n: p.detach() for n, p in zip(names, params)}

    def forward_of(weights: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(module, weights, (x,))

    def vjp_of(weights: dict[str, torch.Tensor], x: torch.Tensor, cot: torch.Tensor) -> tuple[Any, torch.Tensor]:
        y, pull = torch.func.vjp(forward_of, weights, x)
        return pull(cot), y  # grad_and_value's order

    whole = torch.func.grad_and_value(lambda w, x, cot: (forward_of(w, x) * cot).sum(), argnums=(0, 1)) if loss_value else vjp_of
    x_plain = arrays.torch("x")

    def compiled_out(out: Any) -> list[np.ndarray]:
        (weights, dx), _ = out
        return [to_numpy(dx), *(to_numpy(weights[n]) for n in names)]

    # JAX: value_and_grad (or vjp) over the split parameters and the input, dropout keyed
    apply, leaves = _split(model, arrays.device)
    key = jax.random.key(CHECK_SEED)
    x_jax, cot_jax = arrays.jax("x"), arrays.jax("cot")

    def forward(leaves: tuple[jax.Array, ...], x: jax.Array, key: jax.Array) -> jax.Array:
        return apply(leaves, x, deterministic=False, rngs=key)

    def loss(leaves: tuple[jax.Array, ...], x: jax.Array, cot: jax.Array, key: jax.Array) -> jax.Array:
        return jnp.sum(forward(leaves, x, key) * cot)

    def jax_vjp(leaves: tuple[jax.Array, ...], x: jax.Array, cot: jax.Array, key: jax.Array) -> tuple[jax.Array, Any]:
        y, pull = jax.vjp(lambda leaves, x: forward(leaves, x, key), leaves, x)
        return y, pull(cot)  # value_and_grad's order

    jax_step = jax.value_and_grad(loss, argnums=(0, 1)) if loss_value else jax_vjp
    jax_out = _grads_out(model, module, names, lambda out: out[1])
    kept = (lambda p, x: loss(p, x, cot_jax, key)) if loss_value else (lambda p, x: forward(p, x, key))

    def torch_reference() -> list[np.ndarray]:
        seed()
        return [to_numpy(g) for g in step(x, cot)[1:]]

    def jax_reference() -> list[np.ndarray]:
        if not entry.dropout:
            return torch_reference()
        keep = np.asarray(keep_mask(key, module.dropout_rate, (x.shape[0], num_basis)))
        with shared_dropout_mask(module, keep):
            return [to_numpy(g) for g in step(x, cot)[1:]]

    jax_args = (leaves, x_jax, cot_jax, key)
    calls = {
        "torch": Call(step, (x, cot), lambda out: [to_numpy(g) for g in out[1:]], train=True, before=seed,
                      saved=lambda: _torch_saved(lambda: step(x, cot), [x, cot, *params])),
        "torch-compile": Call(whole, (detached, x_plain, cot), compiled_out, train=True, before=seed,
                              fallback_random=bool(entry.dropout)),
        "jax": Call(jax_step, jax_args, jax_out, train=True),
        "jax-eager": Call(jax_step, jax_args, jax_out, train=True,
                          saved=lambda: _jax_saved(kept, (leaves, x_jax), [x_jax, cot_jax, *leaves])),
    }  # fmt: skip
    traffic = MIN_TRAFFIC["train" if loss_value else "backward"]
    return Workload(calls, {"torch": torch_reference, "jax": jax_reference},
                    bytes=int(traffic * arrays.values["x"].nbytes), tolerance=256.0, nnx_model=model,
                    torch_modules=(module,))  # fmt: skip


#: The check of a network's training step, in float32 eps x the 2-norm of all its gradients (about 3%):
#: a ReLU network's gradient is discontinuous, and where two correct float32 implementations
#: put a unit on either side of a kink its entries differ by O(1) (torch-compile against
#: torch-eager on ResNet-18 with SE blocks at (8, 3, 224, 224): 3.96e5 eps x max|g| on one
#: weight, 3.3e4 eps normwise); a wrong kernel is off by O(1) in norm, about 8e6 eps.
NETWORK_TRAIN_TOLERANCE = 2.0**18
#: Classes of the networks' heads.
NUM_CLASSES = 1000


def network_unavailable() -> str | None:
    """Why the ``network`` suite cannot run here (timm, with torchvision, is not importable), or ``None``."""
    why = unavailable("timm")
    return f"the network suite needs timm (and torchvision matching torch): {why['timm']}" if why else None


def _in_every_block(network: str, attention: str) -> torch.nn.Module:
    """A timm ResNet with ``attention`` in every residual block (``attn_layer``; none: no block)."""
    import timm

    layer = "se" if attention == "se" else None if attention == "none" else CATALOG[attention].torch
    return timm.create_model(network, num_classes=NUM_CLASSES, **({"block_args": {"attn_layer": layer}} if layer else {}))


def _in_se_slots(network: str, attention: str) -> torch.nn.Module:
    """A timm EfficientNet / MobileNetV3 with ``attention`` in its squeeze-excitation slots: timm's
    own SE for ``se``, empty slots for ``none``, else the catalog's block built by
    :func:`prcm_torch.timm.swap_attention` (each keeps its slot's gate: MobileNetV3's hard sigmoid).
    No dropout before the classifier (timm's default 0.2): its mask is drawn by each framework's
    own generator, so a training step could not be checked against torch's; the blocks' own
    dropout is checked as in the ResNets."""
    import timm

    from prcm_torch.timm import swap_attention

    model = timm.create_model(network, num_classes=NUM_CLASSES, drop_rate=0.0)
    if attention == "none":
        for block in model.blocks.modules():
            if isinstance(getattr(block, "se", None), torch.nn.Module):
                block.se = torch.nn.Identity()
    elif attention != "se":
        swap_attention(model, CATALOG[attention].torch)
    return model


#: How an attention block goes into a timm network, per model family (the module that defines
#: the model): ResNets take it in every residual block, EfficientNets and MobileNetV3s in their
#: squeeze-excitation slots (MobileNetV3's entry points fix ``se_layer``, so the blocks are swapped).
ATTENTION_ARGS: dict[str, Callable[[str, str], torch.nn.Module]] = {
    "timm.models.resnet": _in_every_block,
    "timm.models.efficientnet": _in_se_slots,
    "timm.models.mobilenetv3": _in_se_slots,
}


def _timm(network: str, attention: str, device: Device) -> torch.nn.Module:
    """A timm network with ``attention`` (``none``, ``se`` or a module of the catalog) where its family takes one."""
    import timm

    family = timm.models.model_entrypoint(network).__module__
    if family not in ATTENTION_ARGS:
        raise ValueError(f"no rule for an attention block in {network} ({family}); known families: {', '.join(ATTENTION_ARGS)}")
    torch.manual_seed(0)
    return ATTENTION_ARGS[family](network, attention).to(device.torch)


def _torch_steps(module: torch.nn.Module) -> Callable[[torch.nn.Module], Callable[..., tuple[torch.Tensor, ...]]]:
    """A training step of a network through ``net`` (``module`` itself or it compiled): loss
    ``sum(logits * cot)``, gradients to the input and every parameter of ``module``."""
    weights = [p for _, p in module.named_parameters()]

    def steps(net: torch.nn.Module) -> Callable[..., tuple[torch.Tensor, ...]]:
        def step(x: torch.Tensor, cot: torch.Tensor) -> tuple[torch.Tensor, ...]:
            loss = (net(x) * cot).sum()
            return loss.detach(), *torch.autograd.grad(loss, (x, *weights))

        return step

    return steps


def _network(network: str, attention: str, kind: str, batch: int, resolution: int, device: Device,
             layout: str | None = None) -> Workload:  # fmt: skip
    """A timm network and its NNX twin (:func:`prcm_jax.models.from_timm`): inference in eval
    mode, or one training step in train mode (BatchNorm on batch statistics, dropout on).

    With ``layout="channels_last"`` only torch's calls, model and input in
    ``torch.channels_last`` (what torch users set for oneDNN's convolutions on the CPU), checked
    against the same network channels-first."""
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal((batch, 3, resolution, resolution), dtype=np.float32)
    cot_np = rng.standard_normal((batch, NUM_CLASSES), dtype=np.float32)
    module = _timm(network, attention, device).train(kind == "train")
    x, cot = torch.from_numpy(x_np).to(device.torch), torch.from_numpy(cot_np).to(device.torch)
    dropout = attention in CATALOG and bool(CATALOG[attention].dropout)
    key = jax.random.key(CHECK_SEED)
    tolerance, normwise = (64.0, False) if kind == "forward" else (NETWORK_TRAIN_TOLERANCE, True)

    def seed() -> None:
        torch.manual_seed(CHECK_SEED)

    torch_out = lambda out: [to_numpy(g) for g in out[1:]]  # noqa: E731
    steps = _torch_steps(module)
    x_grad = x.clone().requires_grad_(True)

    def torch_reference() -> list[np.ndarray]:
        if kind == "forward":
            return _no_grad(lambda: _first(module(x)))()
        seed()
        return torch_out(steps(module)(x_grad, cot))

    if layout == "channels_last":
        reference = torch_reference()  # channels-first, before the model moves
        module = module.to(memory_format=torch.channels_last)
        x_cl = x.contiguous(memory_format=torch.channels_last)
        if kind == "forward":  # torch-compile compiles the module itself
            calls = {"torch": Call(module, (x_cl,), _first)}
        else:
            x_cl = x_cl.clone().requires_grad_(True)
            steps = _torch_steps(module)
            compiled = torch.compile(module, fullgraph=True, dynamic=False)
            calls = {"torch": Call(steps(module), (x_cl, cot), torch_out, train=True, before=seed),
                     "torch-compile": Call(steps(compiled), (x_cl, cot), torch_out, train=True, before=seed,
                                           fallback_random=dropout, precompiled=True)}  # fmt: skip
        return Workload(calls, {"torch": lambda: reference}, tolerance=tolerance, normwise=normwise, torch_modules=(module,),
                        params={"torch": sum(p.numel() for p in module.parameters())})  # fmt: skip

    from prcm_jax.models import from_timm

    model = from_timm(module)
    x_jax = jax.device_put(np.ascontiguousarray(np.moveaxis(x_np, 1, -1)), device.jax)
    cot_jax = jax.device_put(cot_np, device.jax)
    params = {"torch": sum(p.numel() for p in module.parameters()),
              "jax": sum(int(np.prod(v.shape)) for v in jax.tree.leaves(nnx.state(model, nnx.Param)))}  # fmt: skip
    graphdef, state, rest = nnx.split(model, nnx.Param, ...)
    leaves, treedef = jax.tree.flatten(state)
    leaves = tuple(jax.device_put(leaves, device.jax))

    def merged(leaves: tuple[jax.Array, ...]) -> Any:
        return nnx.merge(graphdef, jax.tree.unflatten(treedef, list(leaves)), rest)

    if kind == "forward":
        out = lambda y: channels_first([y])  # noqa: E731
        calls = {"torch": Call(module, (x,), _first), "jax": Call(lambda p, x: merged(p)(x), (leaves, x_jax), out),
                 "jax-eager": Call(model, (x_jax,), out)}  # fmt: skip
        return Workload(calls, {"torch": torch_reference, "jax": torch_reference}, tolerance=tolerance, nnx_model=model,
                        params=params, torch_modules=(module,))  # fmt: skip

    names = [n for n, _ in module.named_parameters()]
    compiled = torch.compile(module, fullgraph=True, dynamic=False)  # the network compiled, autograd as users train

    def jax_step(leaves: tuple[jax.Array, ...], state: Any, x: jax.Array, cot: jax.Array, key: jax.Array) -> tuple:
        net = nnx.merge(graphdef, jax.tree.unflatten(treedef, list(leaves)), state)

        def loss(net: Any, x: jax.Array) -> jax.Array:
            return jnp.sum(net(x, rngs=key) * cot)  # train mode: batch statistics, running averages updated

        value, (grads, dx) = nnx.value_and_grad(loss, argnums=(0, 1))(net, x)
        return value, jax.tree.leaves(grads), dx, nnx.state(net, nnx.BatchStat)

    jax_out = _grads_out(model, module, names, lambda out: out[1:3])

    def jax_reference() -> list[np.ndarray]:
        if not dropout:
            return torch_reference()
        se = next(m for m in module.modules() if isinstance(m, CATALOG[attention].torch))
        keep = np.asarray(keep_mask(key, se.dropout_rate, (batch, se.num_basis)))
        with shared_dropout_mask(module, keep):
            return torch_out(steps(module)(x_grad, cot))

    args = (leaves, rest, x_jax, cot_jax, key)
    calls = {
        "torch": Call(steps(module), (x_grad, cot), torch_out, train=True, before=seed),
        "torch-compile": Call(steps(compiled), (x_grad, cot), torch_out, train=True, before=seed, fallback_random=dropout,
                              precompiled=True),
        "jax": Call(jax_step, args, jax_out, train=True),
        "jax-eager": Call(jax_step, args, jax_out, train=True),
    }  # fmt: skip
    return Workload(calls, {"torch": torch_reference, "jax": jax_reference}, tolerance=tolerance, normwise=normwise,
                    nnx_model=model, params=params, torch_modules=(module,))  # fmt: skip


def _op_functions(op: str) -> tuple[Callable, Callable, tuple[str, ...]]:
    """(torch fn, jax fn, argument names) of one of the seed's eight operations."""
    table: dict[str, tuple[Callable, Callable, tuple[str, ...]]] = {
        "Global Avg Pool": (lambda x: x.mean(dim=[2, 3]), lambda x: jnp.mean(x, axis=(1, 2)), ("x",)),
        "Basis Projection": (lambda ctx, basis: ctx @ basis.t(), lambda ctx, basis: ctx @ basis.T, ("ctx", "basis")),
        "Linear": (lambda coeff, w: TF.linear(coeff, w), lambda coeff, kernel: coeff @ kernel, ("coeff", "weight")),
        "Sigmoid": (lambda coeff: coeff.sigmoid(), jax.nn.sigmoid, ("coeff",)),
        "Unsqueeze x2": (lambda coeff: coeff.unsqueeze(-1).unsqueeze(-1), lambda coeff: coeff[:, None, None, :], ("coeff",)),
        "Scale (x*alpha)": (lambda x, a: x * a, lambda x, a: x * a, ("x", "alpha")),
        "Shift (x+beta)": (lambda x, b: x + b, lambda x, b: x + b, ("x", "beta")),
        "Affine (x*alpha+beta)": (lambda x, a, b: x * a + b, lambda x, a, b: x * a + b, ("x", "alpha", "beta")),
    }
    return table[op]


def _copy(name: str, arrays: Arrays) -> Workload:
    """A copy (read x, write its negation), the bandwidth reference: ``copy`` into a second
    buffer (torch ``out=`` a preallocated one; JAX a new output, as a block's), ``copy in-place``
    into x itself (torch ``neg_``, JAX with x donated), x made afresh before each call outside
    the timed span, as a donated block's input is."""
    out = lambda y: channels_first([y])  # noqa: E731
    x_torch = arrays.torch("x")
    if name == "copy":
        buffer = torch.empty_like(x_torch)
        calls = {"torch": Call(lambda x: torch.neg(x, out=buffer), (x_torch,), _first), "jax": Call(jnp.negative, (arrays.jax("x"),), out)}
    else:
        calls = {"torch": Call(torch.Tensor.neg_, (x_torch,), _first, inplace=0), "jax": Call(jnp.negative, (arrays.jax("x"),), out)}
    reference = _no_grad(lambda: _first(-x_torch))
    return Workload(calls, {"torch": reference, "jax": reference}, donate=0 if name == "copy in-place" else None,
                    bytes=int(MIN_TRAFFIC["copy"] * arrays.values["x"].nbytes))  # fmt: skip


def _op(name: str, arrays: Arrays) -> Workload:
    out = lambda y: channels_first([y])  # noqa: E731
    torch_fn, jax_fn, names = _op_functions(name)
    torch_args = tuple(arrays.torch(n) for n in names)
    calls = {"torch": Call(torch_fn, torch_args, _first), "jax": Call(jax_fn, tuple(arrays.jax(n) for n in names), out)}
    reference = _no_grad(lambda: _first(torch_fn(*torch_args)))
    return Workload(calls, {"torch": reference, "jax": reference})


def build(item: str, variant: str, kind: str, point: Any, arrays: Arrays, layout: str | None = None) -> Workload:
    """The workload of ``item`` at ``point``.

    Args:
      item: a module of the catalog, one of :data:`~bench.plan.COMPONENTS`, or a copy
        (:data:`~bench.plan.COPIES`); for a network point, the attention block (``none``, ``se``
        or a module of the catalog).
      variant: ``fresh``, ``donated``, ``loop`` (modules) or ``copy``.
      kind: ``forward``, ``train`` or ``backward`` (modules).
      point: the point (``channels``, ``num_basis``, ``network``).
      arrays: the point's inputs.
      layout: torch's memory layout of a network point (``channels_last``: torch's calls only).
    """
    if getattr(point, "network", None):
        return _network(point.network, item, kind, point.batch, point.resolution, arrays.device, layout)
    if item in CATALOG:
        if kind in ("train", "backward"):
            return _train(item, point.channels, point.num_basis, arrays, loss_value=kind == "train")
        return _forward(item, variant, point.channels, point.num_basis, arrays)
    if item in ("copy", "copy in-place"):
        return _copy(item, arrays)
    return _op(item, arrays)
