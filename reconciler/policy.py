"""A team's policy, from its Project manifest: how the security rules judge the manifests (pure).

:func:`policy_of` turns the Project's ``policy`` into the :class:`~reconciler.findings.Policy` that
:func:`~reconciler.findings.evaluate` judges under, beside the ``failOn`` the team wrote.
:func:`policy_problems` finds what in a policy names nothing (a rule, a parameter, a server or client no
manifest declares) or could never apply, each at the key it is about, so that the loader reports it
with its file position like any other manifest problem: a policy that silently does nothing is worse
than none, because the team believes it is in force.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from reconciler.findings import SEVERITIES, Policy, PolicyException, Rule, Severity
from reconciler.models import PolicyExceptionSpec, PolicySpec, RuleSetting
from reconciler.schemas import did_you_mean
from reconciler.yamlsource import DocPath

FailOn = Severity | Literal["never"]
_RULES: DocPath = ("policy", "rules")
_EXCEPTIONS: DocPath = ("policy", "exceptions")


@dataclass(frozen=True)
class TeamPolicy:
    """The Project's policy as the rules read it, and its ``failOn`` as written.

    ``fail_on`` is a severity, ``"never"`` (findings never fail a run) or None (not written: each
    command's own default). ``policy.fail_on`` holds the same severity, and None for both of the
    others, because a :class:`Policy` cannot tell "never" from "not written"; which is why the
    severity that fails a run is decided from ``fail_on`` here, never from ``policy.fail_on``."""

    policy: Policy = field(default_factory=Policy)
    fail_on: FailOn | None = None


def policy_of(spec: PolicySpec | None) -> TeamPolicy:
    """The team's policy from the Project's ``policy`` (None: every rule on, as shipped)."""
    if spec is None:
        return TeamPolicy()
    settings = spec.rules.items()
    policy = Policy(
        disabled=frozenset(rule for rule, setting in settings if not setting.enabled),
        severities=MappingProxyType(
            {rule: setting.severity for rule, setting in settings if setting.severity is not None}
        ),
        params=MappingProxyType(
            {rule: MappingProxyType(dict(setting.params)) for rule, setting in settings if setting.params}
        ),
        exceptions=tuple(
            PolicyException(rule=e.rule, server=e.server, reason=e.reason, client=e.client)
            for e in spec.exceptions
        ),
        fail_on=next((severity for severity in SEVERITIES if severity == spec.failOn), None),
    )
    return TeamPolicy(policy, spec.failOn)


def policy_problems(
    spec: PolicySpec, rules: Sequence[Rule], servers: Mapping[str, set[str]]
) -> list[tuple[DocPath, str]]:
    """What is wrong with ``spec`` given the rules that exist and the servers the manifests declare
    (``servers``: each server's name, with its clients' names), as pairs of the path of the offending
    key in the Project document (``("policy", "rules", "MCP0007")``) and a message. The JSON Schema has
    checked the shapes already; these are the problems only the rules and manifests can show."""
    known = {rule.id: rule for rule in rules}
    problems: list[tuple[DocPath, str]] = []
    for rule_id, setting in spec.rules.items():
        problems += _setting_problems(rule_id, setting, known)
    first_by_target: dict[tuple[str, str, str | None], int] = {}
    for index, exception in enumerate(spec.exceptions):
        here = (*_EXCEPTIONS, index)
        problems += _exception_problems(here, exception, spec, known, servers)
        target = (exception.rule, exception.server, exception.client)
        first = first_by_target.setdefault(target, index)
        if first != index:
            message = (
                f"a second exception for rule {exception.rule} on {_subject(exception)} (the first is "
                f"policy.exceptions[{first}]): only the first one's reason is ever shown; keep one"
            )
            problems.append((here, message))
    return problems


def _setting_problems(
    rule_id: str, setting: RuleSetting, known: Mapping[str, Rule]
) -> list[tuple[DocPath, str]]:
    here = (*_RULES, rule_id)
    rule = known.get(rule_id)
    if rule is None:
        return [(here, _unknown_rule(rule_id, known))]
    if setting.params and not rule.params:
        message = f"rule {rule_id} ({rule.name}) has no parameters: leave out params"
        return [((*here, "params"), message)]
    problems: list[tuple[DocPath, str]] = []
    for name, value in setting.params.items():
        param = rule.params.get(name)
        if param is None:
            accepted = ", ".join(sorted(rule.params))
            message = (
                f"rule {rule_id} ({rule.name}) has no parameter '{name}'"
                f"{did_you_mean(name, set(rule.params))}; its parameters: {accepted}"
            )
            problems.append(((*here, "params", name), message))
        elif value < param.minimum:
            message = (
                f"{name} of rule {rule_id} is {value}, below its minimum of {param.minimum} "
                f"({param.description})"
            )
            problems.append(((*here, "params", name), message))
    return problems


def _exception_problems(
    here: DocPath,
    exception: PolicyExceptionSpec,
    spec: PolicySpec,
    known: Mapping[str, Rule],
    servers: Mapping[str, set[str]],
) -> list[tuple[DocPath, str]]:
    problems: list[tuple[DocPath, str]] = []
    rule = known.get(exception.rule)
    setting = spec.rules.get(exception.rule)
    if rule is None:
        problems.append(((*here, "rule"), _unknown_rule(exception.rule, known)))
    elif setting is not None and not setting.enabled:
        message = (
            f"rule {exception.rule} is turned off (policy.rules.{exception.rule}.enabled is false), so this "
            "exception would never apply: remove it, or turn the rule back on"
        )
        problems.append(((*here, "rule"), message))
    elif rule.applies_to == "server" and exception.client is not None:
        message = (
            f"rule {exception.rule} ({rule.name}) judges servers, not clients, so an exception for client "
            f"'{exception.client}' would never apply: leave out client to accept it on server "
            f"'{exception.server}'"
        )
        problems.append(((*here, "client"), message))
    clients = servers.get(exception.server)
    if clients is None:
        hint = did_you_mean(exception.server, set(servers))
        message = f"no MCPServer named '{exception.server}' is declared in the manifests{hint}"
        problems.append(((*here, "server"), message))
    elif exception.client is not None and exception.client not in clients:
        hint = did_you_mean(exception.client, clients)
        message = f"server '{exception.server}' has no client named '{exception.client}'{hint}"
        problems.append(((*here, "client"), message))
    return problems


def _unknown_rule(rule_id: str, known: Mapping[str, Rule]) -> str:
    return (
        f"no rule has the id '{rule_id}'{did_you_mean(rule_id, set(known))}: the rules are the built-in "
        'ones and those of installed rule plugins (README, "Security checks")'
    )


def _subject(exception: PolicyExceptionSpec) -> str:
    if exception.client is None:
        return f"server '{exception.server}'"
    return f"client '{exception.server}/{exception.client}'"
