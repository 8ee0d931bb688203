"""The one place where remote shell command lines are built.

Every value that reaches a remote shell goes through :func:`quote` or :func:`command`;
nothing else in gpudesk joins strings into shell commands.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping


def quote(value: str) -> str:
    """Quote one value so a POSIX shell reads it back as exactly one word."""
    return shlex.quote(value)


def command(argv: Iterable[str], env: Mapping[str, str] | None = None) -> str:
    """Build a shell command line from an argument vector, with optional ``env`` prefixes."""
    words = [quote(str(arg)) for arg in argv]
    if not words:
        raise ValueError("a command needs at least one word")
    if env:
        for key in env:
            if not key.isidentifier():
                raise ValueError(f"not a valid environment variable name: {key!r}")
        prefix = [f"{key}={quote(val)}" for key, val in env.items()]
        words = ["env", *prefix, *words]
    return " ".join(words)


def pipeline(*commands: str) -> str:
    """Join already-built commands with ``|``."""
    return " | ".join(commands)


def sequence(*commands: str, operator: str = "&&") -> str:
    """Join already-built commands with ``&&``, ``||`` or ``;``."""
    if operator not in ("&&", "||", ";"):
        raise ValueError(f"unsupported operator {operator!r}")
    return f" {operator} ".join(commands)


def split(line: str) -> list[str]:
    """Split a command line back into words (the inverse of :func:`command`)."""
    return shlex.split(line)
