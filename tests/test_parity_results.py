"""Parity figures in the docs are rendered from a saved run (``python -m parity --out`` then
``python -m parity render``), never typed: the committed run renders the pages as they are, and
the render command writes, checks and refuses bad input before it writes anything."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from parity.__main__ import main
from parity.proof import results as saved
from parity.proof.networks import CheckSummary, NetworkCase, NetworkResult
from prcm import pages

ROOT = Path(__file__).parent.parent
COMMITTED = ROOT / "docs" / "results" / "parity.json"
SOURCE = "docs/results/parity.json"


def _result(network: str, attention: str, ratio: float, *, exact: bool = True) -> NetworkResult:
    check = CheckSummary(tensors=3, worst=(2.0, 3.0), median=(1.0, 1.5), ratio=(ratio, "conv1.weight"), typical=ratio / 2)
    case = NetworkCase(network, attention)
    return NetworkResult(case, {"eval": check, "grad": check}, {"timm -> nnx -> timm": exact}, (1, 2))


def _page(*networks: str) -> str:
    return "".join(f"# {n}\n\n<!-- {saved.TAG}:start {n} -->\nold\n<!-- {saved.TAG}:end -->\n\ntext\n" for n in networks)


def test_the_docs_parity_tables_are_rendered_from_the_committed_run():
    data = saved.load(COMMITTED)
    with_tables = {p.relative_to(ROOT / "docs").as_posix(): p for p in sorted((ROOT / "docs").rglob("*.md"))
                   if pages.sections(p.read_text(), saved.TAG)}  # fmt: skip
    assert {"guide/networks.md", "guide/lightweight.md"} <= with_tables.keys()
    for name, path in with_tables.items():
        text = path.read_text()
        assert saved.render_page(text, data, source=SOURCE) == text, f"docs/{name}: run python -m parity render {SOURCE} docs/{name}"
    assert data["networks"] and all(case["ok"] for case in data["networks"])
    assert data["meta"]["commit"] and data["meta"]["limits"]


def test_a_saved_run_loads_back_and_renders_each_section_from_its_networks(tmp_path):
    path = saved.save(tmp_path / "run" / "parity.json", networks=[_result("resnet18", "none", 1.5), _result("resnet18", "PRCM", 4.0),
                      _result("efficientnet_b0", "se", 2.0, exact=False)], limits={"typical": 3.1, "worst": 10.5}, argv=["--x"])  # fmt: skip
    data = saved.load(path)
    assert [c["case"]["attention"] for c in data["networks"]] == ["none", "PRCM", "se"]
    assert data["networks"][0]["checks"]["eval"]["ratio"] == [1.5, "conv1.weight"] and data["meta"]["command"] == "python -m parity --x"
    text = saved.render_page(_page("resnet18", "efficientnet_b0"), path)
    first, second = (content for _, content in pages.sections(text, saved.TAG))
    assert "| resnet18 | 2 of 2 (2 attentions, 2x64) | 2.0 / 3.0 | 2.0 / 3.0 | 2.00 | 4.00 (eval, PRCM) | 1 / 2 | exact |" in first
    assert "| efficientnet_b0 | 0 of 1 (1 attention, 2x64) |" in second and "| 1 not exact |" in second
    assert "typical (limit 3.1)" in first and f"Rendered from `{path}` (`python -m parity --x`;" in first
    assert text.count("\ntext\n") == 2 and "old" not in text


def test_render_writes_checks_and_refuses_bad_input_before_writing(tmp_path, capsys):
    path = saved.save(tmp_path / "parity.json", networks=[_result("resnet18", "none", 1.5)], limits={"typical": 3.1, "worst": 10.5})
    good, bad = tmp_path / "good.md", tmp_path / "bad.md"
    good.write_text(_page("resnet18"))
    bad.write_text(_page("resnet50"))
    with pytest.raises(SystemExit) as exit_:
        main(["render", str(path), str(good), str(bad)])
    assert exit_.value.code == 2 and "expected a network the run checked (resnet18), got 'resnet50'" in capsys.readouterr().err
    assert good.read_text() == _page("resnet18")  # nothing written: every page renders before any is
    assert main(["render", str(path), str(good), "--check"]) == 1 and good.read_text() == _page("resnet18")
    assert main(["render", str(path), str(good)]) == 0 and main(["render", str(path), str(good), "--check"]) == 0
    assert "| resnet18 | 1 of 1" in good.read_text()
    good.write_text(good.read_text().replace("1 of 1", "2 of 2"))  # a figure typed over the rendering
    assert main(["render", str(path), str(good), "--check"]) == 1
    not_results = tmp_path / "other.json"
    not_results.write_text(json.dumps({"records": []}))
    with pytest.raises(SystemExit) as exit_:
        main(["render", str(not_results), str(good)])
    assert exit_.value.code == 2 and "expected a results file of 'python -m parity --out'" in capsys.readouterr().err
    bad.write_text(f"<!-- {saved.TAG}:start resnet18 -->\nno end\n")
    with pytest.raises(SystemExit) as exit_:
        main(["render", str(path), str(bad)])
    assert exit_.value.code == 2 and f"expected a <!-- {saved.TAG}:end --> line after" in capsys.readouterr().err
    for text, expected in ((f"<!-- {saved.TAG}:start -->\n<!-- {saved.TAG}:end -->\n", "expected the networks of a table"),
                           ("# no section\n", f"{bad}: expected a <!-- {saved.TAG}:start ... --> line")):  # a typo'd page is not 'up to date'
        bad.write_text(text)
        with pytest.raises(SystemExit) as exit_:
            main(["render", str(path), str(bad), "--check"])
        assert exit_.value.code == 2 and expected in capsys.readouterr().err
    broken = json.loads(path.read_text())
    del broken["networks"][0]["checks"]["eval"]["typical"]
    not_results.write_text(json.dumps(broken))
    with pytest.raises(SystemExit) as exit_:
        main(["render", str(not_results), str(good)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and f"{not_results}: expected a results file" in err and "KeyError: 'typical'" in err


def test_out_must_be_a_file_path_and_is_refused_before_any_work(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--parts", "networks", "--networks", "resnet18", "--out", str(tmp_path)])
    assert exit_.value.code == 2 and "--out: expected a file path (its folder is made), got a folder" in capsys.readouterr().err
