"""The module family, once: one :class:`Entry` per module, read by parity, bench and the tests.

An entry names the module's class (the same name in :mod:`prcm_torch`, :mod:`prcm_jax` and
:mod:`prcm_jax.linen`, or in the modules its ``packages`` name), which math it computes
(``kind``: the basis recalibration of the PRCM variants, or squeeze-and-excitation), for the
modules that apply dropout in train mode the torch attribute of their dropout layer, and, for
the modules of the seed notebook, the seed's name. The classes are looked up by name when
first asked for, so importing the catalog imports neither framework.

Adding a module is one entry plus its three classes: in this package, an entry below; anywhere
else (a test, a user's own block), ``CATALOG[name] = Entry(name, kind, packages=(...))``.
Parity, the benchmark and the tests read :data:`CATALOG` when they run. A new ``kind`` also
needs its float64 reference math (``parity.proof.reference.HEADS``) and its :data:`KINDS` row.

>>> CATALOG["AffinePRCM"].seed_name, CATALOG["AffinePRCM"].dropout
('AffinePRCM', 'coeff_dropout')
>>> CATALOG["SEModule"].config(64, num_basis=8)
{'reduction': 4}
>>> [e.name for e in CATALOG.values() if e.dropout]
['PRCM', 'AffinePRCM']
>>> import prcm_torch
>>> CATALOG["AffinePRCM"].config_of(prcm_torch.AffinePRCM(64, num_basis=4, dropout_rate=0.25))
{'num_basis': 4, 'dropout_rate': 0.25}
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Entry", "CATALOG", "MODULES", "KINDS"]


def _basis_config(channels: int, num_basis: int) -> dict[str, int]:
    return {"num_basis": num_basis}


def _se_config(channels: int, num_basis: int) -> dict[str, int]:
    return {"reduction": 4 if channels >= 4 else 1}


def _basis_from_weights(shapes: Mapping[str, tuple[int, ...]]) -> tuple[int, dict[str, int]]:
    num_basis, channels = shapes["basis"]
    return channels, {"num_basis": num_basis}


def _se_from_weights(shapes: Mapping[str, tuple[int, ...]]) -> tuple[int, dict[str, int]]:
    hidden, channels = shapes["fc1.weight"]
    return channels, {"reduction": channels // max(hidden, 1)}


#: kind -> (constructor arguments besides ``channels`` for a sweep point, the same read back
#: from torch weight shapes). ``num_basis`` means nothing to squeeze-and-excitation, whose
#: hidden width is ``channels // 4`` (``channels`` itself below 4 channels).
KINDS: dict[str, tuple[Callable[[int, int], dict[str, int]], Callable[[Mapping[str, tuple[int, ...]]], tuple[int, dict[str, int]]]]] = {
    "basis": (_basis_config, _basis_from_weights),
    "se": (_se_config, _se_from_weights),
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
    """

    name: str
    kind: str
    dropout: str | None = None
    seed_name: str | None = None
    packages: tuple[str, str, str] = ("prcm_torch", "prcm_jax", "prcm_jax.linen")

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

    def config(self, channels: int, num_basis: int = 8) -> dict[str, int]:
        """Constructor arguments besides ``channels`` for a point of a sweep over ``num_basis``.

        Args:
          channels: the channel count ``C``.
          num_basis: ``K`` for the PRCM variants (ignored by squeeze-and-excitation).
        """
        return KINDS[self.kind][0](channels, num_basis)

    def config_from_weights(self, shapes: Mapping[str, tuple[int, ...]]) -> tuple[int, dict[str, int]]:
        """``(channels, config)`` read from torch state_dict shapes (``{'basis': (K, C), ...}``)."""
        return KINDS[self.kind][1](shapes)

    def config_of(self, module: Any) -> dict[str, Any]:
        """The constructor arguments besides ``channels`` that a built torch module was given
        (``num_basis`` and ``dropout_rate``, or ``reduction``), read from its attributes.

        Args:
          module: an instance of :attr:`torch`.
        """
        if not isinstance(module, self.torch):
            raise TypeError(f"config_of needs a prcm_torch.{self.name}, got {type(module).__module__}.{type(module).__qualname__}")
        names = [*self.config(1, 1), *(["dropout_rate"] if self.dropout else [])]
        return {name: getattr(module, name) for name in names}

    def build_torch(self, channels: int, num_basis: int = 8, **factory: Any) -> Any:
        """The PyTorch module (``factory``: ``device=``, ``dtype=``)."""
        return self.torch(channels, **self.config(channels, num_basis), **factory)

    def build_nnx(self, channels: int, num_basis: int = 8, *, seed: int = 0, **kwargs: Any) -> Any:
        """The NNX module with ``rngs=nnx.Rngs(seed)`` (``kwargs``: ``param_dtype``, ``dtype``, ...)."""
        from flax import nnx

        kwargs.setdefault("rngs", nnx.Rngs(seed))
        return self.nnx(channels, **self.config(channels, num_basis), **kwargs)

    def build_linen(self, channels: int, num_basis: int = 8, **kwargs: Any) -> Any:
        """The linen module (channels come from the input)."""
        return self.linen(**self.config(channels, num_basis), **kwargs)


CATALOG: dict[str, Entry] = {
    e.name: e
    for e in (
        Entry("PRCM", "basis", dropout="coeff_dropout", seed_name="PRCM"),
        Entry("AffinePRCM", "basis", dropout="coeff_dropout", seed_name="AffinePRCM"),
        Entry("PRCMNoDropout", "basis", seed_name="PRCM_NoDropout"),
        Entry("AffinePRCMNoDropout", "basis", seed_name="AffinePRCM_NoDropout"),
        Entry("ShiftOnlyPRCM", "basis", seed_name="ShiftOnlyPRCM"),
        Entry("SEModule", "se", seed_name="SE_Module"),
    )
}
#: This package's own modules, in the seed's order (:data:`CATALOG` also holds any added at run time).
MODULES: tuple[str, ...] = tuple(CATALOG)
