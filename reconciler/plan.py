"""The plan as a value: Action, FieldChange, Change and Plan (types and their JSON form only).

``plan`` builds one, renders it, and can save it; ``apply`` executes a saved or fresh plan and
nothing else. A change carries what apply needs without the manifests (the desired fields, the
secret's destination, the live fingerprint it was planned against); ``notes`` are for people and
never steer apply. The JSON form is documented by ``schemas/plan.schema.json``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.descope.wire import SURFACES, Surface
from reconciler.findings import Finding
from reconciler.kinds import KINDS, SECRET_ACTIONS, Action, JsonValue, Kind
from reconciler.scopes import ScopesFormat
from reconciler.textsafe import visible

# Action, Kind and JsonValue are re-exported: they are the vocabulary of plans.
__all__ = [
    "ACTION_SYMBOLS",
    "FORMAT_VERSION",
    "SIGNATURE_PREFIX",
    "Action",
    "ApplyResult",
    "Cascaded",
    "Change",
    "FieldChange",
    "JsonValue",
    "Kind",
    "Plan",
    "Provenance",
    "SecretRemoval",
    "SecretTarget",
    "Withheld",
    "canonical_json",
    "checksum",
    "fingerprint",
    "signature",
]

FORMAT_VERSION = 5  # 3 added the surface of server changes; 4 list items, cascades, sink problems; 5 findings
SIGNATURE_PREFIX = "hmac-sha256:"


# How each action is marked in every rendering (``+`` create, ``~`` update, ...), so plans read alike.
ACTION_SYMBOLS = {
    Action.CREATE: "+",
    Action.UPDATE: "~",
    Action.ADOPT: ">",
    Action.ROTATE_SECRET: "*",
    Action.DELETE: "-",
}


@dataclass(frozen=True)
class FieldChange:
    """One field's value before (live) and after (desired); None means absent.

    For a set-like list that both sides have (URLs, audiences, tags, scope values), ``added`` and
    ``removed`` name the items that change, so a reviewer sees each one rather than two long lists."""

    path: str
    before: Any
    after: Any
    added: tuple[JsonValue, ...] | None = None
    removed: tuple[JsonValue, ...] | None = None

    @property
    def itemized(self) -> bool:
        return self.added is not None and self.removed is not None

    def to_json(self) -> dict[str, Any]:
        data = {"path": self.path, "before": self.before, "after": self.after}
        if self.added is not None and self.removed is not None:
            data["added"] = list(self.added)
            data["removed"] = list(self.removed)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FieldChange:
        added, removed = data.get("added"), data.get("removed")
        return cls(
            data["path"],
            data["before"],
            data["after"],
            added=tuple(added) if isinstance(added, list) else None,
            removed=tuple(removed) if isinstance(removed, list) else None,
        )


@dataclass(frozen=True)
class Cascaded:
    """An object that a delete removes with its parent (the API deletes a server's clients with it)."""

    kind: Kind
    name: str
    id: str

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind.value, "name": self.name, "id": self.id}


@dataclass(frozen=True)
class SecretTarget:
    """Where a client's secret goes: a sink declared in the plan, and the key within it."""

    sink: str
    key: str
    rotation: str | None = None


@dataclass(frozen=True)
class SecretRemoval:
    """A deleted client's secret that apply removes from its sink once the delete is done (Project
    ``pruneSecrets``): the client (its name under the change's server), its OAuth client id (the
    sink leaves an entry that names another client in place), and where the secret is."""

    client: str
    client_id: str
    sink: str
    key: str

    def to_json(self) -> dict[str, str]:
        return {"client": self.client, "clientId": self.client_id, "sink": self.sink, "key": self.key}


