"""A team's own security rules, from installed packages: entry points in the group ``mcp_reconciler.rules``.

Why Python plugins and not Rego: the rules judge the same :class:`~reconciler.findings.Subject` objects
the built-in ones do, so a team's rule gets the same file positions, policy settings (severity,
parameters, exceptions), new/existing marking and every output format, is tested with pytest like any
Python, and needs no second language or policy engine in the CI image. Teams that already run OPA can
still point conftest at the JSON plan (its ``findings`` and ``changes``), which is documented.

An entry point names a :class:`~reconciler.findings.Rule`, a sequence of them, or a function that
returns either. A package is code the team chose to install, so loading it is not a new trust; what it
gives is still checked: each must be a Rule with an id of its own (not a built-in one, not another
plugin's), and a broken plugin is an error naming it, never a traceback.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import replace
from importlib import metadata

from reconciler.errors import UsageError
from reconciler.findings import SEVERITIES, Param, Reference, Rule
from reconciler.rules import BUILTIN_RULES

GROUP = "mcp_reconciler.rules"
_ID = re.compile(r"[A-Za-z][A-Za-z0-9_-]{1,31}")


@functools.cache
def plugin_rules() -> tuple[Rule, ...]:
    """Every rule the installed plugins give, in entry point order (read once per process)."""
    found: list[Rule] = []
    taken = {rule.id: "mcp-reconciler" for rule in BUILTIN_RULES}
    for point in sorted(metadata.entry_points(group=GROUP), key=lambda p: (p.name, p.value)):
        source = f"rule plugin {point.name!r} ({point.value}"
        source += f", package {point.dist.name})" if point.dist is not None else ")"
        for rule in _rules_of(point, source):
            if (problem := rule_problem(rule)) is not None:
                raise UsageError(f"{source} gives a rule that cannot be used: {problem}")
            if not _ID.fullmatch(rule.id):
                raise UsageError(
                    f"{source} gives a rule with the id {rule.id!r}: use letters, digits, - and _"
                )
            if rule.id in taken:
                raise UsageError(f"{source} gives the rule {rule.id}, which {taken[rule.id]} already has")
            taken[rule.id] = source
            found.append(replace(rule, plugin=source))
    return tuple(found)


def rule_problem(rule: Rule) -> str | None:
    """What is wrong with a plugin's Rule, field by field (a dataclass checks no types), or None."""
    texts = {name: getattr(rule, name) for name in ("id", "name", "summary", "rationale", "fix")}
    wrong = [name for name, value in texts.items() if not isinstance(value, str) or not value.strip()]
    if wrong:
        return f"{', '.join(wrong)} must be text that is not empty"
    references = rule.references if isinstance(rule.references, list | tuple) else ()
    params = rule.params if isinstance(rule.params, Mapping) else None
    checks = [
        (rule.severity in SEVERITIES, f"severity {rule.severity!r} is not one of {', '.join(SEVERITIES)}"),
        (
            rule.applies_to in ("server", "client"),
            f"applies_to {rule.applies_to!r} is not 'server' or 'client'",
        ),
        (callable(rule.check), "check is not a function"),
        (
            bool(references) and all(_is_reference(r) for r in references),
            "references must be a non-empty list of reconciler.findings.Reference",
        ),
        (
            params is not None and all(_is_param(n, p) for n, p in params.items()),
            "params must map names to reconciler.findings.Param (a whole default, at least its minimum)",
        ),
    ]
    return next((f"{rule.id}: {message}" for ok, message in checks if not ok), None)


def _is_reference(value: object) -> bool:
    return isinstance(value, Reference) and isinstance(value.title, str) and isinstance(value.url, str)


def _is_param(name: object, value: object) -> bool:
    return (
        isinstance(name, str)
        and isinstance(value, Param)
        and isinstance(value.default, int)
        and isinstance(value.minimum, int)
        and value.default >= value.minimum
    )


def all_rules() -> tuple[Rule, ...]:
    """The built-in rules, then the plugins'."""
    return (*BUILTIN_RULES, *plugin_rules())


def _rules_of(point: metadata.EntryPoint, source: str) -> list[Rule]:
    try:
        loaded = point.load()
        if callable(loaded) and not isinstance(loaded, Rule):
            loaded = loaded()
    except Exception as exc:  # someone else's code: any failure of it is theirs to fix
        raise UsageError(f"{source} could not be loaded: {type(exc).__name__}: {exc}") from None
    items: Iterable[object] = loaded if _iterable(loaded) else [loaded]
    rules: list[Rule] = []
    for item in items:
        if not isinstance(item, Rule):
            raise UsageError(
                f"{source} gives {type(item).__name__}, not a reconciler.findings.Rule (see README, "
                '"Your own rules")'
            )
        rules.append(item)
    return rules


def _iterable(value: object) -> bool:
    return isinstance(value, list | tuple | set | frozenset)
