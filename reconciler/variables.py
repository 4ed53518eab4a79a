"""``${VAR}`` and ``${VAR:-default}`` substitution in manifest strings (pure; values are passed in).

Substitution works on parsed scalar values, never on the YAML text, so a value can't inject YAML
structure and every error keeps the line and column of the scalar it came from. ``$${`` writes a
literal ``${``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

_REFERENCE = re.compile(
    r"""
    \$\$\{                                   # escaped: a literal "${"
    | \$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)   # ${NAME
      (?::-(?P<default>[^}]*))?              # optional :-default
      \}
    | \$\{(?P<bad>[^}]*)\}?                  # anything else after "${" is malformed
    """,
    re.VERBOSE,
)


class VariableError(ValueError):
    """A reference is malformed or names an undefined variable without a default."""


@dataclass(frozen=True)
class Substitution:
    """The result of substituting one string."""

    text: str
    whole: bool  # the string was exactly one reference, so its value may be re-typed


def substitute(text: str, values: Mapping[str, str]) -> Substitution:
    """Replace every reference in ``text``; raise VariableError naming each problem."""
    problems: list[str] = []

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        name = match.group("name")
        if name is None:
            problems.append(
                f"malformed variable reference '{match.group(0)}' (expected ${{NAME}} or ${{NAME:-default}})"
            )
            return ""
        if name in values:
            return values[name]
        default = match.group("default")
        if default is None:
            problems.append(
                f"variable '{name}' is not set (in the environment or a --var-file) and has no default"
            )
            return ""
        return default

    result = _REFERENCE.sub(replace, text)
    if problems:
        raise VariableError("; ".join(problems))
    whole = _REFERENCE.fullmatch(text) is not None and not text.startswith("$${")
    return Substitution(text=result, whole=whole)


def has_reference(text: str) -> bool:
    """Whether ``text`` contains anything substitution would change."""
    return "${" in text
