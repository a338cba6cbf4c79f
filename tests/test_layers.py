"""Imports flow one way: each package imports only the layers below it, anywhere in its code
(function-level imports included), and converting a model loads none of the proof tooling."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
from fresh import run_fresh

ROOT = Path(__file__).parent.parent
#: package (a path prefix of modules) -> project packages it must never import.
FORBIDDEN = {
    "prcm": ("prcm_torch", "prcm_jax", "parity", "bench", "prcm_examples"),
    "prcm_torch": ("prcm_jax", "parity", "bench", "prcm_examples"),
    "prcm_jax": ("prcm_torch", "parity.proof", "bench", "prcm_examples"),
    "parity": ("parity.proof", "bench", "prcm_examples"),  # the converters and checkpoint I/O
    "parity.proof": ("bench", "prcm_examples"),
    "bench": ("prcm_examples",),
}


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
    return found


def _layer(module: str) -> str:
    return max((p for p in FORBIDDEN if module == p or module.startswith(p + ".")), key=len)


FILES = [p for pkg in ("prcm", "prcm_torch", "prcm_jax", "parity", "bench") for p in sorted((ROOT / pkg).rglob("*.py"))]


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_flow_one_way(path):
    module = _module(path)
    if module == "parity.__main__":  # the proof's command line lives at `python -m parity`
        return
    bad = sorted(i for i in _imports(path) for f in FORBIDDEN[_layer(module)] if i == f or i.startswith(f + "."))
    assert not bad, f"{module} ({_layer(module)}) imports {bad}"


def test_converting_and_porting_load_no_proof_tooling():
    code = """
import sys
import timm, torch
from flax import nnx
import parity, prcm_jax, prcm_torch
from prcm_jax.models import from_timm
parity.torch_to_nnx(prcm_torch.PRCM(8), prcm_jax.PRCM(8, rngs=nnx.Rngs(0)))
from_timm(timm.create_model("resnet18", num_classes=2))
print(sorted(m for m in sys.modules if m.startswith("parity.proof")))
"""
    done = run_fresh(code, ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def test_the_proof_tools_stay_importable_from_parity():
    import parity
    from parity.proof.dropout import shared_dropout_mask
    from parity.proof.precision import pinned_precision

    assert parity.shared_dropout_mask is shared_dropout_mask and parity.pinned_precision is pinned_precision
    with pytest.raises(AttributeError, match="no attribute 'check'"):
        parity.check
