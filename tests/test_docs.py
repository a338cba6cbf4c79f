"""Every Python block of the docs site runs as written, on its own (a new process with a fresh
``__main__`` in an empty folder, :mod:`fresh`), as the README's do; every page is in the nav;
CI builds the site with ``mkdocs build --strict``."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fresh import run_fresh

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs"
BLOCKS = [(page, i, block) for page in sorted(DOCS.rglob("*.md"))
          for i, block in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S))]  # fmt: skip


def test_docs_have_python_blocks():
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("page,i,block", BLOCKS, ids=[f"{p.relative_to(DOCS)}:{i}" for p, i, _ in BLOCKS])
def test_docs_block_runs_on_its_own(page, i, block, tmp_path):
    done = run_fresh(block, tmp_path)
    assert done.returncode == 0, f"{page}, block {i}:\n{block}\n--- stderr ---\n{done.stderr[-3000:]}"


def test_every_page_is_in_the_nav():
    nav = (ROOT / "mkdocs.yml").read_text()
    pages = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")}
    assert not {p for p in pages if p not in nav}, "pages missing from mkdocs.yml's nav"


def test_ci_builds_the_docs_strictly():
    assert "mkdocs build --strict" in (ROOT / ".ci" / "run").read_text()


def test_the_results_page_is_rendered_from_the_committed_run(tmp_path):
    """docs/benchmark/results.md and its figures are what ``bench report`` renders from
    docs/results/results.json, so no figure on the page is typed by hand."""
    done = subprocess.run([sys.executable, "-m", "bench", "report", str(DOCS / "results" / "results.json"),
                           "--out", str(tmp_path / "results"), "--page", str(tmp_path / "benchmark" / "results.md")],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "benchmark" / "results.md").read_text() == (DOCS / "benchmark" / "results.md").read_text()
    assert sorted(p.name for p in (tmp_path / "results").glob("*.png")) == sorted(p.name for p in (DOCS / "results").glob("*.png"))


def test_the_block_costs_on_the_docs_pages_are_rendered_from_the_committed_run():
    """Every <!-- bench:network --> section of the docs is what ``bench render`` makes of
    docs/results/results.json."""
    from prcm.pages import sections

    pages = [p for p in sorted(DOCS.rglob("*.md")) if sections(p.read_text(), "bench:network")]  # code blocks do not count
    assert pages, "no page shows the block costs"
    done = subprocess.run([sys.executable, "-m", "bench", "render", "docs/results/results.json", *map(str, pages), "--check"],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
