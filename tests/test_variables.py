"""``${VAR}`` substitution: forms, defaults, escapes and errors."""

from __future__ import annotations

import pytest

from reconciler.variables import VariableError, is_credential_name, manifest_variables, substitute


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
        "variable 'ONE' is not set (as MCP_VAR_ONE or in a --var-file) and has no default; "
        "variable 'TWO' is not set (as MCP_VAR_TWO or in a --var-file) and has no default"
    )


@pytest.mark.parametrize("text", ["${}", "${1ABC}", "${A B}", "${unterminated"])
def test_malformed_references_are_errors(text: str) -> None:
    with pytest.raises(VariableError, match="malformed variable reference"):
        substitute(text, {"A": "x"})


KEY = "K2-production-management-key-0123"


def test_manifests_read_var_files_prefixed_environment_variables_and_the_project_id() -> None:
    variables = manifest_variables(
        {"MCP_VAR_DOMAIN": "env.example", "DESCOPE_PROJECT_ID": "P1", "HOME": "/root", "DOMAIN": "raw"},
        {"DOMAIN": "file.example", "REGION": "eu"},
    )
    assert dict(variables) == {"DOMAIN": "env.example", "REGION": "eu", "DESCOPE_PROJECT_ID": "P1"}
    with pytest.raises(VariableError) as caught:
        substitute("${HOME}", variables)
    assert str(caught.value) == (
        "variable 'HOME' is not set in a --var-file, and environment variables reach manifests only "
        "with the MCP_VAR_ prefix: set MCP_VAR_HOME"
    )


@pytest.mark.parametrize(
    "name",
    [
        "DESCOPE_MANAGEMENT_KEY",
        "MCP_RECONCILER_PLAN_KEY",
        "GITHUB_TOKEN",
        "VAULT_TOKEN",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "ACTIONS_RUNTIME_TOKEN",
        "MY_API_KEY",
        "DB_PASSWORD",
        "CLIENT_SECRET",
        "MCP_VAR_GITHUB_TOKEN",
    ],
)
def test_credentials_are_refused_by_name_whatever_defines_them(name: str) -> None:
    assert is_credential_name(name)
    environ = {name: KEY, f"MCP_VAR_{name}": KEY}
    variables = manifest_variables(environ, {name: KEY})
    for text in (f"${{{name}}}", f"x-${{{name}:-default}}"):
        with pytest.raises(VariableError) as caught:
            substitute(text, variables)
        assert f"variable '{name}' is, or looks like, a credential" in str(caught.value)
        assert KEY not in str(caught.value)


@pytest.mark.parametrize("name", ["DOMAIN", "SECRETS_DIR", "MONKEY", "KEYCLOAK_URL", "TOKENS_PER_MINUTE"])
def test_ordinary_names_are_not_credentials(name: str) -> None:
    assert not is_credential_name(name)


def test_a_credential_value_under_an_innocent_name_is_refused_without_showing_it() -> None:
    environ = {"DESCOPE_MANAGEMENT_KEY": KEY, "MCP_VAR_NOTE": f"see {KEY}"}
    with pytest.raises(VariableError) as caught:
        substitute("${NOTE}", manifest_variables(environ))
    assert "contains the value of the credential DESCOPE_MANAGEMENT_KEY" in str(caught.value)
    assert KEY not in str(caught.value)
    # A var file is no way around it either.
    with pytest.raises(VariableError):
        substitute("${NOTE}", manifest_variables({"DESCOPE_MANAGEMENT_KEY": KEY}, {"NOTE": KEY}))
