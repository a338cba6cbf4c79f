"""Generated sections of markdown pages: the text between two marker lines, which a command
rewrites from a saved results file (``python -m bench readme``, ``python -m parity render``), so a
figure on a page is rendered by the product, never typed, and a test can check the page against
its file.

A section opens with ``<!-- TAG:start -->`` or ``<!-- TAG:start ARGS -->`` (``ARGS`` tells the
renderer what to put there) and closes with ``<!-- TAG:end -->``; everything outside is kept.
"""

from __future__ import annotations

import re
from collections.abc import Callable

__all__ = ["sections", "fill"]


def _pattern(tag: str) -> re.Pattern[str]:
    return re.compile(rf"<!-- {re.escape(tag)}:(start|end)(?: ([^>]*?))? -->")


def sections(text: str, tag: str) -> list[tuple[str, str]]:
    """Each ``TAG`` section of ``text`` in order, as ``(args, content)`` (content without the
    blank lines around it).

    Args:
      text: a markdown page.
      tag: the sections' tag, e.g. ``"bench:headline"``.

    Raises:
      ValueError: a start without its end, an end without its start, or one section inside another.

    Examples:
        >>> page = "a\\n<!-- t:start x -->\\nold\\n<!-- t:end -->\\nb\\n"
        >>> sections(page, "t")
        [('x', 'old')]
        >>> sections(page + "<!-- t:end -->\\n", "t")
        Traceback (most recent call last):
        ...
        ValueError: expected each <!-- t:start --> line to be closed by one <!-- t:end --> line before the next starts; found an end with no start on line 6
    """
    return [(args, text[begin:end].strip("\n")) for args, begin, end in _spans(text, tag)]


def _line(text: str, at: int) -> int:
    return text.count("\n", 0, at) + 1


def _spans(text: str, tag: str) -> list[tuple[str, int, int]]:
    spans, opened = [], None
    for match in _pattern(tag).finditer(text):
        kind, args = match.group(1), (match.group(2) or "").strip()
        if (kind == "start") == (opened is not None):
            what = "a start inside another section" if kind == "start" else "an end with no start"
            raise ValueError(f"expected each <!-- {tag}:start --> line to be closed by one <!-- {tag}:end --> line "
                             f"before the next starts; found {what} on line {_line(text, match.start())}")  # fmt: skip
        if kind == "start":
            opened = (args, match.end())
        else:
            spans.append((opened[0], opened[1], match.start()))
            opened = None
    if opened is not None:
        raise ValueError(f"expected a <!-- {tag}:end --> line after the <!-- {tag}:start --> on line {_line(text, opened[1])}")
    return spans


def fill(text: str, tag: str, render: Callable[[str], str]) -> str:
    """``text`` with the content of each ``TAG`` section replaced by ``render(args)``.

    Args:
      text: a markdown page.
      tag: the sections' tag.
      render: the section's new content from its start marker's arguments (``""`` when it has none).

    Raises:
      ValueError: markers out of order (see :func:`sections`), before anything is rendered.

    Examples:
        >>> fill("a\\n<!-- t:start x -->\\nold\\n<!-- t:end -->\\nb\\n", "t", lambda args: args.upper())
        'a\\n<!-- t:start x -->\\nX\\n<!-- t:end -->\\nb\\n'
    """
    spans = _spans(text, tag)
    parts, last = [], 0
    for args, begin, end in spans:
        parts += [text[last:begin], "\n", render(args).strip("\n"), "\n"]
        last = end
    return "".join([*parts, text[last:]])
