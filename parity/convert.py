"""Weight converters between PyTorch and Flax (NNX and linen), driven by one rule table.

A Flax variable is paired with a torch state_dict key by its path and its leaf name:

* a layer :class:`Rule` renames the leaf for the torch layers it is written for (``kernel``
  <-> ``weight`` with axes moved for ``nn.Linear``/``nn.Conv*``, ``scale`` <-> ``weight`` for
  norms, ``mean`` <-> ``running_mean``, ...); any variable also pairs with the torch key of
  its own name (``basis``, or a raw ``scale`` parameter of a custom module). Of these, the
  key that exists is taken (two that exist are ambiguous), and a layer rule never applies
  to a built-in torch layer it is not written for;
* the module path is compared in a canonical form where ``blocks.0`` (torch),
  ``('blocks', 0)`` (``nnx.List``), ``blocks_0`` (linen setup lists) and the extra
  ``layers`` level of ``nnx.Sequential`` / linen ``nn.Sequential`` all agree.

The same pairing serves both directions. Every unmatched, ambiguous, misshaped or
mistyped key is collected and raised once as a :class:`ConversionError`; the target is
written only after everything checked out, so nothing is half-converted.
"""

from __future__ import annotations

import itertools
import os
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import safetensors.torch
import torch
from flax import nnx
from flax import traverse_util
from flax.core import meta
from flax.nnx import variablelib
from jax.sharding import AbstractMesh, NamedSharding, Sharding
from torch import nn

from parity.arrays import numpy_dtype, to_numpy, to_torch
from parity.checkpoint import TorchSource, load_state_dict

__all__ = [
    "ConversionError",
    "Rule",
    "RULES",
    "SUPPORTED_LAYERS",
    "torch_to_nnx",
    "nnx_to_torch",
    "torch_to_linen",
    "linen_to_torch",
    "torch_state_dict",
    "save_safetensors",
]

Path = tuple[str | int, ...]
FlaxSource = nnx.Module | Mapping[str, Any]


