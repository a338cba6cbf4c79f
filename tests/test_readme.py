"""Every Python block of the README runs as written, on its own: a new process with a fresh
``__main__`` in an empty folder (:mod:`fresh`), so a block that leans on an import or a variable
of an earlier one fails."""

import re
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

import pytest
from fresh import run_fresh

from prcm.cli import INSTALL

ROOT = Path(__file__).parent.parent
README = ROOT / "README.md"
CI = ROOT / ".ci" / "run"
CONSTRAINTS = ROOT / "constraints.txt"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_python_blocks():
    """The front page's three snippets: a block in a timm model, an NNX block, a port."""
    assert len(BLOCKS) == 3


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_block_runs_on_its_own(block, tmp_path):
    done = run_fresh(block, tmp_path)
    assert done.returncode == 0, f"{block}\n--- stderr ---\n{done.stderr[-3000:]}"


def _install_commands() -> list[str]:
    first = re.search(r"```bash\n(.*?)```", README.read_text(), flags=re.S).group(1).splitlines()
    return [c.strip() for c in first[0].split("#")[0].split("&&")]


def test_ci_installs_and_tests_what_the_readme_says():
    """.ci/run runs the README's install commands and its test command, as a new user would."""
    first = re.search(r"```bash\n(.*?)```", README.read_text(), flags=re.S).group(1).splitlines()
    ci = CI.read_text()
    for command in _install_commands():
        assert command.replace("pip install", "python -m pip install --quiet") in ci, command
    assert "\npytest\n" in ci and first[2].split("#")[0].strip() == "pytest"
    assert first[0].split("#")[0].strip() == INSTALL  # what the command lines' messages tell a user to run


def _pins(text: str) -> dict[str, str]:
    pins = {}
    for line in text.splitlines():
        name, sep, version = line.split("#")[0].strip().partition("==")
        if sep:
            pins[canonical(name)] = version
    return pins


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_readme_and_ci_install_the_same_tested_set():
    """Every pip install in .ci/run and the README's install line take constraints.txt, so a
    new release of a dependency cannot change what CI installs between two commits."""
    installs = [line for line in CI.read_text().splitlines() if re.search(r"\bpip install\b", line)]
    assert installs and all("-c constraints.txt" in line for line in installs), installs
    assert all("-c constraints.txt" in command for command in _install_commands())
    pins = _pins(CONSTRAINTS.read_text())
    assert {"torch", "torchvision", "jax", "jaxlib", "flax", "numpy", "ml-dtypes", "timm", "pip"} <= set(pins)
    assert all(re.fullmatch(r"[0-9][0-9A-Za-z.+!-]*", v) for v in pins.values()), "every pin is one exact version"


def test_this_environment_is_the_tested_set():
    """What runs these tests is what constraints.txt pins (true after the README's install line
    and in CI); a mismatch names each distribution and both versions."""
    pins = _pins(CONSTRAINTS.read_text())
    # What pip installed into this environment's site-packages: not sys.path, which gains
    # setuptools/_vendor (its own older packaging, platformdirs, zipp) once setuptools is imported.
    site = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    installed = {canonical(d.metadata["Name"]): d.version for d in metadata.distributions(path=site)}
    off = {name: (version, installed[name]) for name, version in pins.items()
           if name in installed and installed[name] != version and name != "prcm"}  # fmt: skip
    assert not off, f"installed versions differ from constraints.txt (pinned, installed): {off}"


def test_readme_names_the_tested_versions():
    """The README's 'tested with' line is constraints.txt's versions."""
    pins = _pins(CONSTRAINTS.read_text())
    line = re.search(r"^Tested with (.*)$", README.read_text(), flags=re.M)
    assert line, "the README has no 'Tested with' line"
    named = dict(re.findall(r"([A-Za-z][\w-]*) ([0-9][\w.+]*)", line[1]))
    assert len(named) >= 5 and all(pins[canonical(k)] == v for k, v in named.items() if k != "Python"), named


def test_readme_links_lead_somewhere():
    """Every relative link of the front page names a file of the repository."""
    links = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", README.read_text())
    missing = [link for link in links if not (ROOT / link).exists()]
    assert links and not missing, missing


def test_readme_is_a_front_page():
    assert len(README.read_text()) <= 12_000


def test_readme_headline_is_rendered_from_the_committed_run():
    """The README's benchmark table is what ``bench readme`` renders from docs/results/results.json."""
    from bench.report import readme_section_matches

    assert readme_section_matches(README.read_text(), ROOT / "docs" / "results" / "results.json")
