"""The six modules side by side: each class in torch, NNX and linen, and how to build them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jax
import torch
from flax import linen, nnx
from torch import nn

import prcm_jax
import prcm_jax.linen
import prcm_torch
from prcm import MODULES
from parity.arrays import numpy_dtype

__all__ = ["Twin", "TWINS", "linen_target"]


@dataclass(frozen=True)
class Twin:
    """One module in the three APIs.

    Attributes:
      name: the class name, the same in all three.
      torch: the PyTorch class.
      nnx: the Flax NNX class.
      linen: the Flax linen class.
    """

    name: str
    torch: type[nn.Module]
    nnx: type[nnx.Module]
    linen: type[linen.Module]

    def config(self, channels: int, num_basis: int) -> dict[str, int]:
        """Constructor arguments besides ``channels``: ``num_basis``, or SE's ``reduction``."""
        if self.name == "SEModule":
            return {"reduction": 4 if channels >= 4 else 1}
        return {"num_basis": num_basis}

    def build_torch(self, channels: int, num_basis: int = 8, dtype: torch.dtype = torch.float32) -> nn.Module:
        """The PyTorch module, in ``dtype``."""
        return self.torch(channels, **self.config(channels, num_basis)).to(dtype)

    def build_nnx(self, channels: int, num_basis: int = 8, *, seed: int = 0, **kwargs: Any) -> nnx.Module:
        """The NNX module (``kwargs``: ``param_dtype``, ``dtype``, ``precision``)."""
        return self.nnx(channels, **self.config(channels, num_basis), **kwargs, rngs=nnx.Rngs(seed))

    def build_linen(self, channels: int, num_basis: int = 8, **kwargs: Any) -> linen.Module:
        """The linen module (channels come from the input)."""
        return self.linen(**self.config(channels, num_basis), **kwargs)


TWINS: dict[str, Twin] = {
    name: Twin(name, getattr(prcm_torch, name), getattr(prcm_jax, name), getattr(prcm_jax.linen, name))
    for name in MODULES
}


def _identify(state: Mapping[str, torch.Tensor]) -> tuple[Twin, int, int]:
    keys = set(state)
    for twin in TWINS.values():
        if keys == set(twin.build_torch(4).state_dict()):
            if twin.name == "SEModule":
                hidden, channels = state["fc1.weight"].shape
                return twin, channels, channels // max(hidden, 1)
            num_basis, channels = state["basis"].shape
            return twin, channels, num_basis
    raise ValueError(
        f"torch_to_linen without a target converts one PRCM-family module, but the keys {sorted(keys)} "
        "are not those of any; pass target=jax.eval_shape(model.init, key, x) for a network"
    )


def linen_target(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The linen shape tree of the single PRCM-family module whose state_dict is ``state``."""
    twin, channels, num_basis = _identify(state)
    dtype = numpy_dtype(next(iter(state.values())).dtype)
    config = {"reduction": num_basis} if twin.name == "SEModule" else {"num_basis": num_basis}
    model = twin.linen(**config, param_dtype=dtype)
    x = jax.ShapeDtypeStruct((1, 1, channels), dtype)
    return jax.eval_shape(lambda x: model.init(jax.random.key(0), x, deterministic=True), x)
