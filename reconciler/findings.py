"""Security findings: rules judge each MCP server and client as it would stand, under a team policy (pure).

A :class:`Rule` looks at one :class:`Subject` (a server, or a client with its server beside it, in the
API's shape) and reports :class:`Hit` s; :func:`evaluate` turns hits into :class:`Finding` s under a
:class:`Policy` (rules turned off, severities changed, parameters, exceptions with a reason). A plan
judges the objects twice, as they stand and as they would stand after apply, and :func:`compare` marks
each finding new, existing or resolved: what a pull request makes worse is what a reviewer looks at.

The built-in rules live in ``reconciler.rules``; a team's own rules come from installed packages
(``reconciler.rule_plugins``). The catalogue, its sources and how to tune it: README, "Security checks".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Literal

from reconciler.errors import UsageError
from reconciler.models import Location

Severity = Literal["low", "medium", "high", "critical"]
SEVERITIES: tuple[Severity, ...] = ("low", "medium", "high", "critical")  # mildest first
SubjectKind = Literal["server", "client"]
Status = Literal["new", "existing", "resolved"]
FieldPath = tuple[str | int, ...]


def _address(server: str, client: str | None) -> str:
    return f'server "{server}"' if client is None else f'client "{server}/{client}"'


def _object_path(server: str, client: str | None) -> tuple[str, ...]:
    return (server,) if client is None else (server, client)


def severity_rank(severity: Severity) -> int:
    """0 for low up to 3 for critical: findings sort worst first by minus this."""
    return SEVERITIES.index(severity)


@dataclass(frozen=True)
class Reference:
    """A source that motivates a rule: a specification section, an RFC, Descope's documentation."""

    title: str
    url: str


@dataclass(frozen=True)
class Param:
    """A rule's setting that a team may change in its Project's policy (a whole number)."""

    default: int
    description: str
    minimum: int = 1


@dataclass(frozen=True)
class Subject:
    """One object as a rule sees it: its API fields (``approvedScopes`` a flat list of scope items,
    each with its ``category`` where known), and for a client, its server's fields too. A field that
    is absent is unknown to the manifests (not managed) or zero on the API; rules judge only what is
    there."""

    kind: SubjectKind
    server: str
    fields: Mapping[str, Any]
    client: str | None = None
    server_fields: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    # True when the fields are the manifests' alone (lint): apply merges a nested object key by key,
    # so a key the manifests leave out inside one keeps its live value, unknown here: not judged.
    written: bool = False

    @property
    def address(self) -> str:
        return _address(self.server, self.client)

    @property
    def object_path(self) -> tuple[str, ...]:
        return _object_path(self.server, self.client)


@dataclass(frozen=True)
class Hit:
    """What a rule found on one subject: a message for people, the field it is about (for its file
    position), and what tells two hits of one rule on one object apart (a URL, a pattern)."""

    message: str
    path: FieldPath = ()
    detail: str = ""


Check = Callable[[Subject, Mapping[str, int]], Iterable[Hit]]


@dataclass(frozen=True)
class Rule:
    """One check: its id and name, default severity, what it flags, why, where that comes from, how to
    fix it, and the check itself (given the subject and the rule's parameters)."""

    id: str
    name: str
    severity: Severity
    applies_to: SubjectKind
    summary: str
    rationale: str
    fix: str
    references: tuple[Reference, ...]
    check: Check = field(repr=False, compare=False)
    params: Mapping[str, Param] = field(default_factory=lambda: MappingProxyType({}))
    # Who wrote it: None for mcp-reconciler's own rules, else the plugin (reconciler.rule_plugins).
    # A plugin's check that fails, or gives something that is not a Hit, is an error naming it.
    plugin: str | None = None


@dataclass(frozen=True)
class PolicyException:
    """A finding a team accepts, with the reason shown wherever the finding is: one rule, on one server
    (and all its clients) or one client."""

    rule: str
    server: str
    reason: str
    client: str | None = None

    def covers(self, finding: Finding) -> bool:
        if finding.rule != self.rule or finding.server != self.server:
            return False
        return self.client is None or finding.client == self.client


