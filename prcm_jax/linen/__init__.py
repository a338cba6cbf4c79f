"""Flax linen twins of the PRCM-family modules: same class names, channels inferred.

Examples:
    >>> import jax, jax.numpy as jnp
    >>> from prcm_jax.linen import PRCM
    >>> y, variables = PRCM().init_with_output(jax.random.key(0), jnp.ones((1, 8, 8, 64)), deterministic=True)
    >>> y.shape
    (1, 8, 8, 64)
"""

from prcm_jax.linen.params import LinearParams
from prcm_jax.linen.prcm import PRCM, AffinePRCM, AffinePRCMNoDropout, PRCMNoDropout, ShiftOnlyPRCM
from prcm_jax.linen.se import SEModule

__all__ = [
    "PRCM",
    "AffinePRCM",
    "PRCMNoDropout",
    "AffinePRCMNoDropout",
    "ShiftOnlyPRCM",
    "SEModule",
    "LinearParams",
]