@dataclass(frozen=True)
class Change:
    """One action on one object, with everything apply needs to carry it out."""

    kind: Kind
    action: Action
    name: str
    server: str | None = None  # the server's name, for clients
    id: str | None = None  # the live object's id; None for creates
    server_id: str | None = None  # for clients of a server that exists already
    fingerprint: str | None = None  # of the live object planned against; None for creates
    fields: tuple[FieldChange, ...] = ()
    desired: Mapping[str, JsonValue] = field(default_factory=dict)  # the fields the manifest manages
    secret: SecretTarget | None = None
    notes: tuple[str, ...] = ()
    surface: Surface | None = None  # for a kind with surfaces: the one the change is made on
    cascade: tuple[Cascaded, ...] = ()  # for a delete: the objects below that go with it
    removes_secrets: tuple[SecretRemoval, ...] = ()  # for a delete: secrets apply removes from sinks

    @property
    def removes(self) -> int:
        """How many objects carrying it out deletes: the object and its cascade (0 unless a delete)."""
        return 1 + len(self.cascade) if self.action is Action.DELETE else 0

    def cascade_address(self, item: Cascaded) -> str:
        """How people name an object deleted with this one, escaped for display like ``address``."""
        return f'{item.kind} "{visible("/".join((*self.path, item.name)))}"'

    @property
    def address(self) -> str:
        """``server "calendar"`` or ``client "calendar/ci-agent"``: how people name it, for display
        only, so control and bidi characters in the names are shown escaped (``reconciler.textsafe``)."""
        return f'{self.kind} "{visible(self.path_text)}"'

    @property
    def on_surface(self) -> str:
        """`` (on resources)`` for a change made off the first surface, for people; else empty."""
        return f" (on {self.surface})" if self.surface not in (None, SURFACES[0]) else ""

    @property
    def path(self) -> tuple[str, ...]:
        """The object's names from the root: ``("calendar",)``, ``("calendar", "ci-agent")``."""
        return (self.name,) if self.server is None else (self.server, self.name)

    @property
    def path_text(self) -> str:
        """The path as people write it (``calendar/ci-agent``), as data: not escaped."""
        return "/".join(self.path)

    @property
    def issues_secret(self) -> bool:
        """Whether carrying it out puts a secret in our hands for the object's sink."""
        return KINDS[self.kind].holds_secret and self.action in SECRET_ACTIONS

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "kind": self.kind.value,
            "action": self.action.value,
            "name": self.name,
            "server": self.server,
            "id": self.id,
            "serverId": self.server_id,
            "fingerprint": self.fingerprint,
            "fields": [f.to_json() for f in self.fields],
            "desired": dict(self.desired),
            "notes": list(self.notes),
        }
        if self.surface is not None:
            data["surface"] = self.surface
        if self.cascade:
            data["cascade"] = [item.to_json() for item in self.cascade]
        if self.removes_secrets:
            data["removeSecrets"] = [item.to_json() for item in self.removes_secrets]
        if self.secret is not None:
            data["secret"] = {
                "sink": self.secret.sink,
                "key": self.secret.key,
                "rotation": self.secret.rotation,
            }
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Change:
        secret = data.get("secret")
        return cls(
            kind=Kind(data["kind"]),
            action=Action(data["action"]),
            name=data["name"],
            server=data.get("server"),
            id=data.get("id"),
            server_id=data.get("serverId"),
            fingerprint=data.get("fingerprint"),
            fields=tuple(FieldChange.from_json(f) for f in data.get("fields", [])),
            desired=dict(data.get("desired") or {}),
            secret=SecretTarget(secret["sink"], secret["key"], secret.get("rotation")) if secret else None,
            notes=tuple(data.get("notes") or ()),
            surface=_surface(data.get("surface")),
            cascade=tuple(
                Cascaded(Kind(item["kind"]), item["name"], item["id"]) for item in data.get("cascade") or ()
            ),
            removes_secrets=tuple(
                SecretRemoval(item["client"], item["clientId"], item["sink"], item["key"])
                for item in data.get("removeSecrets") or ()
            ),
        )


@dataclass(frozen=True)
class Withheld:
    """A change the planner chose not to make, and why (protected, dynamic clients, ...)."""

    address: str
    server: str  # the server it belongs to, for targeting
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"address": self.address, "server": self.server, "reason": self.reason}


