"""What the security rules judge: each server and client of the manifests, as written, as it stands
live, and as it would stand after apply (pure)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from reconciler.descope.wire import LiveServer, LiveState
from reconciler.findings import Subject
from reconciler.kinds import Desired, desired_objects
from reconciler.models import Manifest


def manifest_subjects(manifest: Manifest, desired: Sequence[Desired] | None = None) -> list[Subject]:
    """Every server and client as the manifests state it (fields they leave out are not judged)."""
    subjects: list[Subject] = []
    for server in desired if desired is not None else desired_objects(manifest):
        server_fields = MappingProxyType(dict(server.fields))
        subjects.append(Subject("server", server.name, server_fields, server_fields=server_fields))
        subjects += [
            Subject("client", server.name, MappingProxyType(dict(c.fields)), c.name, server_fields)
            for c in server.children
        ]
    return subjects


def live_subjects(
    manifest: Manifest,
    live: LiveState,
    desired: Sequence[Desired] | None = None,
    changes: Callable[[str, str | None], bool] | None = None,
) -> tuple[list[Subject], list[Subject]]:
    """The objects the manifests name, as they stand live (``before``: only those that exist) and as
    they would stand once applied (``after``: the live fields with the manifests' fields over them;
    a new object has only the manifests'). With ``changes``, ``after`` holds only the objects it says
    a plan changes (by server name, and client name or None): the others stand after as before."""
    changed = changes or (lambda _server, _client: True)
    before: list[Subject] = []
    after: list[Subject] = []
    by_name = _servers_by_name(live)
    for server in desired if desired is not None else desired_objects(manifest):
        now = by_name.get(server.name)
        live_fields: Mapping[str, Any] = now.fields if now is not None else {}
        merged = MappingProxyType({**live_fields, **server.fields})
        if changed(server.name, None):
            after.append(Subject("server", server.name, merged, server_fields=merged))
        clients = {c.name: c for c in live.clients_of(now.id)} if now is not None else {}
        if now is not None:
            before.append(Subject("server", server.name, now.fields, server_fields=now.fields))
        for child in server.children:
            current = clients.get(child.name)
            if changed(server.name, child.name):
                fields = {**(current.fields if current is not None else {}), **child.fields}
                after.append(Subject("client", server.name, MappingProxyType(fields), child.name, merged))
            if current is not None and now is not None:
                before.append(Subject("client", server.name, current.fields, child.name, now.fields))
    return before, after


def _servers_by_name(live: LiveState) -> dict[str, LiveServer]:
    """Live servers by name; of several with one name (the plan refuses those) the first is judged."""
    found: dict[str, LiveServer] = {}
    for server in live.servers:
        found.setdefault(server.name, server)
    return found
