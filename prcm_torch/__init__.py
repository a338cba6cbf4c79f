"""PyTorch PRCM-family modules, channels-first ``(B, C, *spatial)``.

State dicts saved from the seed notebook's classes load with ``strict=True``. Every block is a
timm ``attn_layer`` and ``se_layer``; :func:`prcm_torch.timm.swap_attention` puts blocks into a
built timm model (timm is imported only there, when called).

>>> import torch
>>> from prcm_torch import AffinePRCM
>>> tuple(AffinePRCM(64)(torch.randn(1, 64, 32, 32)).shape)
(1, 64, 32, 32)
"""

from prcm_torch.prcm import PRCM, AffinePRCM, AffinePRCMNoDropout, PRCMNoDropout, ShiftOnlyPRCM
from prcm_torch.se import SEModule

__all__ = ["PRCM", "AffinePRCM", "PRCMNoDropout", "AffinePRCMNoDropout", "ShiftOnlyPRCM", "SEModule"]
