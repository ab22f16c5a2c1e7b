"""Text helpers shared by the command line's parser and its subcommands (a module of its own,
so that a subcommand importing them does not import the package that imports it)."""

from __future__ import annotations

import re

# ``code`` and :role:`target` (a leading ~ keeps the last dotted part, as Sphinx shows it).
_LITERAL = re.compile(r"``(.+?)``", re.DOTALL)
_ROLE = re.compile(r":[a-z]+(?::[a-z]+)?:`(~?)([^`]+)`")


def plain(text: str) -> str:
    """``text`` without the Sphinx markup of the docstrings that serve as help."""
    text = _LITERAL.sub(r"\1", text)
    return _ROLE.sub(lambda m: m[2].rsplit(".", 1)[-1] if m[1] else m[2], text)


def show_default(value) -> str:
    """A default as it is typed on the command line: 1,2 for a tuple, none for None."""
    if value is None:
        return "none"
    if isinstance(value, (tuple, list)):
        return ",".join(show_default(v) for v in value)
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
