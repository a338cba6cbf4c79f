"""Converters between PyTorch and Flax (NNX and linen) models, and checkpoint I/O: what users call.

The proof that both frameworks agree lives apart, in :mod:`parity.proof` (``python -m parity``);
nothing here imports it. Its two tools that a user comparing frameworks needs,
:func:`shared_dropout_mask` and :func:`pinned_precision`, are importable from here too (loaded
on first use).

>>> import torch, prcm_torch, prcm_jax
>>> from flax import nnx
>>> t = prcm_torch.AffinePRCM(64).eval()
>>> j = torch_to_nnx(t, prcm_jax.AffinePRCM(64, rngs=nnx.Rngs(0)))
>>> j.eval()
>>> x = torch.randn(2, 64, 8, 8)
>>> y = j(x.permute(0, 2, 3, 1).numpy())
>>> bool(abs(y - t(x).permute(0, 2, 3, 1).detach().numpy()).max() < 1e-5)
True
"""

import importlib
from typing import Any

from parity.checkpoint import CheckpointError, load_state_dict
from parity.convert import (
    RULES,
    SUPPORTED_LAYERS,
    ConversionError,
    Rule,
    linen_to_torch,
    nnx_to_torch,
    save_safetensors,
    torch_state_dict,
    torch_to_linen,
    torch_to_nnx,
)

#: Names served from :mod:`parity.proof` on first use (PEP 562), so ``import parity`` does not load it.
_PROOF = {"shared_dropout_mask": "parity.proof.dropout", "pinned_precision": "parity.proof.precision"}


def __getattr__(name: str) -> Any:
    if name in _PROOF:
        return getattr(importlib.import_module(_PROOF[name]), name)
    raise AttributeError(f"module 'parity' has no attribute {name!r}")


__all__ = [
    "torch_to_nnx",
    "nnx_to_torch",
    "torch_to_linen",
    "linen_to_torch",
    "torch_state_dict",
    "save_safetensors",
    "load_state_dict",
    "ConversionError",
    "CheckpointError",
    "Rule",
    "RULES",
    "SUPPORTED_LAYERS",
    "shared_dropout_mask",
    "pinned_precision",
]