@dataclass(frozen=True)
class Provenance:
    """The manifests and options a plan was made from (see ``reconciler.provenance``)."""

    paths: tuple[str, ...] = ()
    var_files: tuple[str, ...] = ()
    prune: bool | None = None
    allow_deletes: int | None = None
    digests: Mapping[str, str] = field(default_factory=dict)  # object address → digest

    def to_json(self) -> dict[str, Any]:
        return {
            "paths": list(self.paths),
            "varFiles": list(self.var_files),
            "prune": self.prune,
            "allowDeletes": self.allow_deletes,
            "digests": dict(sorted(self.digests.items())),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Provenance:
        return cls(
            paths=tuple(data["paths"]),
            var_files=tuple(data["varFiles"]),
            prune=data["prune"],
            allow_deletes=data["allowDeletes"],
            digests=dict(data["digests"]),
        )


@dataclass(frozen=True)
class Plan:
    """An ordered set of changes to one project, planned against one view of its live state."""

    project_id: str
    ownership_tag: str
    changes: tuple[Change, ...]
    scopes_format: ScopesFormat = "categorized"  # the approvedScopes shape apply writes
    partial: bool = False
    targets: tuple[str, ...] = ()
    withheld: tuple[Withheld, ...] = ()
    made_from: Provenance = field(default_factory=Provenance)
    # Found by plan, for people: a sink that cannot take the secrets the plan issues (sink → why).
    sink_problems: Mapping[str, str] = field(default_factory=dict)
    refused: str | None = None  # why planning refused this plan (a delete budget): shown, never applied
    # Security findings on the objects the manifests name, marked new, existing or resolved (for people
    # and policy tools: not part of the change set).
    findings: tuple[Finding, ...] = ()

    @property
    def summary(self) -> dict[str, int]:
        """Changes by action; ``delete`` counts objects deleted, those a delete takes with it included,
        as the delete budget counts them."""
        counts = {action.value: 0 for action in Action}
        for change in self.changes:
            counts[change.action.value] += change.removes or 1
        return counts

    @property
    def deletes(self) -> int:
        """How many objects the plan deletes, cascades included: what the delete budget counts."""
        return sum(change.removes for change in self.changes)

    def deletes_by_kind(self) -> dict[Kind, int]:
        """The objects the plan deletes, by kind (cascades included), for every kind: zero when none."""
        counts = dict.fromkeys(KINDS, 0)
        for change in self.changes:
            if change.action is Action.DELETE:
                counts[change.kind] += 1
                for item in change.cascade:
                    counts[item.kind] += 1
        return counts

    def sink_problem(self, change: Change) -> str | None:
        """Why the secret ``change`` issues cannot be delivered, when plan found its sink unusable."""
        if change.secret is None or not change.issues_secret:
            return None
        return self.sink_problems.get(change.secret.sink)

    @property
    def has_changes(self) -> bool:
        return bool(self.changes)

    @property
    def secret_sinks(self) -> tuple[str, ...]:
        """The sinks that the secrets this plan issues go to, sorted: each must work before apply."""
        return tuple(
            sorted({c.secret.sink for c in self.changes if c.secret is not None and c.issues_secret})
        )

    def _change_set(self) -> dict[str, Any]:
        return {
            "project": self.project_id,
            "ownershipTag": self.ownership_tag,
            "scopesFormat": self.scopes_format,
            "partial": self.partial,
            "targets": list(self.targets),
            "changes": [change.to_json() for change in self.changes],
        }

    @property
    def change_set(self) -> str:
        """A digest of exactly what apply would do: equal digests, equal changes. Shown with every
        plan, so the plan approved for apply can be compared with the one reviewed earlier."""
        return "sha256:" + hashlib.sha256(canonical_json(self._change_set()).encode()).hexdigest()

    def to_json(self, *, signing_key: bytes | None = None) -> dict[str, Any]:
        """The saved form; with ``signing_key``, signed (HMAC-SHA256) so apply can tell who made it."""
        change_set = self._change_set()
        changes = change_set.pop("changes")
        for change, data in zip(self.changes, changes, strict=True):
            problem = self.sink_problem(change)
            if problem is not None:  # beside the change, for policy tools; not part of the change set
                data["secret"]["problem"] = problem
        body = {
            "format_version": FORMAT_VERSION,
            **change_set,
            "changeSet": self.change_set,
            "summary": self.summary,
            "changes": changes,
            "withheld": [w.to_json() for w in self.withheld],
            "madeFrom": self.made_from.to_json(),
            "sinkProblems": dict(sorted(self.sink_problems.items())),
            "findings": [finding.to_json() for finding in self.findings],
        }
        if self.refused is not None:
            body["refused"] = self.refused
        if signing_key is not None:
            body["signature"] = signature(body, signing_key)
        return {**body, "checksum": checksum(body)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Plan:
        return cls(
            project_id=data["project"],
            ownership_tag=data["ownershipTag"],
            changes=tuple(Change.from_json(c) for c in data["changes"]),
            scopes_format="list" if data.get("scopesFormat") == "list" else "categorized",
            partial=bool(data.get("partial")),
            targets=tuple(data.get("targets") or ()),
            withheld=tuple(
                Withheld(w["address"], w["server"], w["reason"]) for w in data.get("withheld") or ()
            ),
            made_from=Provenance.from_json(data["madeFrom"]),
            sink_problems=dict(data.get("sinkProblems") or {}),
            refused=data.get("refused"),
            findings=tuple(Finding.from_json(f) for f in data.get("findings") or ()),
        )


def _surface(value: Any) -> Surface | None:
    return next((surface for surface in SURFACES if surface == value), None)


def canonical_json(value: Any) -> str:
    """Key-sorted, compact JSON: equal values give equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def checksum(body: Mapping[str, Any]) -> str:
    """sha256 of the plan's canonical JSON, so a truncated or edited plan file is noticed."""
    return (
        "sha256:"
        + hashlib.sha256(
            canonical_json({k: v for k, v in body.items() if k != "checksum"}).encode()
        ).hexdigest()
    )


def signature(body: Mapping[str, Any], key: bytes) -> str:
    """HMAC-SHA256 of the plan's canonical JSON (without its checksum and signature)."""
    signed = {k: v for k, v in body.items() if k not in ("checksum", "signature")}
    return SIGNATURE_PREFIX + hmac.new(key, canonical_json(signed).encode(), hashlib.sha256).hexdigest()


def fingerprint(fields: Mapping[str, Any]) -> str:
    """A short, stable digest of a live object's fields, to notice that it changed since planning."""
    return hashlib.sha256(canonical_json(dict(fields)).encode()).hexdigest()[:16]


@dataclass
class ApplyResult:
    """What happened, change by change: true even when the run failed halfway."""

    done: list[Change] = field(default_factory=list)
    failed: list[tuple[Change, str]] = field(default_factory=list)
    skipped: list[tuple[Change, str]] = field(default_factory=list)
    undelivered: list[tuple[str, str]] = field(default_factory=list)  # (client address, reason)
    notices: list[str] = field(default_factory=list)  # for people: e.g. a delivery sent elsewhere
    delivered: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed and not self.skipped and not self.undelivered
