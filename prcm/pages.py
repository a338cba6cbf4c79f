"""Generated sections of markdown pages: the text between two marker lines, which a command
rewrites from a saved results file (``python -m bench readme``, ``python -m parity render``,
``python -m prcm_examples.digits render``), so a figure on a page is rendered by the product,
never typed, and a test can check the page against its file.

A section opens with a line ``<!-- TAG:start -->`` or ``<!-- TAG:start ARGS -->`` (``ARGS``
tells the renderer what to put there) and closes with a line ``<!-- TAG:end -->``. Markers are
whole lines outside fenced code blocks (a page may show them in code); everything outside the
sections is kept byte for byte, line endings included.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["sections", "fill", "render_command", "names"]

_FENCE = re.compile(r"^ {0,3}(```|~~~)", re.M)


def _line(text: str, at: int) -> int:
    return text.count("\n", 0, at) + 1


def _fenced(text: str) -> list[tuple[int, int]]:
    """Where the fenced code blocks of ``text`` are (an unclosed fence runs to the end)."""
    spans, opened = [], None
    for match in _FENCE.finditer(text):
        if opened is None:
            opened = (match.start(), match.group(1))
        elif match.group(1) == opened[1]:
            spans.append((opened[0], match.end()))
            opened = None
    return spans + ([(opened[0], len(text))] if opened else [])


def _spans(text: str, tag: str) -> list[tuple[str, int, int]]:
    """``(args, content start, content end)`` of each section, checked."""
    marker = re.compile(rf"^<!-- {re.escape(tag)}:(start|end)(?: ([^\r\n]*?))? -->[ \t]*\r?$", re.M)
    fenced = _fenced(text)
    spans, opened = [], None
    for match in marker.finditer(text):
        if any(lo <= match.start() < hi for lo, hi in fenced):
            continue
        kind, args, line = match.group(1), (match.group(2) or "").strip(), _line(text, match.start())
        if kind == "end" and args:
            raise ValueError(f"expected a bare <!-- {tag}:end --> line, got arguments {args!r} on line {line}")
        if (kind == "start") == (opened is not None):
            what = "a start inside another section" if kind == "start" else "an end with no start"
            raise ValueError(f"expected each <!-- {tag}:start --> line to be closed by one <!-- {tag}:end --> line "
                             f"before the next starts; found {what} on line {line}")  # fmt: skip
        if kind == "start":
            opened = (args, match.end(), line)
        else:
            spans.append((opened[0], opened[1], match.start()))
            opened = None
    if opened is not None:
        raise ValueError(f"expected a <!-- {tag}:end --> line after the <!-- {tag}:start --> on line {opened[2]}")
    return spans


def sections(text: str, tag: str) -> list[tuple[str, str]]:
    """Each ``TAG`` section of ``text`` in order, as ``(args, content)`` (content without the
    line breaks around it).

    Args:
      text: a markdown page.
      tag: the sections' tag, e.g. ``"bench:headline"``.

    Raises:
      ValueError: a start without its end, an end without its start, one section inside
        another, or an end with arguments; naming the line.

    Examples:
        >>> page = "a\\n<!-- t:start x -->\\nold\\n<!-- t:end -->\\n```\\n<!-- t:start y -->\\n```\\nb\\n"
        >>> sections(page, "t")  # the one in the code block is an example, not a section
        [('x', 'old')]
        >>> sections(page + "<!-- t:end -->\\n", "t")
        Traceback (most recent call last):
        ...
        ValueError: expected each <!-- t:start --> line to be closed by one <!-- t:end --> line before the next starts; found an end with no start on line 9
    """
    return [(args, text[begin:end].strip("\r\n")) for args, begin, end in _spans(text, tag)]


def names(args: str) -> list[str]:
    """The comma-separated names a start marker's arguments list (networks, for the tables).

    Examples:
        >>> names("resnet18, efficientnet_b0,"), names("")
        (['resnet18', 'efficientnet_b0'], [])
    """
    return [n.strip() for n in args.split(",") if n.strip()]


def fill(text: str, tag: str, render: Callable[[str], str]) -> str:
    """``text`` with the content of each ``TAG`` section replaced by ``render(args)``, in the
    page's own line endings.

    Args:
      text: a markdown page.
      tag: the sections' tag.
      render: the section's new content from its start marker's arguments (``""`` when it has none).

    Raises:
      ValueError: markers out of order (see :func:`sections`), before anything is rendered.

    Examples:
        >>> fill("a\\n<!-- t:start x -->\\nold\\n<!-- t:end -->\\nb\\n", "t", lambda args: args.upper())
        'a\\n<!-- t:start x -->\\nX\\n<!-- t:end -->\\nb\\n'
        >>> fill("a\\r\\n<!-- t:start -->\\r\\n<!-- t:end -->\\r\\n", "t", lambda args: "one\\ntwo")
        'a\\r\\n<!-- t:start -->\\r\\none\\r\\ntwo\\r\\n<!-- t:end -->\\r\\n'
    """
    spans = _spans(text, tag)
    newline = "\r\n" if "\r\n" in text else "\n"
    parts, last = [], 0
    for args, begin, end in spans:
        content = render(args).strip("\r\n").replace("\r\n", "\n").replace("\n", newline)
        parts += [text[last:begin].rstrip("\r\n"), newline, content, newline]
        last = end
    return "".join([*parts, text[last:]])


def render_command(prog: str, tag: str, render: Callable[[str, Path, str], str], argv: Sequence[str] | None = None,
                   what: str = "a saved run") -> int:  # fmt: skip
    """The ``render RESULTS PAGE ... [--check]`` command of a tool: every page's ``TAG`` sections
    rendered from one results file, all before any page is written.

    Args:
      prog: the command's name for help and errors.
      tag: the sections' tag.
      render: ``render(page text, results path, source)`` -> the new page text; ``source`` is
        how the page names the file (the path relative to the working directory when it is
        under it, so the page does not depend on how the path was typed). Raises
        ``ValueError`` for bad input.
      argv: the arguments after ``render``.
      what: what the results file is, for the help.

    Returns:
      0 when written or up to date, 1 when ``--check`` finds a page that differs; bad input
      (an unreadable file, a page without a section, a ``ValueError`` of ``render``) exits 2
      with nothing written.
    """
    parser = argparse.ArgumentParser(prog=prog, description=f"Write the <!-- {tag}:start ... --> / <!-- {tag}:end --> "
                                     f"sections of markdown pages from {what}; nothing else on a page changes.")  # fmt: skip
    parser.add_argument("results", type=Path, help=what)
    parser.add_argument("pages", type=Path, nargs="+", help="the markdown pages to update")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 when a page differs from the rendering")
    args = parser.parse_args(argv)
    try:
        source = args.results.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        source = args.results.as_posix()
    updated = {}
    try:
        for page in args.pages:
            with open(page, newline="") as file:  # the page's own line endings
                text = file.read()
            if not sections(text, tag):
                raise ValueError(f"{page}: expected a <!-- {tag}:start ... --> line and its <!-- {tag}:end --> line; found none")
            updated[page] = (text, render(text, args.results, source))
    except OSError as err:
        parser.error(f"cannot read {err.filename}: {err.strerror or err}")
    except ValueError as err:
        parser.error(str(err))
    for page, (old, new) in updated.items():
        if old != new and not args.check:
            page.write_text(new, newline="")
        print(f"{page}: {'up to date' if old == new else 'differs from' if args.check else 'written from'} {source}")
    return 1 if args.check and any(old != new for old, new in updated.values()) else 0
