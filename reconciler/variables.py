"""``${VAR}`` and ``${VAR:-default}`` substitution in manifest strings (pure; values are passed in).

Substitution works on parsed scalar values, never on the YAML text, so a value can't inject YAML
structure and every error keeps the line and column of the scalar it came from. ``$${`` writes a
literal ``${``.

Which variables a manifest may read is decided here too (:func:`manifest_variables`): var files,
environment variables under the ``MCP_VAR_`` prefix (as Terraform reads ``TF_VAR_``), and the
project id. The rest of the environment never reaches a manifest, and a name that is, or looks like, a
credential is refused even when a var file defines it, because a manifest value can end up in a plan,
a pull-request comment or a live object. A value that contains a credential's value is refused too,
so a credential cannot be smuggled in under an innocent name.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

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


ENV_PREFIX = "MCP_VAR_"
# Environment variables a manifest reads under their own name: settings, never credentials. The API
# client reads DESCOPE_PROJECT_ID too, so a Project whose projectId differs from it (when it is set) is
# refused by the loader (reconciler.manifest), naming both; ``projectId: ${DESCOPE_PROJECT_ID}`` agrees.
PLAIN_ENVIRONMENT = frozenset({"DESCOPE_PROJECT_ID"})
# Credentials the tool, its sinks or CI runners use; plus every name shaped like one (below).
CREDENTIALS = frozenset(
    {
        "DESCOPE_MANAGEMENT_KEY",
        "MCP_RECONCILER_PLAN_KEY",
        "GITHUB_TOKEN",
        "GH_TOKEN",
        "VAULT_TOKEN",
        "BAO_TOKEN",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "ACTIONS_RUNTIME_TOKEN",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
        "ACTIONS_ID_TOKEN_REQUEST_URL",
    }
)
_CREDENTIAL_SHAPE = re.compile(r"(^|_)(TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?|PRIVATE_KEY|API_KEY|KEY)$")
# Shorter values are too common to tell apart from ordinary text.
MIN_CREDENTIAL_LENGTH = 8


class VariableError(ValueError):
    """A reference is malformed or names an undefined variable without a default."""


def is_credential_name(name: str) -> bool:
    """Whether a variable of this name holds, or may hold, a credential."""
    upper = name.upper().removeprefix(ENV_PREFIX)
    return upper in CREDENTIALS or _CREDENTIAL_SHAPE.search(upper) is not None


@dataclass(frozen=True)
class Variables(Mapping[str, str]):
    """The values a manifest may read, and what it must never contain."""

    readable: Mapping[str, str] = field(default_factory=dict)
    # Names set in the environment that manifests cannot read, for a message that says why.
    unreachable: frozenset[str] = frozenset()
    # Values of credentials present in the environment: no manifest value may contain one.
    credential_values: tuple[tuple[str, str], ...] = ()

    def __getitem__(self, name: str) -> str:
        return self.readable[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.readable)

    def __len__(self) -> int:
        return len(self.readable)

    def credential_in(self, text: str) -> str | None:
        """The name of a credential whose value ``text`` contains, if any."""
        return next((name for name, value in self.credential_values if value in text), None)


def manifest_variables(environ: Mapping[str, str], var_values: Mapping[str, str] | None = None) -> Variables:
    """What manifests may read: ``var_values`` (from var files), then ``MCP_VAR_NAME`` from the
    environment as ``NAME`` (the environment wins), and the project id."""
    values = dict(var_values or {})
    values.update({k[len(ENV_PREFIX) :]: v for k, v in environ.items() if k.startswith(ENV_PREFIX)})
    values.update({k: v for k, v in environ.items() if k in PLAIN_ENVIRONMENT})
    credentials = tuple(
        sorted(
            (name, value)
            for name, value in environ.items()
            if is_credential_name(name) and len(value) >= MIN_CREDENTIAL_LENGTH
        )
    )
    return Variables(
        readable=values,
        unreachable=frozenset(environ) - set(values),
        credential_values=credentials,
    )


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
        if is_credential_name(name):
            problems.append(
                f"variable '{name}' is, or looks like, a credential: manifests never read credentials "
                "(their values could reach plans, comments and live objects); rename it if it is not one"
            )
            return ""
        if name in values:
            return values[name]
        default = match.group("default")
        if default is None:
            problems.append(_unset(name, values))
            return ""
        return default

    result = _REFERENCE.sub(replace, text)
    if not problems and isinstance(values, Variables) and (leaked := values.credential_in(result)):
        problems.append(
            f"the value contains the value of the credential {leaked}; manifests never hold credentials"
        )
    if problems:
        raise VariableError("; ".join(problems))
    whole = _REFERENCE.fullmatch(text) is not None and not text.startswith("$${")
    return Substitution(text=result, whole=whole)


def _unset(name: str, values: Mapping[str, str]) -> str:
    if isinstance(values, Variables) and name in values.unreachable:
        return (
            f"variable '{name}' is not set in a --var-file, and environment variables reach manifests only "
            f"with the {ENV_PREFIX} prefix: set {ENV_PREFIX}{name}"
        )
    return f"variable '{name}' is not set (as {ENV_PREFIX}{name} or in a --var-file) and has no default"
