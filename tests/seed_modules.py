"""The seed notebook's module definitions, verbatim (shared/seed/000_81167dab639cec7d.txt).

Used only by the tests: state_dicts saved from these classes must load into prcm_torch
with strict=True, and the float64 reference must agree with them.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from prcm.catalog import CATALOG


class PRCM(nn.Module):
    def __init__(self, channels, num_basis=8, dropout_rate=0.5):
        super().__init__()
        self.num_basis = num_basis
        self.channels = channels

        self.basis = nn.Parameter(torch.randn(num_basis, channels))
        self.fuser = nn.Linear(num_basis, channels, bias=False)
        self.coeff_dropout = nn.Dropout(dropout_rate) if dropout_rate > 0 else nn.Identity()

    def forward(self, x):
        B, C, H, W = x.shape
        ctx = x.mean(dim=[2, 3])
        coeff = ctx @ self.basis.t()
        coeff = self.coeff_dropout(coeff)
        w = self.fuser(coeff).sigmoid().unsqueeze(-1).unsqueeze(-1)
        return x * w


class AffinePRCM(nn.Module):
    def __init__(self, channels, num_basis=8, dropout_rate=0.5):
        super().__init__()
        self.num_basis = num_basis
        self.channels = channels

        self.basis = nn.Parameter(torch.randn(num_basis, channels))
        self.scale_proj = nn.Linear(num_basis, channels, bias=False)  # alpha
        self.shift_proj = nn.Linear(num_basis, channels, bias=False)  # beta (NEW)
        self.coeff_dropout = nn.Dropout(dropout_rate) if dropout_rate > 0 else nn.Identity()

    def forward(self, x):
        B, C, H, W = x.shape
        ctx = x.mean(dim=[2, 3])
        coeff = ctx @ self.basis.t()
        coeff = self.coeff_dropout(coeff)
        alpha = self.scale_proj(coeff).sigmoid().unsqueeze(-1).unsqueeze(-1)
        beta = self.shift_proj(coeff).unsqueeze(-1).unsqueeze(-1)
        return x * alpha + beta


class PRCM_NoDropout(nn.Module):
    def __init__(self, channels, num_basis=8):
        super().__init__()
        self.basis = nn.Parameter(torch.randn(num_basis, channels))
        self.fuser = nn.Linear(num_basis, channels, bias=False)

    def forward(self, x):
        ctx = x.mean(dim=[2, 3])
        coeff = ctx @ self.basis.t()
        w = self.fuser(coeff).sigmoid().unsqueeze(-1).unsqueeze(-1)
        return x * w


class AffinePRCM_NoDropout(nn.Module):
    def __init__(self, channels, num_basis=8):
        super().__init__()
        self.basis = nn.Parameter(torch.randn(num_basis, channels))
        self.scale_proj = nn.Linear(num_basis, channels, bias=False)
        self.shift_proj = nn.Linear(num_basis, channels, bias=False)

    def forward(self, x):
        ctx = x.mean(dim=[2, 3])
        coeff = ctx @ self.basis.t()
        alpha = self.scale_proj(coeff).sigmoid().unsqueeze(-1).unsqueeze(-1)
        beta = self.shift_proj(coeff).unsqueeze(-1).unsqueeze(-1)
        return x * alpha + beta


class ShiftOnlyPRCM(nn.Module):
    def __init__(self, channels, num_basis=8):
        super().__init__()
        self.basis = nn.Parameter(torch.randn(num_basis, channels))
        self.shift_proj = nn.Linear(num_basis, channels, bias=False)

    def forward(self, x):
        ctx = x.mean(dim=[2, 3])
        coeff = ctx @ self.basis.t()
        beta = self.shift_proj(coeff).unsqueeze(-1).unsqueeze(-1)
        return x + beta


class SE_Module(nn.Module):
    def __init__(self, channels, reduction=4):
        super().__init__()
        self.fc1 = nn.Linear(channels, channels // reduction)
        self.fc2 = nn.Linear(channels // reduction, channels)

    def forward(self, x):
        ctx = x.mean(dim=[2, 3])
        w = self.fc2(F.relu(self.fc1(ctx))).sigmoid().unsqueeze(-1).unsqueeze(-1)
        return x * w


#: our class name -> the seed's class, through the catalog's seed names (modules not in the seed have none)
SEED = {entry.name: globals()[entry.seed_name] for entry in CATALOG.values() if entry.seed_name}
#: The seed notebook's parameter table (C=64, K=8), by the seed's class name.
SEED_PARAMS = {"PRCM": 1024, "AffinePRCM": 1536, "PRCM_NoDropout": 1024, "AffinePRCM_NoDropout": 1536,
               "ShiftOnlyPRCM": 1024, "SE_Module": 2128}  # fmt: skip