@dataclass(frozen=True)
class Policy:
    """A team's settings of the rules (its Project's ``policy``); by default every rule on, as shipped."""

    disabled: frozenset[str] = frozenset()
    severities: Mapping[str, Severity] = field(default_factory=lambda: MappingProxyType({}))
    params: Mapping[str, Mapping[str, int]] = field(default_factory=lambda: MappingProxyType({}))
    exceptions: tuple[PolicyException, ...] = ()
    fail_on: Severity | None = None  # the default of --fail-on; None: the command's own default

    def settings(self, rule: Rule) -> dict[str, int]:
        """The rule's parameters: its defaults, with the team's values over them."""
        chosen = self.params.get(rule.id, {})
        return {name: chosen.get(name, param.default) for name, param in rule.params.items()}


@dataclass(frozen=True)
class Finding:
    """A rule's hit on one object, as reported: effective severity, where (the object, the field, and
    the file position when the object comes from a manifest), and in a plan whether it is new."""

    rule: str
    name: str
    severity: Severity
    server: str
    message: str
    client: str | None = None
    path: FieldPath = ()
    detail: str = ""
    location: Location | None = None
    status: Status | None = None
    excepted: str | None = None  # the reason of the policy exception that accepts it

    @property
    def key(self) -> tuple[str, str, str | None, str]:
        """What makes two findings the same one, before and after a change."""
        return (self.rule, self.server, self.client, self.detail)

    @property
    def address(self) -> str:
        return _address(self.server, self.client)

    @property
    def object_path(self) -> tuple[str, ...]:
        """``(server,)`` or ``(server, client)``: the object's names from the root, as a plan's."""
        return _object_path(self.server, self.client)

    @property
    def counts(self) -> bool:
        """Whether it counts towards --fail-on and the summary's worst: not accepted, not gone."""
        return self.excepted is None and self.status != "resolved"

    @property
    def field(self) -> str:
        """The field it is about, as a path (``approvedCallbackUrls[1]``); "" for the whole object."""
        text = ""
        for part in self.path:
            text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
        return text

    def to_json(self) -> dict[str, Any]:
        where = self.location
        return {
            "rule": self.rule,
            "name": self.name,
            "severity": self.severity,
            "object": self.address,
            "server": self.server,
            "client": self.client,
            "field": self.field,
            "detail": self.detail,
            "message": self.message,
            "location": None
            if where is None
            else {"file": where.file, "line": where.line, "column": where.column},
            "status": self.status,
            "excepted": self.excepted,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Finding:
        """A finding as ``to_json`` wrote it (in a saved plan, checked against its schema first)."""
        where = data.get("location")
        return cls(
            rule=str(data["rule"]),
            name=str(data["name"]),
            severity=_severity(data["severity"]),
            server=str(data["server"]),
            client=None if data.get("client") is None else str(data["client"]),
            message=str(data["message"]),
            path=(str(data["field"]),) if data.get("field") else (),
            detail=str(data.get("detail") or ""),
            location=None
            if not isinstance(where, Mapping)
            else Location(str(where["file"]), int(where["line"]), int(where["column"])),
            status=next((s for s in STATUSES if s == data.get("status")), None),
            excepted=None if data.get("excepted") is None else str(data["excepted"]),
        )


STATUSES: tuple[Status, ...] = ("new", "existing", "resolved")


def _severity(value: object) -> Severity:
    found = next((s for s in SEVERITIES if s == value), None)
    if found is None:
        raise ValueError(f"not a severity: {value!r}")
    return found


def evaluate(
    subjects: Iterable[Subject], rules: Sequence[Rule], policy: Policy | None = None
) -> list[Finding]:
    """Every finding of ``rules`` on ``subjects`` under ``policy``, worst first, then by object."""
    judge = Judge(rules, policy)
    return ordered(finding for subject in subjects for finding in judge(subject))


class Judge:
    """``rules`` under ``policy``, judging one subject at a time."""

    def __init__(self, rules: Sequence[Rule], policy: Policy | None = None) -> None:
        self.rules = tuple(rules)
        self.policy = policy = policy or Policy()
        # Each rule's kind, settings and severity are decided once, not once per object: a large plan
        # judges tens of thousands of objects.
        self._active: dict[SubjectKind, list[tuple[Rule, dict[str, int], Severity]]] = {
            "server": [],
            "client": [],
        }
        for rule in rules:
            if rule.id not in policy.disabled:
                severity = policy.severities.get(rule.id, rule.severity)
                self._active[rule.applies_to].append((rule, policy.settings(rule), severity))

    def __call__(self, subject: Subject) -> list[Finding]:
        found: list[Finding] = []
        for rule, settings, severity in self._active[subject.kind]:
            hits = (
                rule.check(subject, settings)
                if rule.plugin is None
                else _plugin_hits(rule, subject, settings)
            )
            for hit in hits:
                finding = Finding(
                    rule=rule.id,
                    name=rule.name,
                    severity=severity,
                    server=subject.server,
                    client=subject.client,
                    message=hit.message,
                    path=hit.path,
                    detail=hit.detail,
                )
                reason = next((e.reason for e in self.policy.exceptions if e.covers(finding)), None)
                found.append(finding if reason is None else replace(finding, excepted=reason))
        return found


class JudgedAhead:
    """Findings of subjects judged ahead of need (the live objects, judged as they arrive while the
    rest is still being read), kept by the subject's very objects: a subject made later of the same
    names and the same field mappings is not judged again. It holds the subjects, so that the
    mappings it keys on live as long as it does."""

    def __init__(self, judge: Judge) -> None:
        self.judge = judge
        self._known: dict[tuple[Any, ...], tuple[Subject, list[Finding]]] = {}

    def add(self, subject: Subject) -> None:
        self._known[_identity(subject)] = (subject, self.judge(subject))

    def evaluate(self, subjects: Iterable[Subject]) -> list[Finding]:
        """As :func:`evaluate` with the judge's rules and policy, judging only the subjects not known."""
        found: list[Finding] = []
        for subject in subjects:
            known = self._known.get(_identity(subject))
            found += known[1] if known is not None else self.judge(subject)
        return ordered(found)


def _identity(subject: Subject) -> tuple[Any, ...]:
    return (
        subject.kind,
        subject.server,
        subject.client,
        subject.written,
        id(subject.fields),
        id(subject.server_fields),
    )


def _plugin_hits(rule: Rule, subject: Subject, settings: Mapping[str, int]) -> list[Hit]:
    """A plugin rule's hits, checked: its failure is the plugin's to fix, said as such, never a crash."""
    where = f"rule {rule.id} of {rule.plugin}, on {subject.address}"
    try:
        hits = list(rule.check(subject, settings))
    except Exception as exc:  # someone else's code: any failure of it is theirs
        raise UsageError(f"{where} failed: {type(exc).__name__}: {exc}") from None
    for hit in hits:
        path_ok = isinstance(hit, Hit) and all(isinstance(p, str | int) for p in tuple(hit.path))
        if not (path_ok and isinstance(hit.message, str) and isinstance(hit.detail, str)):
            raise UsageError(
                f"{where} gave {type(hit).__name__}: a rule yields reconciler.findings.Hit "
                "(message: str, path: a tuple of str and int, detail: str)"
            )
    return [replace(hit, path=tuple(hit.path)) for hit in hits]


def ordered(findings: Iterable[Finding]) -> list[Finding]:
    """Worst first; then by object, rule and detail, so that output is stable."""
    return sorted(
        findings, key=lambda f: (-severity_rank(f.severity), f.server, f.client or "", f.rule, f.detail)
    )


def compare(
    after: Sequence[Finding],
    before: Sequence[Finding],
    *,
    taken_on: Callable[[Finding], bool] = lambda _finding: False,
) -> list[Finding]:
    """``after`` marked new (not in ``before``) or existing, and what ``before`` had that ``after``
    has not, marked resolved: what a change makes worse, leaves, and fixes. A finding ``taken_on``
    says the change takes on (an adopted object's: it was someone else's) is new even when live had it."""
    known = {finding.key for finding in before}
    remaining = {finding.key for finding in after}
    marked = [replace(f, status="existing" if f.key in known and not taken_on(f) else "new") for f in after]
    marked += [replace(f, status="resolved") for f in before if f.key not in remaining]
    return ordered(marked)


def at_or_above(
    findings: Iterable[Finding], threshold: Severity | None, *, new_only: bool = False
) -> list[Finding]:
    """The findings that fail a run with ``--fail-on threshold`` (None: none do): counted ones at or
    above it, and in a plan (``new_only``) only those the change introduces."""
    if threshold is None:
        return []
    floor = severity_rank(threshold)
    return [
        f
        for f in findings
        if f.counts and severity_rank(f.severity) >= floor and (not new_only or f.status == "new")
    ]


def counts(findings: Iterable[Finding]) -> dict[str, int]:
    """How many counted findings of each severity, and how many were accepted by an exception."""
    tally: dict[str, int] = dict.fromkeys(SEVERITIES, 0)
    accepted = 0
    for finding in findings:
        if finding.status == "resolved":
            continue
        if finding.excepted is not None:
            accepted += 1
        else:
            tally[finding.severity] += 1
    return {**tally, "excepted": accepted}
