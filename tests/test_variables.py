"""``${VAR}`` substitution: forms, defaults, escapes and errors."""

from __future__ import annotations

import pytest

from reconciler.variables import VariableError, substitute


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain", "plain"),
        ("${A}", "alpha"),
        ("https://${A}.example.com/${B:-x}", "https://alpha.example.com/x"),
        ("${MISSING:-fallback}", "fallback"),
        ("${MISSING:-}", ""),
        ("${EMPTY:-fallback}", ""),
        ("$${A} stays literal", "${A} stays literal"),
        ("costs $5", "costs $5"),
    ],
)
def test_substitution(text: str, expected: str) -> None:
    assert substitute(text, {"A": "alpha", "EMPTY": ""}).text == expected


def test_a_string_that_is_one_reference_is_marked_whole() -> None:
    assert substitute("${A}", {"A": "1"}).whole
    assert not substitute("x${A}", {"A": "1"}).whole
    assert not substitute("$${A}", {"A": "1"}).whole


def test_every_undefined_variable_is_named() -> None:
    with pytest.raises(VariableError) as caught:
        substitute("${ONE}/${TWO}", {})
    assert str(caught.value) == (
        "variable 'ONE' is not set (in the environment or a --var-file) and has no default; "
        "variable 'TWO' is not set (in the environment or a --var-file) and has no default"
    )


@pytest.mark.parametrize("text", ["${}", "${1ABC}", "${A B}", "${unterminated"])
def test_malformed_references_are_errors(text: str) -> None:
    with pytest.raises(VariableError, match="malformed variable reference"):
        substitute(text, {"A": "x"})
