"""``Secret``: a client secret wrapped from the HTTP response until a sink takes it.

It renders as ``(sensitive)`` everywhere (str, repr, format, logging, pydantic and JSON dumps fail
loudly), so a secret can only leave through an explicit ``reveal()``: the call sites are few and
easy to audit (the sinks, and the GitHub ``::add-mask::`` announcement).
"""

from __future__ import annotations

import hmac
from typing import Any, NoReturn

REDACTED = "(sensitive)"


class Secret:
    """An OAuth client secret; never shown, compared in constant time."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str) or not value:
            raise ValueError("a secret must be a non-empty string")
        self._value = value

    def reveal(self) -> str:
        """The cleartext; call only to hand the secret to its sink."""
        return self._value

    def __str__(self) -> str:
        return REDACTED

    def __repr__(self) -> str:
        return f"Secret({REDACTED})"

    def __format__(self, spec: str) -> str:
        return REDACTED

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((Secret, len(self._value)))

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Secret cannot be pickled or copied out of the process")

    def __getstate__(self) -> Any:
        raise TypeError("a Secret cannot be serialized")
