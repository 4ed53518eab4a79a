"""Text from manifests and from the live API, made safe to show on a terminal or in a log (pure).

Names, descriptions, tags, ids and error messages quoting them are data, and data can hold control
characters: ``ESC``/``CSI`` sequences that erase lines, move the cursor or set the window title, a
carriage return that lets the rest of a line overwrite its start (a forged plan line), bidi
overrides that show text in another order than it is read (Trojan Source, CVE-2021-42574). Every
such value passes through :func:`visible` before it is put into output meant for people; the
renderers' own colour codes are added afterwards, around text already made safe.

Escaped the way Python's ``repr`` writes them (``\\r``, ``\\x1b``, ``\\u202e``): C0 controls (newline
and tab included: one value, one line), DEL, C1 controls (U+0080-U+009F: ``\\x9b`` is CSI wherever
8-bit controls are read), the bidi embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069)
and marks (U+200E, U+200F, U+061C), the line and paragraph separators (U+2028, U+2029), and lone
surrogates (which the JSON decoder lets through and no encoder can write). Everything else,
backslashes included, is left as it is: the escapes are for the eye, not a reversible encoding, and
text made visible once stays the same when made visible again.
"""

from __future__ import annotations

import re

_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f"  # C0, DEL, C1
    "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"  # bidi marks, embeddings, overrides, isolates
    "\u2028\u2029"  # line and paragraph separators
    "\ud800-\udfff]"  # lone surrogates
)
_SHORT = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def visible(text: str) -> str:
    """``text`` with every control, bidi and separator character written as a visible escape."""
    return _UNSAFE.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    char = match[0]
    code = ord(char)
    return _SHORT.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


_UNSAFE_IN_JSON = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


def json_visible(text: str) -> str:
    """JSON text with the characters ``json.dumps(ensure_ascii=False)`` leaves raw but a terminal acts
    on (DEL, C1, bidi, separators) written as ``\\uXXXX`` escapes: the same data, safe to print."""
    return _UNSAFE_IN_JSON.sub(lambda m: f"\\u{ord(m[0]):04x}", text)
