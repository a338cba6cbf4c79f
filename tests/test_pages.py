"""Generated sections of markdown pages (prcm.pages): markers are whole lines outside code
blocks, everything outside a section is kept byte for byte, bad markers are refused by line."""

from __future__ import annotations

import pytest

from prcm import pages

START, END = "<!-- t:start a,b -->", "<!-- t:end -->"


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_only_the_sections_change_in_the_pages_own_line_endings(newline):
    page = newline.join(["# t", "", START, "old", "", END, "", "text  ", "<!-- t:start -->", "<!-- t:end -->", ""])
    new = pages.fill(page, "t", lambda args: f"rendered {args or '-'}\nsecond line")
    want = newline.join(["# t", "", START, "rendered a,b", "second line", END, "", "text  ", "<!-- t:start -->",
                         "rendered -", "second line", "<!-- t:end -->", ""])  # fmt: skip
    assert new == want
    assert pages.sections(new, "t") == [("a,b", "rendered a,b\nsecond line".replace("\n", newline)),
                                        ("", "rendered -\nsecond line".replace("\n", newline))]  # fmt: skip
    assert pages.fill(new, "t", lambda args: f"rendered {args or '-'}\nsecond line") == new


def test_markers_in_code_or_inside_a_line_are_examples_not_sections():
    page = "\n".join([f"Write `{START}` and `{END}` around it:", "", "```markdown", START, "example", END, "```", "",
                      "~~~", START, "~~~", START, "real", END, ""])  # fmt: skip
    assert pages.sections(page, "t") == [("a,b", "real")]
    assert pages.fill(page, "t", lambda args: "new").count("example") == 1


@pytest.mark.parametrize("page, expected", [
    (f"{START}\nno end\n", "expected a <!-- t:end --> line after the <!-- t:start --> on line 1"),
    (f"x\n{END}\n", "found an end with no start on line 2"),
    (f"{START}\n{START}\n{END}\n", "found a start inside another section on line 2"),
    (f"{START}\n<!-- t:end a -->\n", "expected a bare <!-- t:end --> line, got arguments 'a' on line 2"),
])  # fmt: skip
def test_bad_markers_are_refused_naming_the_line(page, expected):
    with pytest.raises(ValueError, match=expected):
        pages.sections(page, "t")
    with pytest.raises(ValueError, match=expected):
        pages.fill(page, "t", lambda args: pytest.fail("rendered before the markers were checked"))


def test_render_command_writes_every_page_or_none(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run.json").write_text("{}")
    good, other = tmp_path / "good.md", tmp_path / "other.md"
    good.write_text(f"{START}\n{END}\n")
    other.write_text("no section\n")
    render = lambda text, path, source: pages.fill(text, "t", lambda args: f"from {source}")  # noqa: E731
    with pytest.raises(SystemExit) as exit_:
        pages.render_command("tool render", "t", render, [str(tmp_path / "run.json"), str(good), str(other)])
    assert exit_.value.code == 2 and f"{other}: expected a <!-- t:start ... --> line" in capsys.readouterr().err
    assert good.read_text() == f"{START}\n{END}\n"
    assert pages.render_command("tool render", "t", render, [str(tmp_path / "run.json"), str(good), "--check"]) == 1
    assert pages.render_command("tool render", "t", render, [str(tmp_path / "run.json"), str(good)]) == 0
    assert good.read_text() == f"{START}\nfrom run.json\n{END}\n"  # named relative to the working directory, however typed
    assert pages.render_command("tool render", "t", render, ["run.json", str(good), "--check"]) == 0
