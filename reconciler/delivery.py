"""Secret hand-off as one unit: announce (mask) → deliver → verify → record, with retries.

Used by the applier for every issued or rotated secret, by ``secrets check --fix``, and to finish
deliveries a previous run left open (read from the journal, ``resume_all``). A secret that cannot
be delivered is recorded as undelivered and later delivered again by reading the *current* secret
(``client/secret``), never by rotating. All three hand off their secrets together, one batch per
sink.

The applier hands off the secrets of one step together (:class:`DeliveryRound`): each sink gets
them in one batch (``sinks.base.deliver_many``: one rewrite of a file sink, not one per secret),
and their ``delivered`` records are written with one journal fsync, after the batch's write has
returned (durable) and been verified; never before. The crash analysis is in ``reconciler.journal``.
"""

from __future__ import annotations

import asyncio
import logging
import secrets as random_source
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reconciler.descope.client import DescopeClient
from reconciler.errors import NotFound
from reconciler.journal import Journal, OpenDelivery, digest
from reconciler.kinds import Kind
from reconciler.operations import SECRET_OPERATIONS
from reconciler.secret import Secret
from reconciler.sinks.base import (
    BatchingSink,
    Delivery,
    SecretRecord,
    SecretSink,
    SinkError,
    Verification,
    deliver_many,
    verify_many,
)

log = logging.getLogger("reconciler.delivery")

DELIVERY_ATTEMPTS = 3
RETRY_DELAY = 0.5

Masker = Callable[[Secret], None]


@dataclass(frozen=True)
class Outcome:
    delivered: bool
    reason: str = ""


@dataclass(frozen=True)
class Handoff:
    """One secret to deliver: whose it is and where it goes (``record``), and to which sink."""

    record: SecretRecord
    sink: str
    secret: Secret

    def where(self) -> dict[str, str]:
        """What the journal says of it (never the secret)."""
        record = self.record
        return {"server": record.server, "client": record.client, "sink": self.sink, "key": record.key}


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

    def announce(self, secret: Secret) -> None:
        """Tell the mask about a secret: before anything else happens with it."""
        if self.mask is not None:
            self.mask(secret)

    async def hand_off(self, record: SecretRecord, sink_name: str, secret: Secret) -> Outcome:
        """Announce, deliver with retries, verify; journal ``delivered`` or ``undelivered``."""
        (outcome,) = await self.hand_off_many([Handoff(record, sink_name, secret)])
        return outcome

    async def hand_off_many(self, handoffs: Sequence[Handoff]) -> list[Outcome]:
        """``hand_off`` of several secrets: all announced first, then delivered (``deliver_all``)."""
        for handoff in handoffs:
            self.announce(handoff.secret)
        return await self.deliver_all(handoffs)

    async def deliver_all(self, handoffs: Sequence[Handoff]) -> list[Outcome]:
        """Deliver secrets already announced: to each sink its secrets in one batch, the sinks at
        once; the outcome of each, in order."""
        by_sink: dict[str, list[int]] = defaultdict(list)
        for index, handoff in enumerate(handoffs):
            by_sink[handoff.sink].append(index)
        outcomes: dict[int, Outcome] = {}

        async def to_sink(name: str, indices: list[int]) -> None:
            group = [handoffs[i] for i in indices]
            sink = self.sinks.get(name)
            if sink is None:
                results = self._undelivered(group, [f"sink {name!r} is not configured"] * len(group))
            else:
                results = await self._to_sink(sink, group)
            outcomes.update(zip(indices, results, strict=True))

        await asyncio.gather(*(to_sink(name, indices) for name, indices in by_sink.items()))
        return [outcomes[index] for index in range(len(handoffs))]

    async def _to_sink(self, sink: SecretSink, handoffs: list[Handoff]) -> list[Outcome]:
        """Deliver ``handoffs`` to ``sink``, retrying those that fail. After each attempt, the secrets
        it stored and verified are journaled ``delivered``, with one fsync; after the last attempt,
        those still not stored are journaled ``undelivered``."""
        outcomes: dict[int, Outcome] = {}
        reasons: dict[int, str] = {}
        pending = list(range(len(handoffs)))
        for attempt in range(1, DELIVERY_ATTEMPTS + 1):
            deliveries = [(handoffs[i].record, handoffs[i].secret) for i in pending]
            results = await _attempt(sink, deliveries)
            delivered: list[tuple[str, Mapping[str, Any]]] = []
            for index, result in zip(pending, results, strict=True):
                if isinstance(result, SinkError):
                    reasons[index] = str(result)
                elif result in (Verification.MATCH, Verification.UNREADABLE):
                    delivered.append(("delivered", {**handoffs[index].where(), "verified": result.value}))
                    outcomes[index] = Outcome(True)
                else:
                    reasons[index] = f"the sink does not hold the secret after delivery ({result.value})"
            if delivered:
                self.journal.write_many(delivered)  # the sink's write has returned: it is durable
            pending = [i for i in pending if i not in outcomes]
            if not pending:
                break
            for reason, count in Counter(reasons[i] for i in pending).items():
                log.info(
                    "delivery of %d secret(s) to %s failed (attempt %d): %s",
                    count,
                    sink.name,
                    attempt,
                    reason,
                )
            if attempt < DELIVERY_ATTEMPTS:
                await asyncio.sleep(self.retry_delay * attempt)
        if pending:
            failed = self._undelivered([handoffs[i] for i in pending], [reasons[i] for i in pending])
            outcomes.update(zip(pending, failed, strict=True))
        return [outcomes[index] for index in range(len(handoffs))]

    def _undelivered(self, handoffs: Sequence[Handoff], reasons: Sequence[str]) -> list[Outcome]:
        """Journal each of ``handoffs`` as undelivered, for ``reasons`` (one fsync)."""
        self.journal.write_many(
            ("undelivered", {**handoff.where(), "error": reason})
            for handoff, reason in zip(handoffs, reasons, strict=True)
        )
        return [Outcome(False, reason) for reason in reasons]


