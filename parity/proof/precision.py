"""Full-precision float32 matmuls in both frameworks, for comparisons.

On GPUs JAX's default float32 matmul is TF32-like and PyTorch may use TF32 in cuDNN; both
would make parity checks fail for reasons that are not bugs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import jax
import torch

__all__ = ["pinned_precision"]


@contextlib.contextmanager
def pinned_precision() -> Iterator[None]:
    """Inside: JAX matmul precision ``highest``; torch TF32 off for matmul and cuDNN.

    The previous settings come back on exit.

    >>> with pinned_precision():
    ...     jax.config.jax_default_matmul_precision, torch.backends.cuda.matmul.fp32_precision
    ('highest', 'ieee')
    """
    matmul = torch.backends.cuda.matmul.fp32_precision
    cudnn = torch.backends.cudnn.fp32_precision
    torch.backends.cuda.matmul.fp32_precision = "ieee"
    torch.backends.cudnn.fp32_precision = "ieee"
    try:
        with jax.default_matmul_precision("highest"):
            yield
    finally:
        torch.backends.cuda.matmul.fp32_precision = matmul
        torch.backends.cudnn.fp32_precision = cudnn
