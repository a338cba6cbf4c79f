"""prcm: the PRCM family of channel-recalibration modules in PyTorch and Flax.

The modules live in :mod:`prcm_torch` (PyTorch, channels-first) and :mod:`prcm_jax`
(Flax NNX; linen twins in :mod:`prcm_jax.linen`, channels-last). :mod:`parity` converts
weights between them and :mod:`bench` measures them. This package holds what both
frameworks share: the module catalog and argument validation.
"""

from prcm.validate import check_input, check_basis_config, check_se_config

__all__ = ["MODULES", "DROPOUT_MODULES", "check_input", "check_basis_config", "check_se_config"]
__version__ = "0.1.0"

#: The six modules, by the class name each framework uses.
MODULES: tuple[str, ...] = (
    "PRCM",
    "AffinePRCM",
    "PRCMNoDropout",
    "AffinePRCMNoDropout",
    "ShiftOnlyPRCM",
    "SEModule",
)
#: The modules that apply dropout to their basis coefficients in train mode.
DROPOUT_MODULES: tuple[str, ...] = ("PRCM", "AffinePRCM")
