"""Flax NNX PRCM-family modules, channels-last ``(B, *spatial, C)``.

Linen twins with the same names live in :mod:`prcm_jax.linen`; the shared math in
:mod:`prcm_jax.functional`.

Examples:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from prcm_jax import AffinePRCM
    >>> AffinePRCM(64, rngs=nnx.Rngs(0))(jnp.ones((1, 32, 32, 64)), deterministic=True).shape
    (1, 32, 32, 64)
"""

from prcm_jax.params import LinearParams
from prcm_jax.prcm import PRCM, AffinePRCM, AffinePRCMNoDropout, PRCMNoDropout, ShiftOnlyPRCM
from prcm_jax.se import SEModule

__all__ = ["PRCM", "AffinePRCM", "PRCMNoDropout", "AffinePRCMNoDropout", "ShiftOnlyPRCM", "SEModule", "LinearParams"]