class ConversionError(ValueError):
    """Raised once per conversion with every problem found; the target is left untouched.

    Attributes:
      problems: one line per offending key.
    """

    def __init__(self, what: str, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n  ".join(problems)
        super().__init__(f"{what}: {len(problems)} problem(s), nothing was converted:\n  {lines}")


def _oi_to_io(ndim: int) -> tuple[int, ...]:
    """torch ``(out, in, *kernel)`` -> Flax ``(*kernel, in, out)``; for Linear, a transpose."""
    return (*range(2, ndim), 1, 0)


@dataclass(frozen=True)
class Rule:
    """How one Flax leaf maps to one torch state_dict entry.

    Attributes:
      flax: the Flax leaf name (``kernel``, ``scale``, ...).
      torch: the torch leaf name (``weight``, ``running_mean``, ...).
      collection: the Flax collection (linen) / variable type (NNX) the leaf lives in.
      layers: the torch layers this rule is for; ``()`` means any (raw parameters).
      permute: torch axes -> Flax axes for a given rank; ``None`` copies as is.
    """

    flax: str
    torch: str
    collection: str = "params"
    layers: tuple[type[nn.Module], ...] = ()
    permute: Callable[[int], tuple[int, ...]] | None = None

    def flax_axes(self, ndim: int) -> tuple[int, ...]:
        """Axis order that turns a torch tensor into the Flax array."""
        return tuple(range(ndim)) if self.permute is None else self.permute(ndim)

    def torch_axes(self, ndim: int) -> tuple[int, ...]:
        """Axis order that turns the Flax array back into the torch tensor."""
        return tuple(int(i) for i in np.argsort(self.flax_axes(ndim)))


_LINEAR_CONV = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_NORMS = (*_BATCH_NORMS, nn.LayerNorm, nn.GroupNorm)

#: The rule table, used in both directions.
RULES: tuple[Rule, ...] = (
    Rule("kernel", "weight", layers=_LINEAR_CONV, permute=_oi_to_io),
    Rule("scale", "weight", layers=_NORMS),
    Rule("embedding", "weight", layers=(nn.Embedding,)),
    Rule("mean", "running_mean", "batch_stats", layers=_BATCH_NORMS),
    Rule("var", "running_var", "batch_stats", layers=_BATCH_NORMS),
)
_BY_FLAX = {(rule.collection, rule.flax): rule for rule in RULES}
#: NNX variables and linen collections that hold run-time state, not weights: never converted.
_RUNTIME_VARIABLES = (nnx.RngState, nnx.Intermediate, nnx.Cache, nnx.Perturbation)
_RUNTIME_COLLECTIONS = ("intermediates", "cache", "perturbations")
#: torch.nn layers with parameters that the rules cover.
SUPPORTED_LAYERS: frozenset[type[nn.Module]] = frozenset(itertools.chain.from_iterable(r.layers for r in RULES))
#: torch buffers with no Flax counterpart: dropped on the way in, kept from the target on the way out.
_TORCH_ONLY = ("num_batches_tracked",)
_INDEXED = re.compile(r"^(.*\D)_(\d+)$")


@dataclass(frozen=True)
class _Leaf:
    path: Path
    collection: str
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def name(self) -> str:
        return "/".join(map(str, self.path))


@dataclass(frozen=True)
class _Pair:
    leaf: _Leaf
    key: str
    rule: Rule


def _tokens(segment: str | int) -> tuple[str | int, ...]:
    if isinstance(segment, int) or segment.isdigit():
        return (int(segment),)
    indexed = _INDEXED.match(segment)
    return (indexed[1], int(indexed[2])) if indexed else (segment,)


def _torch_canonical(key: str) -> Path:
    *modules, leaf = key.split(".")
    return (*(t for seg in modules for t in _tokens(seg)), leaf)


def _flax_candidates(modules: Path) -> list[Path]:
    """Canonical forms of a Flax module path; a ``layers`` before an index may be a Sequential's own level."""
    tokens = [t for seg in modules for t in _tokens(seg)]
    options = [
        [(), (tok,)] if tok == "layers" and i + 1 < len(tokens) and isinstance(tokens[i + 1], int) else [(tok,)]
        for i, tok in enumerate(tokens)
    ]
    return sorted({sum(choice, ()) for choice in itertools.product(*options)}, key=len)


def _match(
    leaf: _Leaf, index: Mapping[Path, list[str]], owners: Mapping[str, nn.Module]
) -> tuple[dict[str, Rule], dict[str, str]]:
    """The torch keys a Flax leaf pairs with, and the keys its layer rule found on a torch layer of
    another kind (with why not). A key of the leaf's own name wins (a plain parameter, ``basis``);
    otherwise the layer rule for its name applies, to layers of its kind, to a state_dict, and to a
    user's own module (as ``MyLayerNorm`` holding ``weight``) where the rule is a rename: a
    transposing rule needs the layout of the layer it is written for (a custom ``Conv1D`` keeps
    its weight ``(in, out)``)."""
    name = str(leaf.path[-1])
    paths = _flax_candidates(leaf.path[:-1])
    by_name = Rule(name, name, leaf.collection)
    layer = _BY_FLAX.get((leaf.collection, name))
    exact = [k for c in paths for k in index.get(c + (name,), ())]
    if exact or layer is None:
        return {key: by_name for key in exact}, {}
    found, wrong = {}, {}
    for key in (k for c in paths for k in index.get(c + (layer.torch,), ())):
        owner = owners.get(key.rpartition(".")[0])
        custom = owner is not None and not _is_builtin(owner)
        if owner is None or isinstance(owner, layer.layers) or (custom and layer.permute is None):
            found[key] = layer
        else:
            wrong[key] = (f"torch '{key}' belongs to {_kind(owner)} but Flax '{leaf.name}' is a "
                          f"'{layer.flax}' (for {', '.join(t.__name__ for t in layer.layers)})"
                          + ("; a custom layer's weight layout is its own: if it is nn.Linear's (out, in, ...), convert "
                             "its state_dict" if custom else ""))  # fmt: skip
    return found, wrong


def _expected(leaf: _Leaf) -> str:
    """The torch key(s) a leaf with no match was looking for, for the message."""
    path = ".".join(map(str, _flax_candidates(leaf.path[:-1])[0]))
    layer = _BY_FLAX.get((leaf.collection, str(leaf.path[-1])))
    names = [layer.torch] if layer else []
    return " or ".join(f"{path}.{n}" if path else n for n in dict.fromkeys([*names, str(leaf.path[-1])]))


def _kind(owner: nn.Module) -> str:
    return f"nn.{type(owner).__name__}" if _is_builtin(owner) else type(owner).__name__


def _is_builtin(module: nn.Module) -> bool:
    return type(module).__module__.startswith("torch.nn.")


def _layer_problems(module: nn.Module) -> dict[str, str]:
    """Built-in torch layers with weights that no rule covers, by their name in ``module``."""
    problems = {}
    for name, sub in module.named_modules():
        own = [n for n, _ in itertools.chain(sub.named_parameters(recurse=False), sub.named_buffers(recurse=False))]
        if own and _is_builtin(sub) and type(sub) not in SUPPORTED_LAYERS:
            problems[name] = (
                f"unsupported torch layer nn.{type(sub).__name__} at '{name}' (parameters {own}); "
                f"supported: {', '.join(sorted(t.__name__ for t in SUPPORTED_LAYERS))}"
            )
    return problems


def _pair(what: str, leaves: list[_Leaf], state: Mapping[str, torch.Tensor], module: nn.Module | None) -> list[_Pair]:
    """Pair every Flax leaf with exactly one torch key, or raise once with every problem."""
    unsupported = _layer_problems(module) if module is not None else {}
    problems = list(unsupported.values())
    index: dict[Path, list[str]] = defaultdict(list)
    for key in state:
        if key.rsplit(".", 1)[-1] not in _TORCH_ONLY:
            index[_torch_canonical(key)].append(key)
    owners = dict(module.named_modules()) if module is not None else {}
    pairs, uses = [], Counter()
    for leaf in leaves:
        found, wrong = _match(leaf, index, owners)
        blocked = [key for key in (*found, *wrong) if key.rpartition(".")[0] in unsupported]
        if blocked:  # its torch layer is reported as unsupported, once
            uses.update(blocked)
            continue
        hits = sorted(found)
        uses.update(hits)
        if not hits and wrong:
            problems += wrong.values()
            uses.update(list(wrong))  # reported here, not again as a key with no Flax variable
        elif not hits:
            problems.append(f"Flax '{leaf.name}' {leaf.shape} has no torch key (expected '{_expected(leaf)}')")
        elif len(hits) > 1:
            problems.append(f"Flax '{leaf.name}' is ambiguous: it matches torch keys {hits}")
        else:
            pairs.append(_Pair(leaf, hits[0], found[hits[0]]))
    for keys in index.values():
        for key in keys:
            if uses[key] == 0 and key.rpartition(".")[0] in unsupported:
                continue
            if uses[key] != 1:
                problems.append(f"torch '{key}' {tuple(state[key].shape)} " + (
                    "has no Flax variable" if uses[key] == 0 else "is ambiguous: several Flax variables match it"))  # fmt: skip
    for pair in pairs:
        problems += _mismatches(pair, state[pair.key])
    if problems:
        raise ConversionError(what, problems)
    return pairs


def _mismatches(pair: _Pair, tensor: torch.Tensor) -> list[str]:
    """What is wrong with one pairing: the shape, the dtype."""
    leaf, rule, out = pair.leaf, pair.rule, []
    if rule.permute is not None and len(leaf.shape) < 2:
        return [f"rank mismatch: Flax '{leaf.name}' {leaf.shape} is a '{rule.flax}' paired with torch '{pair.key}' "
                f"{tuple(tensor.shape)}, and a '{rule.flax}' has at least 2 axes"]  # fmt: skip
    expected = tuple(leaf.shape[i] for i in rule.torch_axes(len(leaf.shape)))
    if tuple(tensor.shape) != expected:
        out.append(f"shape mismatch: torch '{pair.key}' {tuple(tensor.shape)} vs Flax '{leaf.name}' {leaf.shape} "
                   f"(which needs torch shape {expected})")  # fmt: skip
    if numpy_dtype(tensor.dtype) != leaf.dtype:
        x64 = tensor.dtype == torch.float64 and leaf.dtype == np.float32 and not jax.config.jax_enable_x64
        out.append(f"dtype mismatch: torch '{pair.key}' {tensor.dtype} vs Flax '{leaf.name}' {leaf.dtype}"
                   + (" (JAX has 64-bit types off: jax.config.update('jax_enable_x64', True) before building the twin)" if x64 else ""))  # fmt: skip
    return out


# -- Flax sides ---------------------------------------------------------------------------


def _leaf(path: Path, collection: str, value: Any) -> _Leaf:
    return _Leaf(tuple(path), collection, tuple(value.shape), np.dtype(value.dtype))


def _collection(var: nnx.Variable) -> str:
    """The linen collection an NNX variable type stands for: the registered name of its class or
    of the nearest registered base (``params``, ``batch_stats``), else its class name."""
    for cls in type(var).__mro__:  # a subclass of nnx.Param (nnx.LoRAParam, ...) is a 'params'
        if cls is nnx.Variable:
            break
        try:
            return variablelib.variable_name_from_type(cls)
        except ValueError:
            continue
    return type(var).__name__


def _nnx_leaves(model: nnx.Module) -> tuple[list[_Leaf], dict[Path, Any]]:
    """Every variable that holds weights (not RNG state, caches, sown intermediates), abstract ones included."""
    if not isinstance(model, nnx.Module):
        raise TypeError(f"expected an nnx.Module, got {type(model).__name__}")
    leaves, values = [], {}
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.Not(_RUNTIME_VARIABLES))):
        value = var.get_value()
        collection = _collection(var)
        leaves.append(_leaf(path, collection, value))
        values[(collection, *path)] = value
    return leaves, values


