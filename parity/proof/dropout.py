"""Giving a PyTorch model the dropout mask a JAX model drew.

RNG streams cannot be shared between the frameworks, so the JAX side draws the mask
(``prcm_jax.functional.keep_mask(key, rate, (B, num_basis))``, the mask the modules
apply when called with that key) and the torch side is made to apply it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from parity.arrays import to_torch
from prcm.catalog import CATALOG

__all__ = ["shared_dropout_mask"]


@contextlib.contextmanager
def shared_dropout_mask(module: nn.Module, keep: np.ndarray | torch.Tensor) -> Iterator[None]:
    """Inside the block, every PRCM-family block of ``module`` with dropout applies ``keep`` in train mode.

    The blocks are found through the catalog (:mod:`prcm.catalog`): instances of its torch
    classes anywhere in ``module`` (a timm network included) whose dropout layer, the
    attribute the catalog names, is an ``nn.Dropout`` (not an ``nn.Identity`` at rate 0).

    The output is ``coeff * keep * (1 / (1 - p))``, the arithmetic of ``torch.nn.Dropout``
    (a dropped NaN stays NaN), with the given mask instead of a fresh draw.

    Args:
      module: a PRCM-family module, or a network of them.
      keep: boolean mask shaped like the coefficients, ``(B, num_basis)``.

    >>> import prcm_torch
    >>> m = prcm_torch.PRCM(8, num_basis=4, dropout_rate=0.5)
    >>> with shared_dropout_mask(m, np.zeros((2, 4), bool)):
    ...     y = m(torch.ones(2, 8, 3, 3))
    >>> torch.allclose(y, torch.full_like(y, 0.5))  # every coefficient dropped: sigmoid(0)
    True
    """
    keep = torch.as_tensor(keep) if isinstance(keep, torch.Tensor) else to_torch(np.asarray(keep))
    if keep.dtype != torch.bool:
        raise TypeError(f"shared_dropout_mask: expected a boolean keep-mask, got {keep.dtype}")
    entries = [entry for entry in CATALOG.values() if entry.dropout]
    found = (getattr(m, e.dropout) for m in module.modules() for e in entries if isinstance(m, e.torch))
    layers = list({id(layer): layer for layer in found if isinstance(layer, nn.Dropout)}.values())
    if not layers:
        raise ValueError(f"shared_dropout_mask: the module has no block with dropout (an instance of "
                         f"{', '.join(e.name for e in entries)} with dropout_rate > 0)")  # fmt: skip

    def apply_mask(layer: nn.Module, inputs: tuple[torch.Tensor], output: torch.Tensor) -> torch.Tensor:
        if not layer.training:
            return output
        (coeff,) = inputs
        if tuple(coeff.shape) != tuple(keep.shape):
            raise ValueError(f"shared_dropout_mask: mask shape {tuple(keep.shape)} != coefficients {tuple(coeff.shape)}")
        return coeff * keep.to(coeff.device, coeff.dtype) * (1.0 / (1.0 - layer.p))

    handles = [layer.register_forward_hook(apply_mask) for layer in layers]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