async def _attempt(sink: SecretSink, deliveries: Sequence[Delivery]) -> list[Verification | SinkError]:
    """Deliver and verify: a batching sink all in one batch (one worker thread); any other one secret
    at a time, concurrently in worker threads, as a network sink (Vault, AWS, GitHub) was always used."""
    if isinstance(sink, BatchingSink):
        return await asyncio.to_thread(_deliver_and_verify, sink, deliveries)
    each = await asyncio.gather(
        *(asyncio.to_thread(_deliver_and_verify, sink, [delivery]) for delivery in deliveries)
    )
    return [result for (result,) in each]


def _deliver_and_verify(sink: SecretSink, deliveries: Sequence[Delivery]) -> list[Verification | SinkError]:
    """One attempt (in a worker thread): deliver all in one batch, then verify those stored."""
    errors = deliver_many(sink, deliveries)
    stored = [delivery for delivery, error in zip(deliveries, errors, strict=True) if error is None]
    verified = iter(verify_many(sink, stored))
    return [error if error is not None else next(verified) for error in errors]


class DeliveryRound:
    """The secrets the changes of one apply step issue, handed off together.

    Each change of the step takes a :class:`Seat`. A seat either hands off one secret (and waits for
    its outcome) or is left without one (the change issued none, failed or was skipped). Once every
    seat has done one or the other, :meth:`run` delivers what was handed off with one
    :meth:`Courier.deliver_all`: one batch per sink, one journal fsync for the ``delivered`` records.

    So a step's secrets wait, in memory, for the step's slowest change. Each was journaled open
    (``create-started``, ``rotate-started``, ``adopt-started``, durable) before it was issued, so a
    crash meanwhile leaves it to the next run, which reads the current secret and delivers it.
    """

    def __init__(self, courier: Courier, seats: int) -> None:
        self.courier = courier
        self._undecided = seats
        self._queued: list[tuple[Handoff, asyncio.Future[Outcome]]] = []
        self._decided = asyncio.Event()
        if seats == 0:
            self._decided.set()

    def seat(self) -> Seat:
        return Seat(self)

    async def run(self) -> None:
        """Wait until every seat has handed off or been left, then deliver what was handed off."""
        await self._decided.wait()
        queued, self._queued = self._queued, []
        if not queued:
            return
        try:
            outcomes = await self.courier.deliver_all([handoff for handoff, _ in queued])
        except BaseException as exc:  # wake the waiting changes: with the error, or cancelled
            for _, waiting in queued:
                if waiting.done():
                    continue
                if isinstance(exc, Exception):
                    waiting.set_exception(exc)
                else:
                    waiting.cancel()
            raise
        for (_, waiting), outcome in zip(queued, outcomes, strict=True):
            if not waiting.done():
                waiting.set_result(outcome)

    def _join(self, handoff: Handoff) -> asyncio.Future[Outcome]:
        waiting: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._queued.append((handoff, waiting))
        self._seat_decided()
        return waiting

    def _seat_decided(self) -> None:
        self._undecided -= 1
        if self._undecided == 0:
            self._decided.set()


