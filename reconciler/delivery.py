"""Secret hand-off as one unit: announce (mask) → deliver → verify → record, with retries.

Used by the applier for every issued or rotated secret, by ``secrets check --fix``, and to finish
deliveries a previous run left open (read from the journal). A secret that cannot be delivered is
recorded as undelivered and later delivered again by reading the *current* secret
(``client/secret``), never by rotating.
"""

from __future__ import annotations

import asyncio
import logging
import secrets as random_source
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from reconciler.descope.client import DescopeClient
from reconciler.errors import NotFound
from reconciler.journal import Journal, OpenDelivery, digest
from reconciler.kinds import Kind
from reconciler.operations import SECRET_OPERATIONS
from reconciler.secret import Secret
from reconciler.sinks.base import SecretRecord, SecretSink, SinkError, Verification

log = logging.getLogger("reconciler.delivery")

DELIVERY_ATTEMPTS = 3
RETRY_DELAY = 0.5

Masker = Callable[[Secret], None]


@dataclass(frozen=True)
class Outcome:
    delivered: bool
    reason: str = ""


class Courier:
    """Delivers secrets to sinks and keeps the journal true about it."""

    def __init__(
        self,
        sinks: Mapping[str, SecretSink],
        journal: Journal,
        *,
        mask: Masker | None = None,
        retry_delay: float = RETRY_DELAY,
    ) -> None:
        self.sinks = sinks
        self.journal = journal
        self.mask = mask
        self.retry_delay = retry_delay

    async def hand_off(self, record: SecretRecord, sink_name: str, secret: Secret) -> Outcome:
        """Announce, deliver with retries, verify; journal ``delivered`` or ``undelivered``."""
        if self.mask is not None:
            self.mask(secret)  # before anything else happens with it
        where = {"server": record.server, "client": record.client, "sink": sink_name, "key": record.key}
        sink = self.sinks.get(sink_name)
        if sink is None:
            return self._undelivered(where, f"sink {sink_name!r} is not configured")
        reason = ""
        for attempt in range(1, DELIVERY_ATTEMPTS + 1):
            try:
                await asyncio.to_thread(sink.deliver, record, secret)
                verified = await asyncio.to_thread(sink.verify, record, secret)
            except SinkError as exc:
                reason = str(exc)
            else:
                if verified in (Verification.MATCH, Verification.UNREADABLE):
                    self.journal.write("delivered", **where, verified=verified.value)
                    return Outcome(True)
                reason = f"the sink does not hold the secret after delivery ({verified.value})"
            log.info("delivery to %s failed (attempt %d): %s", sink_name, attempt, reason)
            if attempt < DELIVERY_ATTEMPTS:
                await asyncio.sleep(self.retry_delay * attempt)
        return self._undelivered(where, reason)

    def _undelivered(self, where: dict[str, str], reason: str) -> Outcome:
        self.journal.write("undelivered", **where, error=reason)
        return Outcome(False, reason)


async def resume(api: DescopeClient, courier: Courier, item: OpenDelivery) -> Outcome | None:
    """Finish a delivery a previous run left open. None when there was nothing to deliver."""
    server_id = item.server_id or await _server_id(api, item.server)
    client = await _find_client(api, server_id, item) if server_id else None
    if client is None:
        courier.journal.write("create-absent", server=item.server, client=item.client)
        return None
    client_ref, client_id, tags = client
    current = await api.get_client_secret(server_id or "", client_ref)
    if (
        item.event == "rotate-started"
        and item.before
        and item.salt
        and digest(current, item.salt) == item.before
    ):
        # The crash came before the rotation took effect: the plan will ask for it again.
        courier.journal.write("rotate-absent", server=item.server, client=item.client)
        return None
    record = SecretRecord(item.server, item.client, client_id, item.key)
    outcome = await courier.hand_off(record, item.sink, current)
    if item.rotation is not None:
        await SECRET_OPERATIONS[Kind.CLIENT].record_rotation(
            api, parent_id=server_id or "", object_id=client_ref, marker=item.rotation, tags=tags
        )
        courier.journal.write(
            "rotation-recorded", server=item.server, client=item.client, rotation=item.rotation
        )
    return outcome


def new_salt() -> str:
    return random_source.token_hex(8)


async def _server_id(api: DescopeClient, name: str) -> str | None:
    matches = [s.id for s in await api.load_all_servers() if s.name == name]
    return matches[0] if len(matches) == 1 else None


async def _find_client(
    api: DescopeClient, server_id: str, item: OpenDelivery
) -> tuple[str, str, list[str]] | None:
    if item.client_ref:
        try:
            found = await api.load_client(server_id, id=item.client_ref)
        except NotFound:
            return None
        return found.id, found.client_id, list(found.tags)
    matches = await api.search_clients(server_id, name=item.client)
    if len(matches) != 1:
        return None
    return matches[0].id, matches[0].client_id, list(matches[0].tags)
