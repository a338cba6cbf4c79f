"""Reading PyTorch weights from a module, a state_dict or a checkpoint file, safely.

``.pt`` / ``.pth`` / ``.bin`` files go through ``torch.load(weights_only=True)``, which
refuses pickles that would run code; ``.safetensors`` files are read by safetensors.
Either way the result must be a flat ``{str: Tensor}`` state_dict.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import safetensors
import safetensors.torch
import torch
from torch import nn

from prcm.cli import error_line

__all__ = ["CheckpointError", "TorchSource", "load_state_dict", "PICKLE_SUFFIXES", "SAFETENSORS_SUFFIXES"]

TorchSource = nn.Module | Mapping[str, torch.Tensor] | str | os.PathLike
PICKLE_SUFFIXES = (".pt", ".pth", ".bin")
SAFETENSORS_SUFFIXES = (".safetensors",)


class CheckpointError(ValueError):
    """A checkpoint that cannot be read as a flat PyTorch state_dict."""


def _check_flat(state: object, origin: str) -> dict[str, torch.Tensor]:
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{origin}: expected a state_dict (a mapping of str to Tensor), got {type(state).__name__}")
    bad = [f"{k!r}: {type(v).__name__}" for k, v in state.items() if not (isinstance(k, str) and isinstance(v, torch.Tensor))]
    if bad:
        hint = ""
        nested = [k for k, v in state.items() if isinstance(v, Mapping)]
        if nested:
            hint = f"; it looks like a wrapper, pass the state_dict inside it (e.g. ckpt[{nested[0]!r}])"
        raise CheckpointError(
            f"{origin}: expected a flat state_dict of str -> Tensor, got non-tensor entries {', '.join(bad[:8])}"
            + (f" and {len(bad) - 8} more" if len(bad) > 8 else "") + hint
        )
    return dict(state)


def _read_file(path: Path) -> dict[str, torch.Tensor]:
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder; expected a checkpoint file ({', '.join(PICKLE_SUFFIXES + SAFETENSORS_SUFFIXES)})")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        try:
            return safetensors.torch.load_file(path)
        except (safetensors.SafetensorError, OSError, ValueError) as err:
            raise CheckpointError(f"{path}: not a valid .safetensors file ({err})") from err
    if suffix in PICKLE_SUFFIXES:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
            raise CheckpointError(
                f"{path}: could not be read as a PyTorch state_dict with weights_only=True "
                f"(a pickle that needs code to load is refused; a truncated or foreign file fails): "
                + error_line(err)
            ) from err
        return _check_flat(state, str(path))
    raise CheckpointError(
        f"{path}: unknown checkpoint format {suffix or '(no suffix)'!r}; "
        f"expected one of {', '.join(PICKLE_SUFFIXES + SAFETENSORS_SUFFIXES)}"
    )


def load_state_dict(source: TorchSource) -> tuple[dict[str, torch.Tensor], nn.Module | None]:
    """The state_dict of ``source``, and the module itself when ``source`` is one.

    Args:
      source: an ``nn.Module``, a state_dict, or a path to a ``.pt``/``.pth``/``.bin`` or
        ``.safetensors`` file.

    Examples:
        >>> state, module = load_state_dict(nn.Linear(2, 3))
        >>> sorted(state), type(module).__name__
        (['bias', 'weight'], 'Linear')
    """
    if isinstance(source, nn.Module):
        return source.state_dict(), source
    if isinstance(source, (str, os.PathLike)):
        return _read_file(Path(source)), None
    if isinstance(source, Mapping):
        return _check_flat(source, "state_dict"), None
    raise TypeError(
        "expected an nn.Module, a state_dict or a checkpoint path (.pt, .pth, .bin, .safetensors), "
        f"got {type(source).__name__}"
    )