def _linen_collections(variables: Mapping[str, Any]) -> list[str]:
    return [c for c in variables if c not in _RUNTIME_COLLECTIONS]


def _linen_leaves(variables: Mapping[str, Any]) -> tuple[list[_Leaf], dict[Path, Any]]:
    if not isinstance(variables, Mapping) or "params" not in variables:
        got = sorted(variables) if isinstance(variables, Mapping) else type(variables).__name__
        raise TypeError(f"expected linen variables {{'params': ..., 'batch_stats': ...}}, got {got}")
    leaves, values = [], {}
    for collection in _linen_collections(variables):
        for path, value in traverse_util.flatten_dict(dict(variables[collection])).items():
            leaves.append(_leaf(path, collection, _unboxed(value)))
            values[(collection, *path)] = value  # boxed as given (nn.Partitioned), for placement
    return leaves, values


def _unboxed(value: Any) -> Any:
    """The array inside a linen metadata box (``nn.with_partitioning``'s ``nn.Partitioned``),
    as it is (no sharding constraint applied)."""
    if isinstance(value, meta.Partitioned):
        return value.unbox(apply_constraint=False)
    return value.unbox() if isinstance(value, meta.AxisMetadata) else value


def _flax_leaves(source: FlaxSource) -> tuple[list[_Leaf], dict[Path, Any]]:
    return _nnx_leaves(source) if isinstance(source, nnx.Module) else _linen_leaves(source)


