"""ONNX: every prcm_torch block (each gate and SE activation) and timm networks holding PRCM
blocks export with ``torch.onnx.export(..., dynamo=True)`` and a dynamic batch; onnxruntime
runs the graph at two other batch sizes.

Tolerances, derived rather than picked:

* a block: onnxruntime evaluates the same float32 formula as torch, so it is held to the
  module sweep's contract against the float64 reference: ``max|ort - ref| <= eps x limit x
  max(bound)`` with the bound and :func:`parity.proof.check.bound_limit` of
  :mod:`parity.proof.reference` (both torch and onnxruntime meet it, so they differ by at most
  twice that); and, in eps of the output scale ``max|ref|``, as a network below;
* a network: the float64 copy of the timm model is the reference, and onnxruntime's error may
  be :data:`parity.proof.networks.TYPICAL_LIMIT` times torch float32's own (at least
  :data:`~parity.proof.networks.FLOOR` eps), normwise and elementwise: the same operations in
  float32, summed in another library's order, which is the twins' argument (each operation
  within :data:`~parity.proof.networks.OP_RATIO` of torch's, the logits carrying hundreds of
  independent components); onnxruntime also folds BatchNorm into the convolutions, one
  rounding more. Measured: 0.45-1.04 of torch's error.
* a block in eps of its output scale: within :data:`~parity.proof.networks.WORST_LIMIT` of
  torch's own, the one-tensor limit (a gate carries its ``K`` coefficients' errors, few
  components). Measured: up to 2.55 (2.55 eps against torch's 0.93).

All blocks go into one graph (one export; each keeps its own output), the networks one each:
an export costs seconds, most of it building the translation registry.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

import prcm_torch
from parity.proof.check import bound_limit
from parity.proof.networks import FLOOR, OP_RATIO, TYPICAL_LIMIT, WORST_LIMIT, randomize
from parity.proof.reference import error_in_eps, forward, normwise_error_in_eps
from prcm import CATALOG

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

EPS = float(np.finfo(np.float32).eps)
BATCHES = (1, 5)  # exported at batch 2
#: Every block with each of its variants, as the catalog lists them.
BLOCKS = {name + "".join(f"[{v}]" for v in options.values()): (name, options) for name in CATALOG for options in CATALOG[name].variants}


class _Family(nn.Module):
    """Every block on the same input, each output its own graph output."""

    def __init__(self, channels: int, num_basis: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(CATALOG[n].build_torch(channels, num_basis, **o) for n, o in BLOCKS.values())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(block(x) for block in self.blocks)


def _session(model: nn.Module, x: torch.Tensor):
    program = torch.onnx.export(model, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},), dynamo=True, verbose=False)
    return ort.InferenceSession(program.model_proto.SerializeToString(), providers=["CPUExecutionProvider"])


def _run(session, x: torch.Tensor) -> list[np.ndarray]:
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})


@pytest.fixture(scope="module")
def family():
    torch.manual_seed(0)
    model = _Family(32, 4).eval()
    with torch.no_grad():  # logits on both sides of hard_sigmoid's kinks too
        for block in model.blocks:
            for name in ("fuser", "scale_proj", "fc2"):
                if hasattr(block, name):
                    getattr(block, name).weight.mul_(8.0)
    return model, _session(model, torch.randn(2, 32, 6, 5))


@pytest.mark.parametrize("batch", BATCHES)
def test_every_block_exports_and_matches_within_the_sweeps_bound(family, batch):
    model, session = family
    x = torch.randn(batch, 32, 6, 5)
    got = _run(session, x)
    with torch.no_grad():
        want = [y.numpy() for y in model(x)]
    limit = bound_limit("float32", tuple(x.shape), 4, grad=False)
    errors = {}
    for (label, (name, options)), block, y_ort, y_torch in zip(BLOCKS.items(), model.blocks, got, want, strict=True):
        params = {k: v.numpy() for k, v in block.state_dict().items()}
        reference = forward(x.numpy(), params, kind=CATALOG[name].kind, **options)
        bound = forward(x.numpy(), params, kind=CATALOG[name].kind, **options, bound=True, kink=EPS * limit)
        scale = float(np.max(bound))
        assert y_ort.shape == tuple(x.shape)
        errors[label] = (error_in_eps(y_ort, reference, EPS, scale), error_in_eps(y_ort, y_torch, EPS, scale),
                         error_in_eps(y_ort, reference, EPS), error_in_eps(y_torch, reference, EPS))  # fmt: skip
    assert all(vs_ref <= limit and vs_torch <= 2 * limit for vs_ref, vs_torch, *_ in errors.values()), (limit, errors)
    # in eps of the output scale, as the networks below: one tensor of few components, WORST_LIMIT
    assert all(ort <= WORST_LIMIT * max(own, FLOOR) for *_, ort, own in errors.values()), sorted((round(o / max(w, FLOOR), 2), k, round(o, 2), round(w, 2)) for k, (*_, o, w) in errors.items())[-3:]


def test_the_hard_sigmoid_blocks_see_both_sides_of_the_kinks(family):
    """The weights x8 put logits beyond ±3 and within: the comparison above covers the clipped parts."""
    model, _ = family
    x = torch.randn(2, 32, 6, 5)
    for (name, options), block in zip(BLOCKS.values(), model.blocks, strict=True):
        if options.get("gate") == "hard_sigmoid" and CATALOG[name].kind == "basis":
            logits = getattr(block, type(block).scale_name)(x.mean((2, 3)) @ block.basis.t())
            assert (logits.abs() > 3).any() and (logits.abs() < 3).any(), name


def _network(name: str) -> nn.Module:
    import timm

    from prcm_torch.timm import swap_attention

    torch.manual_seed(0)
    if name == "resnet18":
        model = timm.create_model("resnet18", num_classes=10, block_args=dict(attn_layer=prcm_torch.AffinePRCM))
    else:
        model = timm.create_model(name, num_classes=10)
        assert len(swap_attention(model, prcm_torch.AffinePRCM)) == 9
    return randomize(model, torch.randn(8, 3, 32, 32)).eval()


@pytest.mark.parametrize("name", ["resnet18", "mobilenetv3_small_100"])
def test_a_timm_network_with_prcm_blocks_exports(name):
    model = _network(name)
    exact = copy.deepcopy(model).double()
    session = _session(model, torch.randn(2, 3, 32, 32))
    for batch in BATCHES:
        x = torch.randn(batch, 3, 32, 32)
        with torch.no_grad():
            y_torch, y_exact = model(x).numpy(), exact(x.double()).numpy()
        (y_ort,) = _run(session, x)
        for measure in (normwise_error_in_eps, error_in_eps):
            torch_error, ort_error = measure(y_torch, y_exact, EPS), measure(y_ort, y_exact, EPS)
            assert ort_error <= TYPICAL_LIMIT * max(torch_error, FLOOR), (name, batch, measure.__name__, ort_error, torch_error)
