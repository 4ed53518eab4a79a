"""An answer with no escape sequence is checked in one pass over its text (``wire._verbatim``), and
that pass decides exactly as the string-by-string walk does: the same data, the same refusals."""

from __future__ import annotations

import json
from typing import Any

import pytest

from reconciler.descope import wire
from reconciler.descope.wire import WireError, decode

KEY = "K2-wire-verbatim-key-1234567890"


def redact(text: str) -> str:
    return text.replace(KEY, "***")


def walked(body: bytes) -> dict[str, Any] | str:
    """What the string-by-string walk makes of ``body`` (or its refusal)."""
    try:
        data = json.loads(body)
        wire._clean(data, redact)
    except WireError as exc:
        return str(exc)
    return data  # type: ignore[no-any-return]


def decoded(body: bytes) -> dict[str, Any] | str:
    try:
        return decode(body, redact)
    except WireError as exc:
        return str(exc)


BODIES = [
    b'{"servers": [{"name": "crm", "tags": ["a", "b"], "n": 1.5}]}',
    ('{"note": "caf\u00e9 \u202e", "list": [[], {}]}').encode(),
    ('{"leak": "x' + KEY + 'y", "' + KEY + '": 1}').encode(),  # the key, verbatim: redacted
    b'{"big": 1e999}',  # infinity: refused
    b'{"a": ' * 70 + b"1" + b"}" * 70,  # too deep: refused
    b'{"ok": ' * 60 + b"1" + b"}" * 60,
    b'{"s": "\\ud800"}',  # a lone surrogate, only through an escape: refused
    ('{"split": "' + KEY[:10] + "\\u0032" + KEY[11:] + '"}').encode(),  # the key behind an escape
]


@pytest.mark.parametrize("body", BODIES)
def test_the_one_pass_decides_as_the_walk_does(body: bytes) -> None:
    assert decoded(body) == walked(body)


def test_the_one_pass_is_taken_only_when_no_string_needs_a_look() -> None:
    assert wire._verbatim(BODIES[0], redact)
    assert wire._verbatim(BODIES[1], redact)  # non-ASCII needs no look: it was valid UTF-8
    assert not wire._verbatim(BODIES[2], redact)  # the key is in it
    assert not wire._verbatim(BODIES[6], redact)  # an escape
    assert decoded(BODIES[2]) == {"leak": "x***y", "***": 1}
    assert decoded(BODIES[3]) == "the response holds a number too large for a float"
    assert decoded(BODIES[4]) == "the response is nested more than 64 levels deep"
