"""What the security rules judge: each server and client as the manifests write it, as it stands live,
and as it will stand once a plan is applied (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from reconciler.descope.wire import LiveServer, LiveState
from reconciler.diff import overlay
from reconciler.findings import Subject
from reconciler.kinds import Desired, Kind, desired_objects
from reconciler.models import Manifest
from reconciler.plan import Action, Change, Plan

Path = tuple[str, ...]  # ("server",) or ("server", "client")


def manifest_subjects(manifest: Manifest, desired: Sequence[Desired] | None = None) -> list[Subject]:
    """Every server and client as the manifests state it (fields they leave out are not judged)."""
    subjects: list[Subject] = []
    for server in desired if desired is not None else desired_objects(manifest):
        server_fields = MappingProxyType(dict(server.fields))
        subjects.append(
            Subject("server", server.name, server_fields, server_fields=server_fields, written=True)
        )
        subjects += [
            Subject(
                "client", server.name, MappingProxyType(dict(c.fields)), c.name, server_fields, written=True
            )
            for c in server.children
        ]
    return subjects


@dataclass(frozen=True)
class _Object:
    id: str | None  # None: created by the plan
    fields: Mapping[str, Any]


@dataclass(frozen=True)
class PlanSubjects:
    """The objects a plan touches or the manifests name, before and after it is applied.

    ``before``: those of them live has (the manifests' objects found by name, and those the plan
    deletes). ``after``: the ``changed`` ones (those the plan changes, and the clients of a changed
    server, judged with its fields) as apply will leave them: a change's fields laid over the live
    ones as apply lays them (nested objects merged, scope categories settled: ``Change.desired``), a
    new object as the plan creates it, a deleted one gone; every other object stands after as before.
    ``adopted``: those the plan adopts, whose findings it takes on."""

    before: list[Subject]
    after: list[Subject]
    changed: frozenset[Path]
    adopted: frozenset[Path]


def plan_subjects(manifest: Manifest, live: LiveState, plan: Plan) -> PlanSubjects:
    now = _named_live_objects(manifest, live)
    _add_deleted(now, live, plan)
    then = dict(now)
    # Deletes first: a server moving to the other surface is both created and deleted (its old copy).
    for change in plan.changes:
        if change.action is Action.DELETE:
            for path in [p for p, obj in then.items() if obj.id == change.id or _under(p, change)]:
                del then[path]
    for change in plan.changes:
        if change.action is Action.CREATE:
            then[change.path] = _Object(None, MappingProxyType(dict(change.desired)))
        elif change.action in (Action.UPDATE, Action.ADOPT):
            current = now.get(change.path)
            base = current.fields if current is not None and current.id == change.id else {}
            then[change.path] = _Object(change.id, MappingProxyType(overlay(base, change.desired)))
    touched = {c.path for c in plan.changes if c.action is not Action.ROTATE_SECRET}
    changed = frozenset(p for p in {*now, *then} if p[:1] in touched or p in touched)
    adopted = frozenset(c.path for c in plan.changes if c.action is Action.ADOPT)
    return PlanSubjects(_subjects(now), _subjects(then, only=changed), changed, adopted)


def _named_live_objects(manifest: Manifest, live: LiveState) -> dict[Path, _Object]:
    """The live objects the manifests name (a server by name; of several, the first), by path."""
    by_name: dict[str, LiveServer] = {}
    for server in live.servers:
        by_name.setdefault(server.name, server)
    found: dict[Path, _Object] = {}
    for spec in manifest.servers:
        named = by_name.get(spec.name)
        if named is None:
            continue
        found[(spec.name,)] = _Object(named.id, named.fields)
        clients = {client.name: client for client in live.clients_of(named.id)}
        for client_spec in spec.clients:
            match = clients.get(client_spec.name)
            if match is not None:
                found[(spec.name, client_spec.name)] = _Object(match.id, match.fields)
    return found


def _add_deleted(found: dict[Path, _Object], live: LiveState, plan: Plan) -> None:
    """The live objects the plan deletes (pruned: no manifest names them), and what goes with them."""
    servers = {server.id: server for server in live.servers}
    for change in plan.changes:
        if change.action is not Action.DELETE or change.id is None:
            continue
        if change.kind is Kind.SERVER and change.id in servers:
            server = servers[change.id]
            found.setdefault(change.path, _Object(server.id, server.fields))
            for client in live.clients_of(server.id):
                found.setdefault((*change.path, client.name), _Object(client.id, client.fields))
        elif change.kind is Kind.CLIENT and change.server_id:
            gone = next((c for c in live.clients_of(change.server_id) if c.id == change.id), None)
            if gone is not None:
                found.setdefault(change.path, _Object(gone.id, gone.fields))


def _under(path: Path, change: Change) -> bool:
    """Whether ``path`` is a client of the server that ``change`` deletes (they go with it)."""
    return change.kind is Kind.SERVER and len(path) == 2 and path[:1] == change.path


def _subjects(objects: Mapping[Path, _Object], only: frozenset[Path] | None = None) -> list[Subject]:
    subjects: list[Subject] = []
    for path, obj in objects.items():
        if only is not None and path not in only:
            continue
        if len(path) == 1:
            subjects.append(Subject("server", path[0], obj.fields, server_fields=obj.fields))
        else:
            server = objects.get(path[:1])
            server_fields = server.fields if server is not None else MappingProxyType({})
            subjects.append(Subject("client", path[0], obj.fields, path[1], server_fields))
    return subjects
