"""Strings from hosts and containers, made safe to draw: plain text, no terminal controls.

Anything a host or container wrote (run names, commands, users, container names and images,
launch output, error text) reaches the screen only through here. :class:`rich.text.Text` keeps
``[b]`` or ``[/]`` from being read as markup, but Textual writes a Text's characters to the
terminal as they are, so an ``ESC`` in a run name would reach the operator's terminal as an
escape sequence (colours, title, clipboard writes). :func:`visible` swaps every control
character for its Unicode "control picture" (ESC shows as ␛), and the bidirectional overrides
that reorder what follows them for a visible mark; right-to-left letters themselves stay.
"""

from __future__ import annotations

import re

from rich.text import Text

# C0 controls (newline and tab too: every use is one line; multi-line text is split first),
# DEL, C1 controls; the bidi marks, embeddings, overrides and isolates.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _picture(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    if code < 0x20:
        return chr(0x2400 + code)  # ␀ … ␟
    if code == 0x7F:
        return "\u2421"  # ␡
    return "\ufffd"  # C1 and bidi controls: the replacement character


def visible(text: str, *, lines: bool = False) -> str:
    """``text`` with every terminal control character replaced by a visible stand-in
    (newlines kept as line breaks when ``lines``)."""
    if lines:
        return "\n".join(_CONTROLS.sub(_picture, line) for line in text.split("\n"))
    return _CONTROLS.sub(_picture, text)


def plain(text: str, style: str = "") -> Text:
    """``text`` as a Text that is never read as markup and carries no terminal controls.

    Lines stay lines (for multi-line error text); every other control is made visible.
    """
    return Text(visible(text, lines=True), style=style)


def cell(text: str, style: str = "") -> Text:
    """:func:`plain` for one line (a table cell, a title): newlines are drawn as ␊ too."""
    return Text(visible(text), style=style)


def last_frame(line: str) -> str:
    """What a terminal shows of a progress-bar line: the text after its last ``\\r``."""
    frames = [frame for frame in line.split("\r") if frame]
    return frames[-1] if frames else ""
