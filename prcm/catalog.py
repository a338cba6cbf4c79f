"""The module family, once: one :class:`Entry` per module, read by parity, bench and the tests.

An entry names the module's class (the same name in :mod:`prcm_torch`, :mod:`prcm_jax` and
:mod:`prcm_jax.linen`, or in the modules its ``packages`` name), which math it computes
(``kind``: the basis recalibration of the PRCM variants, or squeeze-and-excitation), for the
modules that apply dropout in train mode the torch attribute of their dropout layer, and, for
the modules of the seed notebook, the seed's name. The classes are looked up by name when
first asked for, so importing the catalog imports neither framework.

Adding a module is one entry plus its three classes (exported by their packages): here, an
entry below; anywhere else (a test, a user's own block), ``CATALOG[name] = Entry(name, kind,
packages=(...))``.
Parity, the benchmark and the tests read :data:`CATALOG` when they run. A new ``kind`` also
needs its float64 reference math (``parity.proof.reference.HEADS``) and its :data:`KINDS` row.
An option (:data:`OPTIONS`: the gate, SE's hidden activation) is a keyword of the same name
in every framework; :meth:`Entry.config_of` reads it back from a torch block.

Examples:
    >>> CATALOG["AffinePRCM"].seed_name, CATALOG["AffinePRCM"].dropout
    ('AffinePRCM', 'coeff_dropout')
    >>> CATALOG["SEModule"].config(64, num_basis=8)
    {'reduction': 4}
    >>> tuple(e.name for e in CATALOG.values() if e.dropout)
    ('PRCM', 'AffinePRCM')
    >>> CATALOG["ShiftOnlyPRCM"].options, CATALOG["SEModule"].options
    ((), ('gate', 'act_layer'))
    >>> import prcm_torch
    >>> CATALOG["AffinePRCM"].config_of(prcm_torch.AffinePRCM(64, num_basis=4, dropout_rate=0.25, gate="hard_sigmoid"))
    {'num_basis': 4, 'dropout_rate': 0.25, 'gate': 'hard_sigmoid'}
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from prcm.validate import ACTIVATIONS, GATES

__all__ = ["Entry", "Kind", "CATALOG", "MODULES", "KINDS", "OPTIONS"]

#: The options a block may take besides its sizes (not parameters: no weight changes with
#: them), with their values: every framework's blocks take them by these names.
OPTIONS: dict[str, tuple[str, ...]] = {"gate": GATES, "act_layer": ACTIVATIONS}


def _basis_config(channels: int, num_basis: int) -> dict[str, int]:
    return {"num_basis": num_basis}


def _se_config(channels: int, num_basis: int) -> dict[str, int]:
    return {"reduction": 4 if channels >= 4 else 1}


def _basis_from_weights(shapes: Mapping[str, tuple[int, ...]]) -> tuple[int, dict[str, int]]:
    num_basis, channels = shapes["basis"]
    return channels, {"num_basis": num_basis}


def _se_from_weights(shapes: Mapping[str, tuple[int, ...]]) -> tuple[int, dict[str, int]]:
    hidden, channels = shapes["fc1.weight"]
    return channels, {"rd_channels": hidden}


def _basis_sizes(module: Any) -> dict[str, Any]:
    return {"num_basis": module.num_basis}


def _se_sizes(module: Any) -> dict[str, Any]:
    return {"reduction": module.reduction} if module.reduction is not None else {"rd_channels": module.rd_channels}


class Kind(NamedTuple):
    """How a kind of module is built and read back.

    Attributes:
      config: constructor arguments besides ``channels`` for a sweep point ``(C, K)``.
      from_weights: ``(channels, config)`` read from torch weight shapes.
      sizes: the size arguments a built torch module was given, read from its attributes.
      options: the :data:`OPTIONS` it takes.
      variants: the option values the parity sweep runs it with (each a dict of options).
    """

    config: Callable[[int, int], dict[str, int]]
    from_weights: Callable[[Mapping[str, tuple[int, ...]]], tuple[int, dict[str, int]]]
    sizes: Callable[[Any], dict[str, Any]]
    options: tuple[str, ...]
    variants: tuple[dict[str, str], ...]


#: kind -> its :class:`Kind`. ``num_basis`` means nothing to squeeze-and-excitation, whose
#: hidden width is ``channels // 4`` at a sweep point (``channels`` itself below 4 channels).
#: The sweep runs the basis blocks with each gate, and SE with the gate and activation of each
#: network family: the seed and ResNets (sigmoid, ReLU), EfficientNet (sigmoid, SiLU),
#: MobileNetV3 (hard sigmoid, ReLU), MobileNetV3-rw / LCNet (hard sigmoid, hard swish).
KINDS: dict[str, Kind] = {
    "basis": Kind(_basis_config, _basis_from_weights, _basis_sizes, ("gate",), tuple({"gate": g} for g in GATES)),
    "se": Kind(_se_config, _se_from_weights, _se_sizes, ("gate", "act_layer"), (
        {"gate": "sigmoid", "act_layer": "relu"}, {"gate": "sigmoid", "act_layer": "silu"},
        {"gate": "hard_sigmoid", "act_layer": "relu"}, {"gate": "hard_sigmoid", "act_layer": "hard_swish"})),
}  # fmt: skip


@dataclass(frozen=True)
class Entry:
    """One module of the family.

    Attributes:
      name: the class name in each of ``packages``.
      kind: ``"basis"`` (the PRCM variants) or ``"se"`` (squeeze-and-excitation): which
        math, constructor arguments and reference it has.
      dropout: the attribute of the torch module's dropout layer (on the coefficients, in
        train mode), or ``None`` for a module without dropout; true-ish exactly when it has one.
      seed_name: the seed notebook's class name (whose state_dicts load strictly), or ``None``
        for a module that is not in the seed.
      packages: the modules holding the PyTorch, Flax NNX and Flax linen classes.
      gated: whether it has a gate (``ShiftOnlyPRCM`` has none: it accepts ``gate`` and
        ignores it, so ``gate`` is not among its :attr:`options`).
    """

    name: str
    kind: str
    dropout: str | None = None
    seed_name: str | None = None
    packages: tuple[str, str, str] = ("prcm_torch", "prcm_jax", "prcm_jax.linen")
    gated: bool = True

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Entry {self.name!r}: kind must be one of {', '.join(KINDS)}, got {self.kind!r}")

    @property
    def torch(self) -> type:
        """The PyTorch class."""
        return getattr(importlib.import_module(self.packages[0]), self.name)

    @property
    def nnx(self) -> type:
        """The Flax NNX class."""
        return getattr(importlib.import_module(self.packages[1]), self.name)

    @property
    def linen(self) -> type:
        """The Flax linen class."""
        return getattr(importlib.import_module(self.packages[2]), self.name)

    @property
    def has_basis(self) -> bool:
        """Whether ``num_basis`` is one of its arguments."""
        return "num_basis" in self.config(1, 1)

    @property
    def options(self) -> tuple[str, ...]:
        """The :data:`OPTIONS` that change what it computes."""
        return tuple(o for o in KINDS[self.kind].options if self.gated or o != "gate")

    @property
    def variants(self) -> tuple[dict[str, str], ...]:
        """The option values the parity sweep runs it with (``({},)`` for a module with none)."""
        picked = ({k: v for k, v in variant.items() if k in self.options} for variant in KINDS[self.kind].variants)
        return tuple({tuple(v.items()): v for v in picked}.values())

    def config(self, channels: int, num_basis: int = 8, **options: str) -> dict[str, Any]:
        """Constructor arguments besides ``channels`` for a point of a sweep over ``num_basis``.

        Args:
          channels: the channel count ``C``.
          num_basis: ``K`` for the PRCM variants (ignored by squeeze-and-excitation).
          **options: values of its :attr:`options` (``gate=``, ``act_layer=``).
        """
        wrong = [k for k in options if k not in self.options]
        if wrong:
            raise TypeError(f"{self.name} takes the options {list(self.options)}, not {wrong}")
        return {**KINDS[self.kind].config(channels, num_basis), **options}

    def config_from_weights(self, shapes: Mapping[str, tuple[int, ...]]) -> tuple[int, dict[str, int]]:
        """``(channels, config)`` read from torch state_dict shapes (``{'basis': (K, C), ...}``);
        options are not weights, so they keep their defaults."""
        return KINDS[self.kind].from_weights(shapes)

    def config_of(self, module: Any) -> dict[str, Any]:
        """The constructor arguments besides ``channels`` that a built torch module was given,
        read from its attributes: its sizes (``num_basis``, or ``reduction`` / ``rd_channels``),
        ``dropout_rate`` if it has dropout, and its :attr:`options` (``gate``, ``act_layer``),
        which the NNX and linen classes take by the same names.

        Args:
          module: an instance of :attr:`torch`.
        """
        if not isinstance(module, self.torch):
            raise TypeError(f"config_of needs a prcm_torch.{self.name}, got {type(module).__module__}.{type(module).__qualname__}")
        extra = [*(["dropout_rate"] if self.dropout else []), *self.options]
        return {**KINDS[self.kind].sizes(module), **{name: getattr(module, name) for name in extra}}

    def _split(self, kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        options = {k: kwargs.pop(k) for k in list(kwargs) if k in OPTIONS}
        return options, kwargs

    def build_torch(self, channels: int, num_basis: int = 8, **kwargs: Any) -> Any:
        """The PyTorch module (``kwargs``: options, and ``device=``, ``dtype=``)."""
        options, factory = self._split(kwargs)
        return self.torch(channels, **self.config(channels, num_basis, **options), **factory)

    def build_nnx(self, channels: int, num_basis: int = 8, *, seed: int = 0, **kwargs: Any) -> Any:
        """The NNX module with ``rngs=nnx.Rngs(seed)`` (``kwargs``: options, ``param_dtype``, ``dtype``, ...)."""
        from flax import nnx

        options, kwargs = self._split(kwargs)
        kwargs.setdefault("rngs", nnx.Rngs(seed))
        return self.nnx(channels, **self.config(channels, num_basis, **options), **kwargs)

    def build_linen(self, channels: int, num_basis: int = 8, **kwargs: Any) -> Any:
        """The linen module (channels come from the input; ``kwargs``: options, ``param_dtype``, ...)."""
        options, kwargs = self._split(kwargs)
        return self.linen(**self.config(channels, num_basis, **options), **kwargs)


CATALOG: dict[str, Entry] = {
    e.name: e
    for e in (
        Entry("PRCM", "basis", dropout="coeff_dropout", seed_name="PRCM"),
        Entry("AffinePRCM", "basis", dropout="coeff_dropout", seed_name="AffinePRCM"),
        Entry("PRCMNoDropout", "basis", seed_name="PRCM_NoDropout"),
        Entry("AffinePRCMNoDropout", "basis", seed_name="AffinePRCM_NoDropout"),
        Entry("ShiftOnlyPRCM", "basis", seed_name="ShiftOnlyPRCM", gated=False),
        Entry("SEModule", "se", seed_name="SE_Module"),
    )
}
#: This package's own modules, in the seed's order (:data:`CATALOG` also holds any added at run time).
MODULES: tuple[str, ...] = tuple(CATALOG)
