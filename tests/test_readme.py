"""Every Python block of the README runs as written, on its own: a fresh interpreter in an
empty folder, so a block that leans on an import or a variable of an earlier one fails."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from prcm.cli import INSTALL

README = Path(__file__).parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_python_blocks():
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_block_runs_on_its_own(block, tmp_path):
    done = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{block}\n--- stderr ---\n{done.stderr[-3000:]}"


def test_ci_installs_and_tests_what_the_readme_says():
    """.ci/run runs the README's install commands and its test command, as a new user would."""
    first = re.search(r"```bash\n(.*?)```", README.read_text(), flags=re.S).group(1).splitlines()
    install = [c.strip() for c in first[0].split("#")[0].split("&&")]
    ci = (README.parent / ".ci" / "run").read_text()
    for command in install:
        assert command.replace("pip install", "python -m pip install --quiet") in ci, command
    assert "\npytest\n" in ci and first[2].split("#")[0].strip() == "pytest"
    assert first[0].split("#")[0].strip() == INSTALL  # what the command lines' messages tell a user to run