# -- torch -> Flax --------------------------------------------------------------------------


def _where(like: Any) -> Sharding | None:
    """Where the target's value (an array, a ``ShapeDtypeStruct`` or a linen ``nn.Partitioned``
    box) lives: its sharding when committed to one, or named by the abstract value or box;
    ``None`` (uncommitted, the default device) otherwise. A sharding on an abstract mesh (from
    ``nnx.eval_shape`` under ``jax.set_mesh``) resolves against the mesh set now."""
    if isinstance(like, meta.Partitioned):
        inner = _where(_unboxed(like))
        mesh = like.mesh or jax.sharding.get_mesh()
        return inner if inner is not None or mesh.empty else NamedSharding(mesh, like.get_partition_spec())
    sharding = getattr(like, "sharding", None)
    if not (like.committed if isinstance(like, jax.Array) else sharding is not None):
        return None
    if isinstance(sharding, NamedSharding) and isinstance(sharding.mesh, AbstractMesh):
        mesh = jax.sharding.get_mesh()
        if mesh.empty or mesh.abstract_mesh != sharding.mesh:
            raise ValueError(f"its sharding {sharding.spec} is on an abstract mesh {dict(sharding.mesh.shape)}; "
                             "convert inside `with jax.set_mesh(mesh):` with that mesh")  # fmt: skip
        return NamedSharding(mesh, sharding.spec)
    return sharding


