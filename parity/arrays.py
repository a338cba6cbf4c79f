"""Exact transfers between torch tensors and NumPy / JAX arrays.

bfloat16 has no NumPy dtype of its own; JAX's ``ml_dtypes.bfloat16`` stands in, and the
bits are moved through an int16 view so nothing is rounded.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import torch

__all__ = ["to_numpy", "to_torch", "numpy_dtype"]

_BITS = {torch.bfloat16: (torch.int16, np.dtype(ml_dtypes.bfloat16))}


def numpy_dtype(dtype: torch.dtype) -> np.dtype:
    """The NumPy dtype that holds a torch dtype's values exactly.

    Args:
      dtype: a torch dtype.

    >>> str(numpy_dtype(torch.bfloat16)), str(numpy_dtype(torch.float32))
    ('bfloat16', 'float32')
    """
    if dtype in _BITS:
        return _BITS[dtype][1]
    return torch.empty((), dtype=dtype).numpy().dtype


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A NumPy array with the tensor's exact values (on the CPU, detached).

    Args:
      tensor: any torch tensor, bfloat16 included.

    >>> a = to_numpy(torch.tensor([1.5, -2.0], dtype=torch.bfloat16))
    >>> a.dtype == ml_dtypes.bfloat16, a.astype(np.float32).tolist()
    (True, [1.5, -2.0])
    """
    tensor = tensor.detach().cpu()
    if tensor.dtype in _BITS:
        bits, dtype = _BITS[tensor.dtype]
        return tensor.view(bits).numpy().view(dtype)
    return tensor.numpy()


def to_torch(array: np.ndarray) -> torch.Tensor:
    """A CPU torch tensor with the array's exact values (a copy).

    Args:
      array: a NumPy or JAX array, bfloat16 included.

    >>> to_torch(np.array([1.5], dtype=ml_dtypes.bfloat16)).dtype
    torch.bfloat16
    """
    array = np.array(array, copy=True)
    for torch_dtype, (bits, dtype) in _BITS.items():
        if array.dtype == dtype:
            return torch.from_numpy(array.view(np.int16)).view(torch_dtype)
    return torch.from_numpy(array)
