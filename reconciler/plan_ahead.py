"""A plan made, and the live objects judged, as the live project arrives from the process reading it.

The fetch's searches answer over seconds, and a large project's plan and security review take most of
a second once they have everything. Told of each part as it arrives (``reconciler.prefetch.Arrivals``),
this plans each server as soon as its clients are in (``reconciler.planner.PlanWhileReading``) and
judges each live object as it comes (``reconciler.findings.JudgedAhead``), so little is left to do when
the last search answers. The plan is the one :func:`reconciler.planner.build_plan` makes of the whole
live state, and the findings those the review would have found.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from reconciler.descope.wire import LiveServer, LiveState
from reconciler.findings import Judge, JudgedAhead, Subject
from reconciler.kinds import Desired
from reconciler.models import Manifest
from reconciler.planner import PlanOptions, PlanWhileReading
from reconciler.policy import policy_of
from reconciler.rule_plugins import all_rules

log = logging.getLogger(__name__)


class PlanAhead:
    """Plans and judges the live project as it arrives (a ``reconciler.prefetch.Arrivals``)."""

    def __init__(self, manifest: Manifest, options: PlanOptions, desired: Sequence[Desired]) -> None:
        self._manifest = manifest
        self._options = options
        self._desired = desired
        self._planning: PlanWhileReading | None = None
        self._live: LiveState | None = None
        self._servers: dict[str, LiveServer] = {}
        # What the review judges: the objects the manifests name, and those the plan may delete (ours).
        # Judging no more keeps a plugin rule from seeing objects it never saw without this.
        self._owner = manifest.project.ownershipTag
        self._named = {spec.name: {client.name for client in spec.clients} for spec in manifest.servers}
        # Judging ahead is only a head start: a rule that fails here fails again, where it always did.
        self.judged: JudgedAhead | None = JudgedAhead(
            Judge(all_rules(), policy_of(manifest.project.policy).policy)
        )

    def servers(self, live: LiveState, reading: Sequence[str]) -> None:
        self._live = live
        self._servers = {s.id: s for s in live.servers if s.name in self._named or self._owner in s.tags}
        try:
            self._planning = PlanWhileReading(self._manifest, live, self._options, self._desired, reading)
        except Exception as exc:
            self._stop_planning(exc)
        self._judge(
            [Subject("server", s.name, s.fields, server_fields=s.fields) for s in self._servers.values()]
        )

    def clients(self, server_id: str) -> None:
        if self._live is None:
            return
        if self._planning is not None:
            try:
                self._planning.read(server_id)
            except Exception as exc:
                self._stop_planning(exc)
        server = self._servers.get(server_id)
        if server is not None:
            every = self._owner in server.tags  # a server the plan deletes takes its clients with it
            named = self._named.get(server.name, set())
            self._judge(
                [
                    Subject("client", server.name, c.fields, c.name, server.fields)
                    for c in self._live.clients_of(server_id)
                    if every or c.name in named or self._owner in c.tags
                ]
            )

    def judged_for(self, live: LiveState) -> JudgedAhead | None:
        """The live objects judged as ``live`` arrived, when it is that very state."""
        return self.judged if self._live is live else None

    def planning(self, live: LiveState) -> PlanWhileReading | None:
        """The plan made as ``live`` arrived, when it is that very state and all of it arrived."""
        if self._planning is None or self._live is not live or self._planning.waiting:
            return None
        return self._planning

    def _stop_planning(self, exc: Exception) -> None:
        # Planning ahead is only a head start: what fails here (a bug, say) is done again once the whole
        # live project is read, where it fails as it always did (after any error of the API's).
        log.debug("planning ahead stopped: %s", type(exc).__name__)
        self._planning = None

    def _judge(self, subjects: list[Subject]) -> None:
        if self.judged is None:
            return
        try:
            for subject in subjects:
                self.judged.add(subject)
        except Exception as exc:
            log.debug("judging ahead stopped: %s", type(exc).__name__)
            self.judged = None
