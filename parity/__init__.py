"""Converters between the PyTorch and Flax PRCM-family modules, and the tools that prove they agree.

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
from parity.dropout import shared_dropout_mask
from parity.precision import pinned_precision

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