def _to_flax(
    what: str, pairs: Iterable[_Pair], state: Mapping[str, torch.Tensor], current: Mapping[Path, Any]
) -> dict[_Leaf, Any]:
    """Each torch value in Flax layout, copied once on the host and put straight where the target's
    was (every place is resolved first, so a bad one converts nothing); boxes stay boxed. One
    tensor's copy is in flight at a time, and every result owns its memory."""
    places, problems = {}, []
    for p in pairs:
        if state[p.key].is_meta:
            problems.append(f"torch '{p.key}' is on the meta device (no values): load the weights into it first")
            continue
        try:
            places[p] = _where(current[(p.leaf.collection, *p.leaf.path)])
        except ValueError as err:
            problems.append(f"Flax '{p.leaf.name}': {err}")
    if problems:
        raise ConversionError(what, problems)
    out = {}
    for p, place in places.items():
        tensor, like = state[p.key], current[(p.leaf.collection, *p.leaf.path)]
        # a copy that nothing else holds: device_put may adopt a host buffer (JAX's CPU client does),
        # and a view of the torch tensor would let the source's next in-place update change a JAX array
        host = np.array(np.transpose(to_numpy(tensor), p.rule.flax_axes(tensor.ndim)), order="C", copy=True)
        value = jax.device_put(host, place)
        out[p.leaf] = like.replace_boxed(value) if isinstance(like, meta.AxisMetadata) else value
    return out


def _fill_abstract_rng_state(model: nnx.Module, seed: int) -> None:
    """RNG state still abstract (an ``nnx.eval_shape`` target; checkpoints hold none) starts
    from ``seed``: stream ``i`` (in state order) gets ``fold_in(key(seed), i)``, counts start at 0."""
    flat = []
    for i, (path, var) in enumerate(nnx.to_flat_state(nnx.state(model, nnx.RngState))):
        like = var.get_value()
        if isinstance(like, jax.ShapeDtypeStruct):
            if isinstance(var, nnx.RngKey):
                key = jax.random.fold_in(jax.random.key(seed), i)
                value = jax.random.split(key, like.shape) if like.shape else key
            else:
                value = jnp.zeros(like.shape, like.dtype)
            flat.append((path, jax.device_put(value, _where(like))))
    if flat:
        nnx.update(model, nnx.from_flat_state(flat))


