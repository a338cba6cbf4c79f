"""One catalog: a module that is not in the seed is one entry plus its three classes.

The module below (``ScaleOnlyPRCM``: AffinePRCM without its shift, with dropout) exists only
in this test. Registering its entry is the only edit: the converters, the dropout-mask tool
and the whole parity sweep (every direction and mode) find it through the catalog.
"""

from __future__ import annotations

import dataclasses
import sys
import types

import pytest
import torch

import parity
import prcm_jax.linen.prcm
import prcm_jax.prcm
import prcm_torch.prcm
from parity.proof.check import DIRECTIONS, MODES, cases, run_case
from prcm import CATALOG, Entry


class ScaleOnlyPRCM(prcm_torch.prcm._BasisRecalibration):
    """``x * sigmoid(scale_proj(dropout(mean(x) @ basis.T)))``, PyTorch."""

    scale_name = "scale_proj"
    has_shift = False

    def __init__(self, channels: int, num_basis: int = 8, dropout_rate: float = 0.25, **factory) -> None:
        super().__init__(channels, num_basis, dropout_rate, **factory)


class NNXScaleOnlyPRCM(prcm_jax.prcm._BasisRecalibration):
    """The same, Flax NNX."""

    scale_name = "scale_proj"
    has_shift = False

    def __init__(self, channels: int, num_basis: int = 8, dropout_rate: float = 0.25, **kwargs) -> None:
        super().__init__(channels, num_basis, dropout_rate, **kwargs)


class LinenScaleOnlyPRCM(prcm_jax.linen.prcm._BasisRecalibration):
    """The same, Flax linen."""

    dropout_rate: float = 0.25
    scale_name = "scale_proj"
    has_shift = False


#: One module per framework, holding its class under the entry's name, as prcm_torch,
#: prcm_jax and prcm_jax.linen hold theirs.
PACKAGES = {"scale_only_torch": ScaleOnlyPRCM, "scale_only_nnx": NNXScaleOnlyPRCM, "scale_only_linen": LinenScaleOnlyPRCM}
ENTRY = Entry("ScaleOnlyPRCM", "basis", dropout="coeff_dropout", packages=tuple(PACKAGES))


@pytest.fixture
def registered(monkeypatch):
    for name, cls in PACKAGES.items():
        module = types.ModuleType(name)
        module.ScaleOnlyPRCM = cls
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setitem(CATALOG, ENTRY.name, ENTRY)
    return ENTRY


def test_an_entry_needs_no_seed_name_and_a_known_kind():
    assert Entry("X", "basis").seed_name is None
    with pytest.raises(ValueError, match="kind must be one of basis, se, got 'affine'"):
        Entry("X", "affine")


def test_the_entry_builds_its_three_classes(registered):
    assert registered.torch is ScaleOnlyPRCM and registered.nnx is NNXScaleOnlyPRCM and registered.linen is LinenScaleOnlyPRCM
    built = registered.build_torch(16, num_basis=4, gate="hard_sigmoid")
    assert registered.config_of(built) == {"num_basis": 4, "dropout_rate": 0.25, "gate": "hard_sigmoid"}
    assert sorted(registered.build_torch(16).state_dict()) == ["basis", "scale_proj.weight"]


def test_converters_and_the_dropout_mask_find_it(registered):
    import numpy as np

    block = registered.build_torch(8, num_basis=4)
    variables = parity.torch_to_linen(block)  # no target: found by its keys in the catalog
    assert sorted(variables["params"]) == ["basis", "scale_proj"]
    with parity.shared_dropout_mask(block.train(), np.zeros((2, 4), bool)):
        y = block(torch.ones(2, 8, 3, 3))
    torch.testing.assert_close(y, torch.full_like(y, 0.5))  # every coefficient dropped: sigmoid(0)


@pytest.mark.parametrize("mode", MODES)
def test_the_parity_sweep_runs_on_it(registered, mode):
    found = list(cases(modules=(registered.name,), modes=(mode,), dtypes=("float32",), per_row=1))
    assert {c.direction for c in found} == set(DIRECTIONS)
    for case in found:
        result = run_case(case)
        assert result.ok, dataclasses.asdict(result)


def test_a_bench_latency_point_runs_on_it(registered):
    """The latency suite reads the catalog when it runs: the module is in its point, and a tiny
    copy of that point times it on both frameworks against PRCM, checked against torch."""
    from bench.backends import resolve_device
    from bench.plan import Settings
    from bench.runner import Runner, param_records
    from bench.suites import SUITES

    (point,) = SUITES["latency"].points(Settings(quick=True))
    assert registered.name in point.items
    tiny = dataclasses.replace(point, batch=1, channels=8, resolution=8, num_basis=4, items=("PRCM", registered.name))
    runner = Runner(resolve_device("cpu")[0], ("torch-eager", "jax-jit"), Settings(quick=True, warmup=1, repeat=5), threads=1)
    result = runner.run(tiny)
    mine = {r.backend: r for r in result.records if r.module == registered.name}
    assert set(mine) == {"torch-eager", "jax-jit"}
    assert all(r.status == "ok" and r.median_ms > 0 and r.num_basis == 4 for r in mine.values()), mine
    found = {(c.kind, c.numerator, c.denominator, c.backend) for c in result.comparisons if registered.name in (c.module, c.numerator)}
    assert found == {("backend", "torch-eager", "jax-jit", None), ("module", registered.name, "PRCM", "torch-eager"),
                     ("module", registered.name, "PRCM", "jax-jit")}  # fmt: skip
    assert all(c.p is not None and c.ci95[0] <= c.ratio <= c.ci95[1] for c in result.comparisons)
    counted = {r.backend: r.params for r in param_records(runner.device, runner.backends) if r.module == registered.name and not r.parameter}
    assert counted == {"torch-eager": 2 * 64 * 8, "jax-jit": 2 * 64 * 8}  # the params table counts it too: basis and scale_proj
