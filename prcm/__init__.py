"""prcm: the PRCM family of channel-recalibration modules in PyTorch and Flax.

The modules live in :mod:`prcm_torch` (PyTorch, channels-first) and :mod:`prcm_jax`
(Flax NNX; linen twins in :mod:`prcm_jax.linen`, channels-last). :mod:`parity` converts
weights between them and :mod:`bench` measures them. This package holds what both
frameworks share: the module catalog (:mod:`prcm.catalog`) and argument validation.
"""

from prcm.catalog import CATALOG, MODULES, Entry
from prcm.validate import check_basis_config, check_input, check_se_config

__all__ = ["CATALOG", "MODULES", "Entry", "check_input", "check_basis_config", "check_se_config"]
__version__ = "0.1.0"