def torch_to_nnx(source: TorchSource, nnx_module: nnx.Module, *, seed: int = 0) -> nnx.Module:
    """Copy every weight of a PyTorch model into an NNX model, in place.

    Args:
      source: an ``nn.Module``, a state_dict, or a ``.pt``/``.pth``/``.safetensors`` path.
      nnx_module: the NNX twin, or an abstract one (``nnx.eval_shape(lambda: Model(...))``,
        the Flax/Orbax restore pattern). Every variable that holds weights is filled
        (``nnx.Param``, ``nnx.BatchStat``, custom ``nnx.Variable`` types; RNG state, caches and
        sown intermediates are left as they are). Each value goes from host memory straight
        to where the target's lived: its sharding when committed (or named by the abstract
        value), else uncommitted on the default device.
      seed: an abstract target's RNG state (dropout streams), which no checkpoint holds,
        starts from this seed (stream ``i`` gets ``fold_in(key(seed), i)``), so the model runs
        under ``nnx.jit`` and in train mode; a concrete target's RNG state is left alone.

    Returns:
      ``nnx_module``, for chaining.

    Raises:
      ConversionError: with every missing, unexpected, ambiguous, misshaped or mistyped key;
        ``nnx_module`` is then unchanged.

    Examples:
        >>> import prcm_torch, prcm_jax
        >>> t = prcm_torch.PRCM(64)
        >>> j = torch_to_nnx(t, prcm_jax.PRCM(64, rngs=nnx.Rngs(0)))
        >>> bool((np.asarray(j.fuser.kernel[...]) == t.fuser.weight.detach().numpy().T).all())
        True
    """
    state, module = load_state_dict(source)
    leaves, current = _nnx_leaves(nnx_module)
    values = _to_flax("torch -> nnx", _pair("torch -> nnx", leaves, state, module), state, current)
    nnx.update(nnx_module, nnx.from_flat_state([(leaf.path, value) for leaf, value in values.items()]))
    _fill_abstract_rng_state(nnx_module, seed)
    return nnx_module


