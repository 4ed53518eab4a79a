"""Manifest + LiveState → Plan: matching, ownership, pruning, budgets and ordering (pure).

Servers match by name, clients by name within their server. Only objects carrying the Project's
ownership tag are ever updated or deleted; a live object of a manifest entry's name without it is
a conflict unless the entry says ``adopt: true``. Deletes happen only with pruning, never to
protected objects or to dynamically registered clients (nor to a server that still has clients the
reconciler does not own), and a plan with more deletes than the budget is refused as a whole.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from reconciler import assumptions
from reconciler.diff import field_changes
from reconciler.errors import PlanError, UsageError
from reconciler.models import ClientSpec, Manifest, ServerSpec, secret_key
from reconciler.plan import (
    Action,
    Change,
    FieldChange,
    Kind,
    Plan,
    SecretTarget,
    Withheld,
    fingerprint,
)
from reconciler.tags import PROTECT_TAG, rotation_markers, user_tags, with_system_tags
from reconciler.wire import LiveClient, LiveServer, LiveState

MANIFEST_ONLY_SERVER_FIELDS = frozenset({"kind", "protect", "adopt", "clients"})
MANIFEST_ONLY_CLIENT_FIELDS = frozenset({"kind", "server", "protect", "adopt", "secret"})
LEVELS = {  # apply order: parents before children for creates and updates, children first for deletes
    (Kind.SERVER, Action.CREATE): 0,
    (Kind.SERVER, Action.ADOPT): 0,
    (Kind.SERVER, Action.UPDATE): 0,
    (Kind.CLIENT, Action.CREATE): 1,
    (Kind.CLIENT, Action.ADOPT): 1,
    (Kind.CLIENT, Action.UPDATE): 1,
    (Kind.CLIENT, Action.ROTATE_SECRET): 2,
    (Kind.CLIENT, Action.DELETE): 3,
    (Kind.SERVER, Action.DELETE): 4,
}


@dataclass(frozen=True)
class Target:
    """``server:NAME`` or ``client:SERVER/NAME`` from ``--target``."""

    kind: Kind
    server: str
    name: str | None = None

    @classmethod
    def parse(cls, text: str) -> Target:
        kind, _, rest = text.partition(":")
        if kind == "server" and rest:
            return cls(Kind.SERVER, rest)
        server, _, name = rest.partition("/")
        if kind == "client" and server and name:
            return cls(Kind.CLIENT, server, name)
        raise UsageError(f"invalid target {text!r}: expected server:NAME or client:SERVER/NAME")

    def __str__(self) -> str:
        return f"server:{self.server}" if self.kind is Kind.SERVER else f"client:{self.server}/{self.name}"

    def covers(self, change: Change) -> bool:
        server = change.name if change.kind is Kind.SERVER else change.server
        if self.kind is Kind.SERVER:
            return server == self.server
        return change.kind is Kind.CLIENT and (server, change.name) == (self.server, self.name)


@dataclass(frozen=True)
class PlanOptions:
    prune: bool | None = None  # None: the Project's setting
    allow_deletes: int | None = None
    targets: tuple[Target, ...] = ()
    # For drift: every difference is a finding, so conflicts are skipped rather than fatal and
    # the delete budget does not apply.
    lenient: bool = False


def build_plan(manifest: Manifest, live: LiveState, options: PlanOptions | None = None) -> Plan:
    """The changes that make ``live`` match ``manifest``; raises PlanError listing every problem."""
    return _Planner(manifest, live, options or PlanOptions()).plan()


class _Planner:
    def __init__(self, manifest: Manifest, live: LiveState, options: PlanOptions) -> None:
        self.manifest = manifest
        self.live = live
        self.options = options
        self.owner = manifest.project.ownershipTag
        self.prune = manifest.project.prune if options.prune is None else options.prune
        self.changes: list[Change] = []
        self.withheld: list[Withheld] = []
        self.problems: list[str] = []
        self.cascade: dict[str, int] = {}  # server id → clients its delete removes with it

    def plan(self) -> Plan:
        servers_by_name = _by_name(self.live.servers)
        for spec in self.manifest.servers:
            self._plan_server(spec, servers_by_name.get(spec.name, []))
        wanted = {spec.name for spec in self.manifest.servers}
        for name, servers in sorted(servers_by_name.items()):
            if name not in wanted:
                for server in servers:
                    self._prune_server(server)
        changes = self._targeted(self.changes)
        if not self.options.lenient:
            self._check_budget(changes)
            if self.problems:
                raise PlanError(self.problems)
        project = self.manifest.project
        return Plan(
            project_id=project.projectId,
            ownership_tag=self.owner,
            changes=tuple(sorted(changes, key=_order)),
            scopes_format=self.live.scopes_format or project.scopesFormat,
            partial=bool(self.options.targets),
            targets=tuple(str(t) for t in self.options.targets),
            withheld=tuple(w for w in self.withheld if self._in_scope(w.server)),
        )

    # ---- servers -------------------------------------------------------------------------------

    def _plan_server(self, spec: ServerSpec, matches: Sequence[LiveServer]) -> None:
        if len(matches) > 1:
            ids = ", ".join(s.id for s in matches)
            self.problems.append(
                f'server "{spec.name}" matches {len(matches)} live servers ({ids}); '
                "rename or delete all but one"
            )
            return
        desired = _server_payload(spec)
        if not matches:
            tags = with_system_tags(desired.get("tags", []), self.owner, protect=spec.protect)
            self.changes.append(_create(Kind.SERVER, spec.name, desired, tags))
            for client in spec.clients:
                self._create_client(spec.name, None, client)
            return
        live = matches[0]
        owned = self.owner in live.tags
        if not owned and not spec.adopt:
            self.problems.append(_conflict(f'server "{spec.name}"', live.id))
            return
        change = self._update(
            Kind.SERVER,
            name=spec.name,
            server=None,
            live=live.fields,
            desired=desired,
            protect=spec.protect,
            owned=owned,
        )
        if change:
            self.changes.append(change)
        self._plan_clients(spec, live)

    def _prune_server(self, server: LiveServer) -> None:
        if self.owner not in server.tags or not self.prune:
            return
        address = f'server "{server.name}"'
        if PROTECT_TAG in server.tags:
            self.withheld.append(
                Withheld(address, server.name, "protected (protect: true when last applied)")
            )
            return
        clients = self.live.clients_of(server.id)
        foreign = [c for c in clients if self.owner not in c.tags or _dynamic(c)]
        if foreign or not self.live.complete:
            reason = (
                f"it has {len(foreign)} clients that mcp-reconciler does not manage, "
                "and deleting it would delete them"
            )
            self.withheld.append(
                Withheld(address, server.name, reason if foreign else "its clients were not fetched")
            )
            return
        self.cascade[server.id] = len(clients)
        plural = "s" if len(clients) != 1 else ""
        notes = (f"also deletes its {len(clients)} client{plural}",) if clients else ()
        self.changes.append(
            Change(
                Kind.SERVER,
                Action.DELETE,
                server.name,
                id=server.id,
                fingerprint=fingerprint(server.fields),
                notes=notes,
            )
        )

    # ---- clients -------------------------------------------------------------------------------

    def _plan_clients(self, spec: ServerSpec, server: LiveServer) -> None:
        by_name = _by_name(self.live.clients_of(server.id))
        for client in spec.clients:
            matches = by_name.get(client.name, [])
            if len(matches) > 1:
                ids = ", ".join(c.id for c in matches)
                self.problems.append(
                    f'client "{spec.name}/{client.name}" matches {len(matches)} live clients ({ids})'
                )
            elif not matches:
                self._create_client(spec.name, server.id, client)
            else:
                self._plan_client(spec.name, server.id, client, matches[0])
        wanted = {client.name for client in spec.clients}
        for name, clients in sorted(by_name.items()):
            if name not in wanted:
                for client in clients:
                    self._prune_client(spec.name, server.id, client)

    def _create_client(self, server: str, server_id: str | None, spec: ClientSpec) -> None:
        target = self._secret_target(server, spec)
        desired = _client_payload(spec)
        tags = with_system_tags(
            desired.get("tags", []), self.owner, protect=spec.protect, rotation=target.rotation
        )
        change = _create(Kind.CLIENT, spec.name, desired, tags, server=server)
        self.changes.append(replace(change, server_id=server_id, secret=target))

    def _plan_client(self, server: str, server_id: str, spec: ClientSpec, live: LiveClient) -> None:
        owned = self.owner in live.tags
        if not owned and not spec.adopt:
            self.problems.append(_conflict(f'client "{server}/{spec.name}"', live.id))
            return
        target = self._secret_target(server, spec)
        markers = rotation_markers(live.tags)
        # Tags edited by hand may hold several markers: the wanted one among them counts as done.
        marker = target.rotation if target.rotation in markers else next(iter(markers), None)
        # Adopting records the marker as it is: the adopted client's current secret is delivered.
        kept = target.rotation if not owned else marker
        desired = _client_payload(spec)
        change = self._update(
            Kind.CLIENT,
            name=spec.name,
            server=server,
            live=live.fields,
            desired=desired,
            protect=spec.protect,
            owned=owned,
            rotation=kept,
        )
        if change:
            self.changes.append(replace(change, server_id=server_id, secret=target))
        if owned and target.rotation is not None and target.rotation != marker:
            self.changes.append(
                Change(
                    Kind.CLIENT,
                    Action.ROTATE_SECRET,
                    spec.name,
                    server=server,
                    id=live.id,
                    server_id=server_id,
                    fingerprint=fingerprint(live.fields),
                    fields=(FieldChange("secret.rotation", marker, target.rotation),),
                    secret=target,
                )
            )

    def _prune_client(self, server: str, server_id: str, client: LiveClient) -> None:
        if self.owner not in client.tags or not self.prune:
            return
        address = f'client "{server}/{client.name}"'
        if PROTECT_TAG in client.tags:
            self.withheld.append(Withheld(address, server, "protected (protect: true when last applied)"))
        elif _dynamic(client):
            self.withheld.append(
                Withheld(address, server, f"registered dynamically ({client.registration_type})")
            )
        else:
            fp = fingerprint(client.fields)
            self.changes.append(
                Change(
                    Kind.CLIENT,
                    Action.DELETE,
                    client.name,
                    server=server,
                    id=client.id,
                    server_id=server_id,
                    fingerprint=fp,
                )
            )

    def _secret_target(self, server: str, spec: ClientSpec) -> SecretTarget:
        sink = spec.secret.sink or self.manifest.project.defaultSink or ""
        rotation = None if spec.secret.rotation is None else str(spec.secret.rotation)
        return SecretTarget(sink, secret_key(server, spec), rotation)

    # ---- shared --------------------------------------------------------------------------------

    def _update(
        self,
        kind: Kind,
        *,
        name: str,
        server: str | None,
        live: Mapping[str, Any],
        desired: dict[str, Any],
        protect: bool,
        owned: bool,
        rotation: str | None = None,
    ) -> Change | None:
        """An update (or adoption) when anything differs; desired tags keep the system tags."""
        live_tags = list(live.get("tags") or [])
        visible = {**live, "tags": user_tags(live_tags, self.owner)}
        fields = list(field_changes(visible, desired))
        was_protected = PROTECT_TAG in live_tags
        if owned and protect != was_protected:
            fields.append(FieldChange("protect", was_protected, protect))
        if owned and not fields:
            return None
        base_tags = desired["tags"] if "tags" in desired else user_tags(live_tags, self.owner)
        tags = with_system_tags(base_tags, self.owner, protect=protect, rotation=rotation)
        action = Action.UPDATE if owned else Action.ADOPT
        notes = () if owned else ("takes over the live object: stamps the ownership tag",)
        return Change(
            kind,
            action,
            name,
            server=server,
            id=str(live.get("id", "")),
            fingerprint=fingerprint(live),
            fields=tuple(fields),
            desired={**desired, "tags": tags},
            notes=notes,
        )

    def _targeted(self, changes: list[Change]) -> list[Change]:
        if not self.options.targets:
            return changes
        chosen = [c for c in changes if any(t.covers(c) for t in self.options.targets)]
        created = {c.name for c in chosen if c.kind is Kind.SERVER and c.action is Action.CREATE}
        for change in chosen:
            if change.kind is Kind.CLIENT and change.server_id is None and change.server not in created:
                self.problems.append(
                    f"{change.address} needs its server created first: add --target server:{change.server}"
                )
        return chosen

    def _in_scope(self, server: str) -> bool:
        return not self.options.targets or any(t.server == server for t in self.options.targets)

    def _check_budget(self, changes: Iterable[Change]) -> None:
        deletes = sum(1 + self.cascade.get(c.id or "", 0) for c in changes if c.action is Action.DELETE)
        if not deletes:
            return
        allowed = self._delete_budget()
        override = self.options.allow_deletes
        if deletes > allowed and (override is None or deletes > override):
            setting = self.manifest.project.maxDeletes
            self.problems.append(
                f"the plan deletes {deletes} objects, more than maxDeletes allows ({setting}: {allowed}); "
                f"review the deletes, then re-run with --allow-deletes {deletes}"
            )

    def _delete_budget(self) -> int:
        setting = self.manifest.project.maxDeletes
        if isinstance(setting, int):
            return setting
        managed = sum(1 for s in self.live.servers if self.owner in s.tags)
        managed += sum(1 for cs in self.live.clients.values() for c in cs if self.owner in c.tags)
        return math.floor(managed * int(setting.rstrip("%")) / 100)


def _server_payload(spec: ServerSpec) -> dict[str, Any]:
    return {k: v for k, v in spec.mentioned().items() if k not in MANIFEST_ONLY_SERVER_FIELDS}


def _client_payload(spec: ClientSpec) -> dict[str, Any]:
    return {
        **{k: v for k, v in spec.mentioned().items() if k not in MANIFEST_ONLY_CLIENT_FIELDS},
        "name": spec.name,
    }


def _create(
    kind: Kind, name: str, shown: dict[str, Any], tags: list[str], *, server: str | None = None
) -> Change:
    """A create: ``shown`` is what the manifest says, ``tags`` the full list with system tags."""
    fields = [FieldChange(key, None, value) for key, value in sorted(shown.items())]
    return Change(
        kind, Action.CREATE, name, server=server, fields=tuple(fields), desired={**shown, "tags": tags}
    )


def _by_name(objects: Iterable[Any]) -> dict[str, list[Any]]:
    grouped: dict[str, list[Any]] = defaultdict(list)
    for obj in objects:
        grouped[obj.name].append(obj)
    return grouped


def _dynamic(client: LiveClient) -> bool:
    return client.registration_type not in ("", assumptions.REGISTRATION_PRE_REGISTERED)


def _conflict(address: str, live_id: str) -> str:
    return (
        f"{address} exists in Descope ({live_id}) but is not managed by mcp-reconciler: "
        "set adopt: true to take it over, or choose another name"
    )


def _order(change: Change) -> tuple[int, str, str]:
    return (LEVELS[(change.kind, change.action)], change.server or change.name, change.name)
