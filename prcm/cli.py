"""Argument types shared by the command lines (``python -m parity``, ``python -m bench``, examples).

Each raises ``argparse.ArgumentTypeError`` naming what was expected, so a bad value exits
with status 2 before any work.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable, Sequence

__all__ = ["comma_choices", "at_least", "unavailable", "error_line", "INSTALL"]

#: How to get the optional dependencies, for messages (the README's install line).
INSTALL = 'pip install -c constraints.txt -e ".[test,docs]"'


def error_line(err: BaseException, limit: int | None = None) -> str:
    """An error in one line for a message: its type and the first line of its text, cut to
    ``limit`` characters.

    Args:
      err: the exception.
      limit: the most characters of its text (``None``: the whole first line).

    Examples:
        >>> error_line(RuntimeError("operator torchvision::nms does not exist\\nmore"), limit=8)
        'RuntimeError: operator'
    """
    return f"{type(err).__name__}: {(str(err).splitlines() or [''])[0][:limit]}"


def unavailable(*modules: str) -> dict[str, str]:
    """``{module: why}`` for each of ``modules`` that does not import here (the error's type
    and its first line, at most 200 characters).

    Imports them, so a package that is installed but broken (torchvision built for another
    torch, which timm imports) counts as unavailable too.

    Args:
      modules: importable names, e.g. ``"timm"``.

    Examples:
        >>> unavailable("json", "no_such_module")
        {'no_such_module': "ModuleNotFoundError: No module named 'no_such_module'"}
    """
    why = {}
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as err:  # noqa: BLE001 - any failure to import means the part cannot run
            why[name] = error_line(err, limit=200)
    return why


def comma_choices(name: str, allowed: Sequence[str]) -> Callable[[str], tuple[str, ...]]:
    """Parse ``a,b,c`` into a tuple of distinct values from ``allowed``.

    Args:
      name: what one value is called, for the message.
      allowed: the values accepted.

    Examples:
        >>> comma_choices("dtype", ("float32", "bfloat16"))("float32, bfloat16")
        ('float32', 'bfloat16')
        >>> comma_choices("dtype", ("float32",))("float8")
        Traceback (most recent call last):
        ...
        argparse.ArgumentTypeError: unknown dtype float8; choose from float32
    """

    def parse(text: str) -> tuple[str, ...]:
        picked = tuple(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
        unknown = [t for t in picked if t not in allowed]
        if unknown or not picked:
            raise argparse.ArgumentTypeError(
                f"unknown {name} {', '.join(unknown) or '(none given)'}; choose from {', '.join(allowed)}"
            )
        return picked

    return parse


def at_least(minimum: int) -> Callable[[str], int]:
    """Parse an integer no smaller than ``minimum``.

    Args:
      minimum: the smallest value accepted.

    Examples:
        >>> at_least(1)("3")
        3
        >>> at_least(1)("0")
        Traceback (most recent call last):
        ...
        argparse.ArgumentTypeError: expected an integer >= 1, got 0
    """

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
        return value

    return parse