def torch_to_linen(source: TorchSource, target: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Linen variables holding a PyTorch model's weights.

    Args:
      source: an ``nn.Module``, a state_dict, or a ``.pt``/``.pth``/``.safetensors`` path.
      target: the variables, or their shape tree (``jax.eval_shape(model.init, ...)``), of
        the linen twin; the result has exactly that structure. ``None`` works for a single
        PRCM-family module, whose linen twin is built from the weights' shapes.

    Returns:
      ``{'params': ..., 'batch_stats': ...}`` (the collections the target has).

    Examples:
        >>> import prcm_torch
        >>> variables = torch_to_linen(prcm_torch.SEModule(64))
        >>> jax.tree.map(jnp.shape, variables)
        {'params': {'fc1': {'bias': (16,), 'kernel': (64, 16)}, 'fc2': {'bias': (64,), 'kernel': (16, 64)}}}
    """
    state, module = load_state_dict(source)
    if target is None:
        target = _linen_target(state)
    leaves, current = _linen_leaves(target)
    values = _to_flax("torch -> linen", _pair("torch -> linen", leaves, state, module), state, current)
    out = dict(target)  # run-time collections (intermediates, cache) pass through
    for collection in _linen_collections(target):
        flat = {leaf.path: value for leaf, value in values.items() if leaf.collection == collection}
        out[collection] = traverse_util.unflatten_dict(flat)
    return out


def _linen_target(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The linen shape tree of the single PRCM-family module whose state_dict is ``state``."""
    from prcm.catalog import CATALOG

    keys = set(state)
    for entry in CATALOG.values():
        if keys == set(entry.build_torch(4, device="meta").state_dict()):
            channels, config = entry.config_from_weights({k: tuple(v.shape) for k, v in state.items()})
            dtype = numpy_dtype(next(iter(state.values())).dtype)
            model = entry.linen(**config, param_dtype=dtype)
            x = jax.ShapeDtypeStruct((1, 1, channels), dtype)
            return jax.eval_shape(lambda x: model.init(jax.random.key(0), x, deterministic=True), x)
    raise ValueError(
        f"torch_to_linen without a target converts one PRCM-family module, but the keys {sorted(keys)} "
        "are not those of any; pass target=jax.eval_shape(model.init, key, x) for a network"
    )


# -- Flax -> torch --------------------------------------------------------------------------


def _check_target(torch_module: Any) -> None:
    if not isinstance(torch_module, nn.Module):
        raise TypeError(f"expected a torch nn.Module as the target, got {type(torch_module).__name__}")


def _torch_values(source: FlaxSource, torch_module: nn.Module, torch_only: bool = True) -> Iterator[tuple[str, torch.Tensor]]:
    """Every entry of ``torch_module``'s state_dict from ``source``, as a new CPU tensor in torch's
    layout, one at a time (a caller that writes each into place holds one tensor's copy at a
    time); ``torch_only=False`` leaves out the torch-only buffers (a target that keeps its own).
    Everything is checked when this is called, before the first value is made."""
    _check_target(torch_module)
    leaves, values = _flax_leaves(source)
    state = torch_module.state_dict()
    what = f"{'nnx' if isinstance(source, nnx.Module) else 'linen'} -> torch"
    pairs = {p.key: p for p in _pair(what, leaves, state, torch_module)}
    fill = "torch_to_nnx" if isinstance(source, nnx.Module) else "torch_to_linen"
    problems = []
    for p in pairs.values():
        value = _unboxed(values[(p.leaf.collection, *p.leaf.path)])
        if isinstance(value, jax.ShapeDtypeStruct):
            problems.append(f"Flax '{p.leaf.name}' is abstract (a ShapeDtypeStruct, no values): fill the source first, e.g. with {fill}")
        elif isinstance(value, jax.Array) and value.is_deleted():
            problems.append(f"Flax '{p.leaf.name}' was deleted (donated to a jitted call?): convert the arrays that call returned")
        elif isinstance(value, jax.Array) and not value.is_fully_addressable:
            problems.append(f"Flax '{p.leaf.name}' is not fully addressable from this process (multi-host): gather it first")
    if problems:  # every value can be read: a conversion that starts writing finishes
        raise ConversionError(what, problems)

    def each() -> Iterator[tuple[str, torch.Tensor]]:
        for key, tensor in state.items():
            if key in pairs:
                p = pairs[key]
                value = np.asarray(_unboxed(values[(p.leaf.collection, *p.leaf.path)]))
                yield key, to_torch(np.asarray(np.transpose(value, p.rule.torch_axes(value.ndim)), order="C"))
            elif torch_only:  # a torch-only buffer
                yield key, torch.zeros_like(tensor, device="cpu") if tensor.is_meta else tensor.detach().to("cpu", copy=True)

    return each()


def torch_state_dict(source: FlaxSource, torch_module: nn.Module) -> dict[str, torch.Tensor]:
    """A state_dict for ``torch_module`` holding a Flax model's weights (the module is untouched).

    Only the target's names, shapes and dtypes are read: its tensors are not copied, so a
    skeleton on ``torch.device("meta")`` works.

    Args:
      source: an NNX module, or linen variables ``{'params': ..., 'batch_stats': ...}``.
      torch_module: the PyTorch twin, which gives the names, layouts and torch-only
        buffers (``num_batches_tracked`` is kept from it; zero, a fresh layer's value, where
        the target is on the meta device).

    Returns:
      CPU tensors, loadable with ``torch_module.load_state_dict(..., strict=True)``.
    """
    return dict(_torch_values(source, torch_module))


def _redefines(cls: type, name: str) -> bool:
    """Whether ``cls`` has its own ``name`` (a state_dict method) where the torch layer it derives
    from has none (timm's ``BatchNormAct2d`` refines ``BatchNorm2d``'s own: not counted)."""
    if cls.__module__.startswith("torch.") or getattr(cls, name) is getattr(nn.Module, name):
        return False
    base = next(b for b in cls.__mro__[1:] if b.__module__.startswith("torch.nn"))
    return getattr(base, name) is getattr(nn.Module, name)


def _hooked(module: nn.Module) -> bool:
    """Whether ``module`` or a submodule changes what ``state_dict`` / ``load_state_dict`` do:
    state_dict or load hooks, or its own ``_save_to_state_dict`` / ``_load_from_state_dict``."""
    return any(m._state_dict_hooks or m._state_dict_pre_hooks or m._load_state_dict_pre_hooks or m._load_state_dict_post_hooks
               or _redefines(type(m), "_save_to_state_dict") or _redefines(type(m), "_load_from_state_dict")
               for m in module.modules())  # fmt: skip


def _load(torch_module: nn.Module, source: FlaxSource) -> nn.Module:
    """Fill ``torch_module`` from ``source``. Tensors that hold memory are written in place one
    at a time, as ``load_state_dict`` copies (so the host holds one converted tensor at a time,
    never a second copy of the model); a skeleton with meta tensors takes the converted tensors
    themselves, as with ``assign=True`` (the rest go to the device of the tensor they replace);
    a model whose modules hook or redefine their state_dict goes through ``load_state_dict``."""
    _check_target(torch_module)
    targets = torch_module.state_dict(keep_vars=True)
    meta = any(t.is_meta for t in targets.values())
    whole = meta or _hooked(torch_module)  # the converted tensors become the model, or its hooks decide where they go
    values = _torch_values(source, torch_module, torch_only=whole)  # checks everything first
    if whole:
        state = {k: v if not meta or targets[k].is_meta else v.to(targets[k].device) for k, v in values}
        torch_module.load_state_dict(state, strict=True, assign=meta)
        return torch_module
    with torch.no_grad():
        for key, value in values:  # the torch-only buffers (num_batches_tracked) keep their values
            try:
                targets[key].copy_(value)
            except RuntimeError as err:
                raise RuntimeError(f"while copying '{key}' into the torch model: {err}") from err
    return torch_module


def nnx_to_torch(nnx_module: nnx.Module, torch_module: nn.Module) -> nn.Module:
    """Copy every weight of an NNX model into its PyTorch twin, in place.

    Args:
      nnx_module: the source model.
      torch_module: the target; all its parameters and buffers are filled
        (``num_batches_tracked`` keeps its value). A skeleton built under
        ``with torch.device("meta")`` is filled as ``load_state_dict(assign=True)`` does.

    Returns:
      ``torch_module``, for chaining.

    Examples:
        >>> import prcm_torch, prcm_jax
        >>> t = nnx_to_torch(prcm_jax.ShiftOnlyPRCM(8, rngs=nnx.Rngs(0)), prcm_torch.ShiftOnlyPRCM(8, device="meta"))
        >>> tuple(t.shift_proj.weight.shape), t.shift_proj.weight.device.type
        ((8, 8), 'cpu')
    """
    if not isinstance(nnx_module, nnx.Module):
        raise TypeError(f"expected an nnx.Module as the source, got {type(nnx_module).__name__}")
    return _load(torch_module, nnx_module)


def linen_to_torch(variables: Mapping[str, Any], torch_module: nn.Module) -> nn.Module:
    """Copy linen variables into the PyTorch twin, in place.

    Args:
      variables: ``{'params': ..., 'batch_stats': ...}`` as returned by ``model.init``.
      torch_module: the target; all its parameters and buffers are filled (a meta-device
        skeleton as with ``assign=True``).

    Returns:
      ``torch_module``, for chaining.
    """
    if isinstance(variables, nnx.Module):
        raise TypeError("expected linen variables, got an nnx.Module; use nnx_to_torch")
    return _load(torch_module, variables)


def save_safetensors(source: FlaxSource, torch_module: nn.Module, path: str | os.PathLike) -> None:
    """Write a Flax model's weights as a ``.safetensors`` file with torch names and layouts.

    ``torch_module.load_state_dict(safetensors.torch.load_file(path))`` accepts the file.

    Args:
      source: an NNX module or linen variables.
      torch_module: the PyTorch twin (gives names and layouts; not modified).
      path: the file to write.
    """
    safetensors.torch.save_file(torch_state_dict(source, torch_module), os.fspath(path))
