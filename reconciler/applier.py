"""Executes a Plan: dependency levels, bounded concurrency, bulk deletes, secrets handed off as a unit.

Order: servers (create, adopt, update), then clients (create, adopt, update), then rotations, then
client deletes (one bulk call per server), then server deletes (one bulk call). Within a level,
changes run concurrently under the run's throttle. A failed change skips only what depends on it
(a client of a server that could not be created, a rotation of a client whose update failed), and
every failure is reported. Each step is journaled before it starts and after it ends.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Protocol

from reconciler.api import DescopeClient
from reconciler.delivery import Courier, new_salt, record_rotation
from reconciler.diff import overlay
from reconciler.errors import ReconcilerError
from reconciler.journal import digest
from reconciler.plan import Action, ApplyResult, Change, Kind, Plan
from reconciler.secret import Secret
from reconciler.sinks.base import SecretRecord, SecretSink, SinkError
from reconciler.wire import LiveClient, LiveServer, LiveState


class Progress(Protocol):
    """Told about every change as it starts and ends; the CLI draws it."""

    def start(self, total: int) -> None: ...
    def done(self, change: Change, error: str | None) -> None: ...
    def finish(self) -> None: ...


class SilentProgress:
    def start(self, total: int) -> None:
        pass

    def done(self, change: Change, error: str | None) -> None:
        pass

    def finish(self) -> None:
        pass


class _Failed(Exception):
    """A change failed; carries a message for people (no secrets)."""


class Applier:
    """Carries out one plan against the live state it was checked against."""

    def __init__(
        self,
        api: DescopeClient,
        plan: Plan,
        live: LiveState,
        *,
        sinks: Mapping[str, SecretSink],
        courier: Courier,
        progress: Progress | None = None,
    ) -> None:
        self.api = api
        self.plan = plan
        self.live = live
        self.sinks = sinks
        self.courier = courier
        self.journal = courier.journal
        self.progress = progress or SilentProgress()
        self.result = ApplyResult()
        self.server_ids = {s.name: s.id for s in live.servers}
        self.failed_addresses: set[str] = set()
        self.failed_servers: set[str] = set()
        self.bad_sinks: dict[str, str] = {}

    async def run(self) -> ApplyResult:
        started = time.monotonic()
        self.progress.start(len(self.plan.changes))
        self.journal.write("apply-started", changes=len(self.plan.changes))
        await self._check_sinks()
        by_level: dict[int, list[Change]] = defaultdict(list)
        for change in self.plan.changes:
            by_level[_level(change)].append(change)
        for level in sorted(by_level):
            changes = by_level[level]
            if level == DELETE_CLIENTS:
                await self._delete_clients(changes)
            elif level == DELETE_SERVERS:
                await self._delete_servers(changes)
            else:
                await asyncio.gather(*(self._one(change) for change in changes))
        self.result.seconds = time.monotonic() - started
        self.journal.write(
            "apply-finished",
            done=len(self.result.done),
            failed=len(self.result.failed),
            skipped=len(self.result.skipped),
            undelivered=len(self.result.undelivered),
        )
        self.progress.finish()
        return self.result

    async def _check_sinks(self) -> None:
        """Every sink a change needs, checked before anything changes: no secret without a home."""
        needed = {c.secret.sink for c in self.plan.changes if c.secret and c.issues_secret}
        for name in sorted(needed):
            sink = self.sinks.get(name)
            try:
                if sink is None:
                    raise SinkError(f"sink {name!r} is not configured")
                await asyncio.to_thread(sink.check)
            except SinkError as exc:
                self.bad_sinks[name] = str(exc)

    # ---- one change ----------------------------------------------------------------------------

    async def _one(self, change: Change) -> None:
        blocker = self._blocker(change)
        if blocker:
            self._skip(change, blocker)
            return
        self.journal.write("started", **_where(change))
        try:
            await self._execute(change)
        except (_Failed, ReconcilerError) as exc:
            self._fail(change, str(exc))
            return
        self.result.done.append(change)
        self.journal.write("finished", **_where(change))
        self.progress.done(change, None)

    def _blocker(self, change: Change) -> str | None:
        if change.kind is Kind.CLIENT and change.server in self.failed_servers:
            return f'its server "{change.server}" was not applied'
        if change.action is Action.ROTATE_SECRET and change.address in self.failed_addresses:
            return "its update failed"
        if change.secret and change.issues_secret and change.secret.sink in self.bad_sinks:
            return f"sink {change.secret.sink!r} is not usable: {self.bad_sinks[change.secret.sink]}"
        return None

    async def _execute(self, change: Change) -> None:
        handlers: dict[tuple[Kind, Action], Callable[[Change], Awaitable[None]]] = {
            (Kind.SERVER, Action.CREATE): self._create_server,
            (Kind.SERVER, Action.UPDATE): self._update_server,
            (Kind.SERVER, Action.ADOPT): self._update_server,
            (Kind.CLIENT, Action.CREATE): self._create_client,
            (Kind.CLIENT, Action.UPDATE): self._update_client,
            (Kind.CLIENT, Action.ADOPT): self._adopt_client,
            (Kind.CLIENT, Action.ROTATE_SECRET): self._rotate,
        }
        await handlers[(change.kind, change.action)](change)

    async def _create_server(self, change: Change) -> None:
        known = [s.id for s in self.live.servers if s.name == change.name]
        created = await self.api.create_server(change.desired, exclude_ids=known)
        self.server_ids[change.name] = created.id
        self.journal.write("server-created", server=change.name, serverId=created.id)

    async def _update_server(self, change: Change) -> None:
        live = self._live_server(change)
        await self.api.update_server(overlay(live.fields, change.desired))

    async def _create_client(self, change: Change) -> None:
        server_id = change.server_id or self.server_ids.get(change.server or "")
        if not server_id or change.secret is None:
            raise _Failed("its server's id is unknown")
        known = [c.id for c in self.live.clients_of(server_id) if c.name == change.name]
        self.journal.write("create-started", **_secret_where(change), serverId=server_id)
        created = await self.api.create_client(server_id, change.desired, exclude_ids=known)
        record = SecretRecord(change.server or "", change.name, created.client_id, change.secret.key)
        await self._hand_off(change, record, created.secret)

    async def _update_client(self, change: Change) -> None:
        live = self._live_client(change)
        await self.api.update_client(
            {**overlay(live.fields, change.desired), "id": live.id, "mcpServerId": live.server_id}
        )

    async def _adopt_client(self, change: Change) -> None:
        await self._update_client(change)
        if change.secret is None:
            return
        live = self._live_client(change)
        self.journal.write("adopt-started", **_secret_where(change), id=live.id, serverId=live.server_id)
        secret = await self.api.get_client_secret(live.server_id, live.id)
        await self._hand_off(
            change, SecretRecord(change.server or "", change.name, live.client_id, change.secret.key), secret
        )

    async def _rotate(self, change: Change) -> None:
        live = self._live_client(change)
        if change.secret is None or change.secret.rotation is None:
            raise _Failed("the plan has no rotation marker for it")
        before = await self.api.get_client_secret(live.server_id, live.id)
        salt = new_salt()
        self.journal.write(
            "rotate-started",
            **_secret_where(change),
            id=live.id,
            serverId=live.server_id,
            rotation=change.secret.rotation,
            before=digest(before, salt),
            salt=salt,
        )
        secret = await self.api.rotate_client_secret(live.server_id, live.id, before=before)
        record = SecretRecord(change.server or "", change.name, live.client_id, change.secret.key)
        await self._hand_off(change, record, secret)
        # Recorded even when delivery failed: the rotation happened; the journal redelivers.
        current = await self.api.load_client(live.server_id, id=live.id)
        await record_rotation(self.api, live.server_id, live.id, list(current.tags), change.secret.rotation)
        where = {"server": change.server, "client": change.name}
        self.journal.write("rotation-recorded", **where, rotation=change.secret.rotation)

    async def _hand_off(self, change: Change, record: SecretRecord, secret: Secret) -> None:
        assert change.secret is not None
        outcome = await self.courier.hand_off(record, change.secret.sink, secret)
        if outcome.delivered:
            self.result.delivered += 1
        else:
            self.result.undelivered.append((change.address, outcome.reason))

    # ---- deletes -------------------------------------------------------------------------------

    async def _delete_clients(self, changes: list[Change]) -> None:
        """One bulk call per server."""
        by_server: dict[str, list[Change]] = defaultdict(list)
        for change in changes:
            by_server[change.server_id or ""].append(change)
        await asyncio.gather(
            *(
                self._bulk(group, partial(self.api.delete_clients, server))
                for server, group in by_server.items()
            )
        )

    async def _delete_servers(self, changes: list[Change]) -> None:
        await self._bulk(changes, self.api.delete_servers)

    async def _bulk(self, changes: list[Change], call: Callable[[list[str]], Awaitable[None]]) -> None:
        for change in changes:
            self.journal.write("started", **_where(change))
        try:
            await call([change.id or "" for change in changes])
        except ReconcilerError as exc:
            for change in changes:
                self._fail(change, str(exc))
            return
        for change in changes:
            self.result.done.append(change)
            self.journal.write("finished", **_where(change))
            self.progress.done(change, None)

    # ---- bookkeeping ---------------------------------------------------------------------------

    def _fail(self, change: Change, reason: str) -> None:
        self.result.failed.append((change, reason))
        self.failed_addresses.add(change.address)
        if change.kind is Kind.SERVER:
            self.failed_servers.add(change.name)
        self.journal.write("failed", **_where(change), error=reason)
        self.progress.done(change, reason)

    def _skip(self, change: Change, reason: str) -> None:
        self.result.skipped.append((change, reason))
        self.failed_addresses.add(change.address)
        if change.kind is Kind.SERVER:
            self.failed_servers.add(change.name)
        self.journal.write("skipped", **_where(change), reason=reason)
        self.progress.done(change, f"skipped: {reason}")

    def _live_server(self, change: Change) -> LiveServer:
        found = next((s for s in self.live.servers if s.id == change.id), None)
        if found is None:
            raise _Failed("the live server is gone")
        return found

    def _live_client(self, change: Change) -> LiveClient:
        found = next((c for c in self.live.clients_of(change.server_id or "") if c.id == change.id), None)
        if found is None:
            raise _Failed("the live client is gone")
        return found


DELETE_CLIENTS = 3
DELETE_SERVERS = 4


def _level(change: Change) -> int:
    if change.action is Action.DELETE:
        return DELETE_CLIENTS if change.kind is Kind.CLIENT else DELETE_SERVERS
    if change.action is Action.ROTATE_SECRET:
        return 2
    return 0 if change.kind is Kind.SERVER else 1


def _where(change: Change) -> dict[str, str | None]:
    client = change.name if change.kind is Kind.CLIENT else None
    server = change.server or change.name
    return {
        "action": change.action.value,
        "kind": change.kind.value,
        "server": server,
        "client": client,
        "id": change.id,
    }


def _secret_where(change: Change) -> dict[str, str | None]:
    assert change.secret is not None
    return {
        "server": change.server,
        "client": change.name,
        "sink": change.secret.sink,
        "key": change.secret.key,
    }
