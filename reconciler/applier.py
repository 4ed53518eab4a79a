"""Executes a Plan: dependency levels, bounded concurrency, bulk deletes, secrets handed off as a unit.

Order (``kinds.level``): creates, adoptions and updates parents first (servers, then clients), then
rotations, then deletes children first (one bulk call per parent: the clients of each server, then
the servers), each followed by removing the deleted clients' secrets from their sinks when the plan
says so (Project ``pruneSecrets``). Within a level, changes run concurrently under the run's
throttle. A failed change skips only what depends on it (``kinds.depends_on``: a client of a
server that could not be created, a rotation of a client whose update failed), and every failure is
reported. Each step is journaled before it starts (``Journal.record``: the concurrent changes of a
level share each fsync) and after it ends (``Journal.note``, synced once at the level's end). The
secrets a level issues are delivered together, once every change of the level has issued its secret
or ended (``delivery.DeliveryRound``): one write per sink, not one per secret. The API calls of each
kind come from the ``reconciler.operations`` registry.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Mapping
from typing import Protocol

from reconciler.delivery import Courier, DeliveryRound, Seat, new_salt
from reconciler.descope.client import DescopeClient
from reconciler.descope.wire import LiveState
from reconciler.errors import ReconcilerError
from reconciler.journal import digest
from reconciler.kinds import KINDS, LiveObject, depends_on, level
from reconciler.operations import SECRET_OPERATIONS, SecretOperations, operations_for
from reconciler.plan import Action, ApplyResult, Change, Plan, SecretRemoval
from reconciler.secret import Secret
from reconciler.sinks.base import Removal, RemovingSink, SecretRecord, SecretSink, SinkError


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
        self.created_ids: dict[tuple[str, ...], str] = {}  # path of an object created now → its id
        self.not_applied: list[Change] = []  # failed or skipped: what depends on them is skipped
        self.bad_sinks: dict[str, str] = {}

    async def run(self) -> ApplyResult:
        started = time.monotonic()
        self.progress.start(len(self.plan.changes))
        self.journal.write("apply-started", changes=len(self.plan.changes))
        await self._check_sinks()
        by_level: dict[int, list[Change]] = defaultdict(list)
        for change in self.plan.changes:
            by_level[level(change.kind, change.action)].append(change)
        for step in sorted(by_level):
            changes = by_level[step]
            deletes = [c for c in changes if c.action is Action.DELETE]
            others = [c for c in changes if c.action is not Action.DELETE]
            deliveries = DeliveryRound(self.courier, len(others))
            await asyncio.gather(
                *(self._one(change, deliveries.seat()) for change in others),
                self._delete(deletes),
                deliveries.run(),
            )
            self.journal.sync()  # the level's "finished" lines (Journal.note)
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
        for name in self.plan.secret_sinks:
            sink = self.sinks.get(name)
            try:
                if sink is None:
                    raise SinkError(f"sink {name!r} is not configured")
                await asyncio.to_thread(sink.check)
            except SinkError as exc:
                self.bad_sinks[name] = str(exc)

    # ---- one change ----------------------------------------------------------------------------

    async def _one(self, change: Change, seat: Seat) -> None:
        try:
            blocker = self._blocker(change)
            if blocker:
                self._skip(change, blocker)
                return
            await self.journal.record("started", **_where(change))
            try:
                await self._execute(change, seat)
            except (_Failed, ReconcilerError) as exc:
                self._fail(change, str(exc))
                return
            self.result.done.append(change)
            self.journal.note("finished", **_where(change))  # synced at the level's end
            self.progress.done(change, None)
        finally:
            seat.leave()  # no secret from it (or no more): the level's deliveries need not wait for it

    def _blocker(self, change: Change) -> str | None:
        for earlier in self.not_applied:
            if depends_on(change.path, change.kind, on_path=earlier.path, on_kind=earlier.kind):
                if earlier.path == change.path:
                    return f"its {earlier.action.value} failed"
                return f'its {earlier.kind} "{earlier.path_text}" was not applied'
        if change.secret and change.issues_secret and change.secret.sink in self.bad_sinks:
            return f"sink {change.secret.sink!r} is not usable: {self.bad_sinks[change.secret.sink]}"
        return None

    async def _execute(self, change: Change, seat: Seat) -> None:
        if change.action is Action.CREATE:
            await self._create(change, seat)
        elif change.action is Action.ROTATE_SECRET:
            await self._rotate(change, seat)
        else:  # update or adopt: both lay the desired fields over the live object
            await operations_for(change.kind, change.surface).update(
                self.api, change.server_id, self._live(change), change.desired
            )
            if change.action is Action.ADOPT and change.issues_secret and change.secret is not None:
                await self._adopt_secret(change, seat)

    async def _create(self, change: Change, seat: Seat) -> None:
        descriptor = KINDS[change.kind]
        parent_id = change.server_id or self.created_ids.get(change.path[:-1])
        if descriptor.parent is not None and not parent_id:
            raise _Failed(f"its {descriptor.parent}'s id is unknown")
        known = [o.id for o in descriptor.live_under(self.live, parent_id) if o.name == change.name]
        if change.issues_secret:
            await self.journal.record("create-started", **_secret_where(change), serverId=parent_id)
        created = await operations_for(change.kind, change.surface).create(
            self.api, parent_id, change.desired, exclude_ids=known
        )
        self.created_ids[change.path] = created.id
        if created.secret is not None:
            await self._hand_off(change, created.client_id, created.secret, seat)
        else:
            where = {change.kind.value: change.name, f"{change.kind}Id": created.id}
            await self.journal.record(f"{change.kind}-created", **where)

    async def _adopt_secret(self, change: Change, seat: Seat) -> None:
        live = self._live(change)
        parent_id = change.server_id or ""
        await self.journal.record("adopt-started", **_secret_where(change), id=live.id, serverId=parent_id)
        secret = await self._secrets(change).read_secret(self.api, parent_id=parent_id, object_id=live.id)
        await self._hand_off(change, _client_id(live), secret, seat)

    async def _rotate(self, change: Change, seat: Seat) -> None:
        live = self._live(change)
        parent_id = change.server_id or ""
        if change.secret is None or change.secret.rotation is None:
            raise _Failed("the plan has no rotation marker for it")
        secrets = self._secrets(change)
        before = await secrets.read_secret(self.api, parent_id=parent_id, object_id=live.id)
        salt = new_salt()
        await self.journal.record(
            "rotate-started",
            **_secret_where(change),
            id=live.id,
            serverId=parent_id,
            rotation=change.secret.rotation,
            before=digest(before, salt),
            salt=salt,
        )
        secret = await secrets.rotate_secret(self.api, parent_id=parent_id, object_id=live.id, before=before)
        await self._hand_off(change, _client_id(live), secret, seat)
        # Recorded even when delivery failed: the rotation happened; the journal redelivers.
        await secrets.record_rotation(
            self.api, parent_id=parent_id, object_id=live.id, marker=change.secret.rotation
        )
        where = {"server": change.server, "client": change.name}
        await self.journal.record("rotation-recorded", **where, rotation=change.secret.rotation)

    def _secrets(self, change: Change) -> SecretOperations:
        secrets = SECRET_OPERATIONS.get(change.kind)
        if secrets is None:
            raise _Failed(f"a {change.kind} holds no secret")
        return secrets

    async def _hand_off(self, change: Change, client_id: str, secret: Secret, seat: Seat) -> None:
        """Hand the secret to the level's round: delivered with the level's others (see DeliveryRound)."""
        if change.secret is None:
            raise _Failed("the plan has no sink for its secret")
        record = SecretRecord(change.server or "", change.name, client_id, change.secret.key)
        outcome = await seat.hand_off(record, change.secret.sink, secret)
        if outcome.delivered:
            self.result.delivered += 1
        else:
            self.result.undelivered.append((change.address, outcome.reason))

    # ---- deletes -------------------------------------------------------------------------------

    async def _delete(self, changes: list[Change]) -> None:
        """One bulk call per kind, surface and parent (the clients of one server, the servers of a
        surface)."""
        groups: dict[tuple[str, str | None, str | None], list[Change]] = defaultdict(list)
        for change in changes:
            groups[(change.kind.value, change.surface, change.server_id)].append(change)
        await asyncio.gather(*(self._bulk(group) for group in groups.values()))

    async def _bulk(self, changes: list[Change]) -> None:
        first = changes[0]
        self.journal.write_many(("started", _where(change)) for change in changes)  # one fsync
        try:
            ids = [change.id or "" for change in changes]
            await operations_for(first.kind, first.surface).delete_many(self.api, first.server_id, ids)
        except ReconcilerError as exc:
            for change in changes:
                self._fail(change, str(exc))
            return
        for change in changes:
            self.result.done.append(change)
            self.journal.note("finished", **_where(change))  # synced at the level's end
            self.progress.done(change, None)
        removals = [(change, item) for change in changes for item in change.removes_secrets]
        if removals:
            await self._remove_secrets(removals)

    async def _remove_secrets(self, removals: list[tuple[Change, SecretRemoval]]) -> None:
        """Remove deleted clients' secrets from their sinks (Project ``pruneSecrets``), once their
        delete is done. A removal that fails leaves the delete done: it is journaled and reported as
        a notice naming the sink and key to clean by hand (exit code unchanged: the project is as
        planned, and the secret of a deleted client is no longer valid)."""
        outcomes = await asyncio.gather(*(self._remove_one(change, item) for change, item in removals))
        events: list[tuple[str, Mapping[str, object]]] = []
        for (change, item), (removal, error) in zip(removals, outcomes, strict=True):
            where = {"server": change.path[0], "client": item.client, "sink": item.sink, "key": item.key}
            if error is None:
                events.append(("secret-removed", {**where, "found": removal is Removal.REMOVED}))
                continue
            events.append(("secret-not-removed", {**where, "error": error}))
            self.result.notices.append(
                f'client "{change.path[0]}/{item.client}" was deleted, but its secret was not removed '
                f"from sink {item.sink!r} (key {item.key!r}): {error}; remove it by hand"
            )
        self.journal.write_many(events)

    async def _remove_one(self, change: Change, item: SecretRemoval) -> tuple[Removal | None, str | None]:
        """Remove one secret: what the sink held (REMOVED or ABSENT), or why it could not."""
        sink = self.sinks.get(item.sink)
        record = SecretRecord(change.path[0], item.client, item.client_id, item.key)
        try:
            if sink is None:
                raise SinkError(f"sink {item.sink!r} is not configured")
            if not isinstance(sink, RemovingSink):
                await asyncio.to_thread(sink.check)  # a sink whose library is missing says so here
                raise SinkError(f"sink {item.sink!r} cannot remove secrets")
            return await asyncio.to_thread(sink.remove, record), None
        except SinkError as exc:
            return None, str(exc)

    # ---- bookkeeping ---------------------------------------------------------------------------

    def _fail(self, change: Change, reason: str) -> None:
        self.result.failed.append((change, reason))
        self.not_applied.append(change)
        self.journal.write("failed", **_where(change), error=reason)
        self.progress.done(change, reason)

    def _skip(self, change: Change, reason: str) -> None:
        self.result.skipped.append((change, reason))
        self.not_applied.append(change)
        self.journal.write("skipped", **_where(change), reason=reason)
        self.progress.done(change, f"skipped: {reason}")

    def _live(self, change: Change) -> LiveObject:
        around = KINDS[change.kind].live_under(self.live, change.server_id)
        found = next((obj for obj in around if obj.id == change.id), None)
        if found is None:
            raise _Failed(f"the live {change.kind} is gone")
        return found


def _client_id(live: LiveObject) -> str:
    """The OAuth client id a secret belongs to, as the live object states it."""
    return str(live.fields.get("clientId") or "")


def _where(change: Change) -> dict[str, str | None]:
    """Where a change is, for the journal: its root object's name, and its own below it."""
    return {
        "action": change.action.value,
        "kind": change.kind.value,
        "server": change.path[0],
        "client": change.path[-1] if len(change.path) > 1 else None,
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