class Seat:
    """One change's place in a :class:`DeliveryRound`: one hand-off, or none (``leave``)."""

    def __init__(self, round: DeliveryRound) -> None:
        self._round = round
        self._decided = False

    async def hand_off(self, record: SecretRecord, sink_name: str, secret: Secret) -> Outcome:
        """Announce the secret now; its outcome once the round has delivered it with the others."""
        if self._decided:
            raise RuntimeError("a seat hands off at most one secret")
        self._decided = True
        self._round.courier.announce(secret)  # before it waits for the others
        return await self._round._join(Handoff(record, sink_name, secret))

    def leave(self) -> None:
        """No (more) secret from this change; idempotent."""
        if not self._decided:
            self._decided = True
            self._round._seat_decided()


@dataclass(frozen=True)
class Resumed:
    """An open delivery found again: the secret to hand off, and the rotation to record after."""

    item: OpenDelivery
    handoff: Handoff
    server_id: str
    client_ref: str
    tags: list[str]


async def resume_all(
    api: DescopeClient, courier: Courier, items: Sequence[OpenDelivery]
) -> list[Outcome | None]:
    """Finish the deliveries a previous run left open, one outcome per item (None when there was
    nothing to deliver). Each current secret is read, then all are delivered in one batch per sink
    (``Courier.hand_off_many``), like the secrets of an apply step; a rotation's marker is recorded
    after its delivery, as when the rotating run finishes."""
    found = await asyncio.gather(*(_find_again(api, courier, item) for item in items))
    resumed = [entry for entry in found if entry is not None]
    outcomes = iter(await courier.hand_off_many([entry.handoff for entry in resumed]))
    for entry in resumed:
        if entry.item.rotation is not None:
            await _record_rotation(api, courier, entry)
    return [next(outcomes) if entry is not None else None for entry in found]


async def _find_again(api: DescopeClient, courier: Courier, item: OpenDelivery) -> Resumed | None:
    """The client of an open delivery and its current secret; None (journaled) when there is
    nothing to deliver: the client was never created, or the rotation never took effect."""
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
    return Resumed(item, Handoff(record, item.sink, current), server_id or "", client_ref, tags)


async def _record_rotation(api: DescopeClient, courier: Courier, entry: Resumed) -> None:
    item = entry.item
    assert item.rotation is not None
    await SECRET_OPERATIONS[Kind.CLIENT].record_rotation(
        api, parent_id=entry.server_id, object_id=entry.client_ref, marker=item.rotation, tags=entry.tags
    )
    courier.journal.write("rotation-recorded", server=item.server, client=item.client, rotation=item.rotation)


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
