"""Planning and judging the live project while it arrives (reconciler.planner.PlanWhileReading,
reconciler.findings.JudgedAhead, reconciler.plan_ahead.PlanAhead).

The promise: whatever order the servers' clients arrive in, the plan made while they arrive is exactly
the plan that build_plan makes of the whole live state (the same changes, withheld objects and
problems, each in its place), it raises exactly what build_plan raises, and the findings judged ahead
are exactly those the review would have found.
"""

from __future__ import annotations

import dataclasses
import gc
import random
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

import pytest

from reconciler import kinds
from reconciler.descope.wire import LiveClient, LiveServer, LiveState, live_state
from reconciler.errors import DeleteBudgetError, PlanError
from reconciler.findings import Finding, Judge, JudgedAhead, Subject, evaluate
from reconciler.kinds import Desired, desired_objects
from reconciler.models import Manifest
from reconciler.plan import Action, Kind, Plan
from reconciler.plan_ahead import PlanAhead
from reconciler.planner import PlanOptions, PlanWhileReading, Target, build_plan
from reconciler.policy import policy_of
from reconciler.rule_plugins import all_rules
from reconciler.subjects import plan_subjects
from reconciler.tags import PROTECT_TAG, ROTATION_PREFIX
from reconciler.workflow import review_plan
from tests.conftest import Writer
from tests.test_planner import CALENDAR, PROJECT, actions, client, manifest, server

OTHER = "managed-by:other-team"
MANY = 10**6  # an --allow-deletes that lets any plan through the delete budget

CRM = """kind: MCPServer
name: crm
description: CRM tools
approvedScopes:
  - {name: read, description: Read}
  - {name: write, description: Write}
clients:
  - name: sync
    scopes: [read, write]
  - name: report
    scopes: [read]
"""
DOCS = """kind: MCPServer
name: docs
description: Docs
clients:
  - name: reader
"""
TRIO = f"{CALENDAR}---\n{CRM}---\n{DOCS}"
PRUNE_SECRETS = PROJECT.replace("prune: true\n", "prune: true\npruneSecrets: true\n")


# ---- scenarios: a manifest, a live project, options, and which servers' clients are read ----------


@dataclass(frozen=True)
class Scenario:
    manifest: Manifest
    servers: tuple[LiveServer, ...]
    clients: tuple[LiveClient, ...] = ()
    options: PlanOptions = field(default_factory=PlanOptions)
    reading: tuple[str, ...] | None = None  # the servers whose clients are read; None: all (complete)

    @property
    def complete(self) -> bool:
        return self.reading is None

    def read(self) -> tuple[str, ...]:
        """The ids of the servers whose clients are read, in the order the fetch asks for them."""
        return tuple(s.id for s in self.servers) if self.reading is None else self.reading

    def full(self) -> LiveState:
        """The whole live state, as a fetch ends with it."""
        by_server = {sid: tuple(c for c in self.clients if c.server_id == sid) for sid in self.read()}
        return live_state(self.servers, by_server, complete=self.complete)

    @property
    def desired(self) -> tuple[Desired, ...]:
        return desired_objects(self.manifest)


def calendar(sid: str = "MS1", **fields: Any) -> LiveServer:
    """The live server that CALENDAR describes exactly (``fields`` over it)."""
    base: dict[str, Any] = {
        "description": "Calendar tools",
        "tags": ["team:a"],
        "approvedScopes": [{"name": "read", "description": "Read"}],
    }
    return server("calendar", sid, **{**base, **fields})


def crm(sid: str = "MS2", **fields: Any) -> LiveServer:
    scopes = [{"name": "read", "description": "Read"}, {"name": "write", "description": "Write"}]
    return server("crm", sid, **{"description": "CRM tools", "approvedScopes": scopes, **fields})


def docs(sid: str = "MS3", **fields: Any) -> LiveServer:
    return server("docs", sid, **{"description": "Docs", **fields})


def in_sync_clients() -> list[LiveClient]:
    """The clients of TRIO, as live has them when nothing is to change."""
    return [
        client("agent", "C1", "MS1", scopes=["read"]),
        client("sync", "C2", "MS2", scopes=["read", "write"]),
        client("report", "C3", "MS2", scopes=["read"]),
        client("reader", "C4", "MS3"),
    ]


def resources(live: LiveServer) -> LiveServer:
    """``live`` as a Resource of type mcp (the other surface)."""
    return replace(live, surface="resources")


def with_surface(text: str, name: str, surface: str) -> str:
    """``text`` with server ``name`` stated to live on ``surface`` (with the one audience it needs)."""
    stated = f"name: {name}\nsurface: {surface}\naudienceWhitelist: [{audience(name)}]\n"
    return text.replace(f"name: {name}\n", stated, 1)


def audience(name: str) -> str:
    return f"https://{name}.example.com/mcp"


def in_sync(write: Writer) -> Scenario:
    foreign = server("manual", "MS9", owned=False)
    clients = [*in_sync_clients(), client("theirs", "C9", "MS9", owned=False)]
    return Scenario(manifest(write, TRIO), (calendar(), crm(), docs(), foreign), tuple(clients))


def nothing_live(write: Writer) -> Scenario:
    return Scenario(manifest(write, TRIO), ())


def creates(write: Writer) -> Scenario:
    """New clients under live servers, and a new server with its clients."""
    live = (docs("MS3"), calendar("MS1"))  # crm is not live
    return Scenario(manifest(write, TRIO), live, (client("reader", "C4", "MS3"),))


def updates(write: Writer) -> Scenario:
    """Fields changed on servers and clients, a protect set, a secret to rotate, an adoption."""
    text = TRIO.replace("name: crm\n", "name: crm\nprotect: true\n").replace(
        "  - name: reader\n", "  - name: reader\n    secret: {rotation: '2026-11'}\n"
    )
    text += "---\nkind: MCPServer\nname: legacy\nadopt: true\nclients:\n  - {name: x, adopt: true}\n"
    live = (calendar(description="Old"), crm(), docs(), server("legacy", "MS4", owned=False))
    clients = (
        client("agent", "C1", "MS1", scopes=[]),
        client("sync", "C2", "MS2", scopes=["read", "write"]),
        client("report", "C3", "MS2", scopes=["read", "write"]),
        client("reader", "C4", "MS3", tags=[ROTATION_PREFIX + "2025-01"]),
        client("x", "C5", "MS4", owned=False),
    )
    return Scenario(manifest(write, text), live, clients)


def stale_clients() -> list[LiveClient]:
    return [
        client("stale", "C11", "MS1"),
        client("old", "C12", "MS2"),
        client("guarded", "C13", "MS2", tags=[PROTECT_TAG]),
        client("dcr", "C14", "MS2", registrationType="dcr"),
        client("someones", "C15", "MS3", owned=False),
        client("gone", "C16", "MS3"),
    ]


def prune_clients(write: Writer) -> Scenario:
    clients = (*in_sync_clients(), *stale_clients())
    return Scenario(manifest(write, TRIO, PRUNE_SECRETS), (calendar(), crm(), docs()), clients)


def prune_off(write: Writer) -> Scenario:
    return replace(prune_clients(write), options=PlanOptions(prune=False))


def prune_servers(write: Writer) -> Scenario:
    """Servers no manifest wants: all their clients ours (deleted), some not (withheld)."""
    live = (
        server("old", "MS5"),
        calendar(),
        server("busy", "MS6"),
        crm(),
        server("dyn", "MS7"),
        docs(),
        server("empty", "MS8"),
        server("someones", "MS9", owned=False),
    )
    clients = (
        *in_sync_clients(),
        client("a", "C21", "MS5"),
        client("b", "C22", "MS5"),
        client("mine", "C23", "MS6"),
        client("theirs", "C24", "MS6", owned=False),
        client("user-app", "C25", "MS7", registrationType="dcr"),
        client("c", "C26", "MS9", owned=False),
    )
    return Scenario(manifest(write, TRIO, PRUNE_SECRETS), live, clients, PlanOptions(allow_deletes=MANY))


def protected(write: Writer) -> Scenario:
    text = TRIO.replace("name: docs\n", "name: docs\nprotect: true\n")
    live = (calendar(), server("kept", "MS5", tags=[PROTECT_TAG]), crm(), docs())
    clients = (
        *in_sync_clients(),
        client("guarded", "C11", "MS1", tags=[PROTECT_TAG]),
        client("k", "C12", "MS5"),
        client("also-guarded", "C13", "MS2", tags=[PROTECT_TAG]),
    )
    return Scenario(manifest(write, text), live, clients)


PROBLEMS_PROJECT = PROJECT + "ignore:\n  - {name: crm/legacy}\n"
PROBLEMS = (
    f"{CALENDAR}---\n"
    + CRM.replace("  - name: sync\n", "  - name: legacy\n  - name: sync\n")
    + f"---\n{DOCS}---\nkind: MCPServer\nname: ops\nclients:\n  - name: ci\n"
    + "---\nkind: MCPServer\nname: twin\n"
)


def problems(write: Writer) -> Scenario:
    """Problems found on several servers: some when the servers are read, most once their clients are."""
    live = (
        calendar(owned=False),  # a conflict, found at once
        crm(),
        docs(),
        server("ops", "MS4"),
        server("twin", "MS5"),
        server("twin", "MS6"),  # two of one name, found at once
    )
    clients = (
        client("agent", "C1", "MS1", scopes=["read"]),
        client("sync", "C2", "MS2", owned=False, scopes=["read", "write"]),  # a conflict
        client("legacy", "C3", "MS2", owned=False),  # ignored by a rule, and in a manifest
        client("report", "C4", "MS2", scopes=["read"]),
        client("reader", "C5", "MS3"),
        client("reader", "C6", "MS3"),  # two of one name
        client("ci", "C7", "MS4", tags=[OTHER], owned=False),  # another reconciler's
        client("stale", "C8", "MS2"),
    )
    return Scenario(manifest(write, PROBLEMS, PROBLEMS_PROJECT), live, clients)


def problems_lenient(write: Writer) -> Scenario:
    return replace(problems(write), options=PlanOptions(lenient=True))


def surface_move(write: Writer) -> Scenario:
    """calendar moves to Resources (its old copy deleted with its clients); crm has moved already but
    its old copy holds a client that is not ours (withheld); docs lives on Resources and stays."""
    text = with_surface(with_surface(TRIO, "calendar", "resources"), "crm", "resources")
    live = (
        calendar("MS1"),
        crm("MS2"),
        resources(crm("RS2", audienceWhitelist=[audience("crm")])),
        resources(docs("RS3")),
    )
    clients = (
        client("agent", "C1", "MS1", scopes=["read"]),
        client("old-agent", "C2", "MS1"),
        client("sync", "C3", "MS2", scopes=["read", "write"]),
        client("theirs", "C4", "MS2", owned=False),
        client("sync", "C5", "RS2", scopes=["read", "write"]),
        client("report", "C6", "RS2", scopes=["read"]),
        client("reader", "C7", "RS3", description="x"),
    )
    return Scenario(manifest(write, text, PRUNE_SECRETS), live, clients, PlanOptions(allow_deletes=MANY))


def surface_problems(write: Writer) -> Scenario:
    """Problems of surfaces, found when the servers are read: calendar is to move off a surface where
    its copy is someone else's; docs is on both surfaces and its manifest says not which. Between
    them a client conflict, found only once crm's clients are read."""
    text = with_surface(TRIO, "calendar", "resources")
    live = (
        calendar("MS1", owned=False),
        resources(calendar("RS1")),
        crm("MS2"),
        resources(docs("RS3")),
        docs("MS3"),
    )
    clients = (
        client("sync", "C1", "MS2", owned=False),
        client("report", "C2", "MS2", scopes=["read"]),
        client("agent", "C3", "RS1", scopes=["read"]),
    )
    return Scenario(manifest(write, text), live, clients)


def targeted(write: Writer) -> Scenario:
    """Only the targets' servers' clients are read; the rest are neither planned nor pruned."""
    live = (calendar(description="Old"), crm(), docs(description="Old"), server("old", "MS5"))
    clients = (
        client("agent", "C1", "MS1", scopes=[]),
        client("stale", "C11", "MS1"),
        client("report", "C3", "MS2", scopes=["read", "write"]),
        client("stale", "C12", "MS2"),
        client("gone", "C13", "MS3"),
        client("x", "C14", "MS5"),
    )
    targets = tuple(Target.parse(t) for t in ("server:crm", "client:calendar/agent", "server:old"))
    return Scenario(
        manifest(write, TRIO),
        live,
        clients,
        PlanOptions(targets=targets),
        reading=("MS1", "MS2", "MS5"),
    )


def targeted_problems(write: Writer) -> Scenario:
    """A targeted client whose server the plan creates (a problem found last), after a conflict."""
    live = (calendar(), docs())
    clients = (client("agent", "C1", "MS1", owned=False, scopes=["read"]), client("reader", "C4", "MS3"))
    targets = tuple(Target.parse(t) for t in ("client:crm/sync", "server:calendar"))
    return Scenario(manifest(write, TRIO), live, clients, PlanOptions(targets=targets), reading=("MS1",))


def budget(write: Writer) -> Scenario:
    """More deletes than maxDeletes (3): refused, with the whole plan."""
    live = (calendar(), crm(), docs(), server("old", "MS5"))
    clients = (
        *in_sync_clients(),
        client("stale", "C11", "MS1"),
        client("stale", "C12", "MS2"),
        client("stale", "C13", "MS3"),
        client("x", "C14", "MS5"),
    )
    return Scenario(manifest(write, TRIO, PRUNE_SECRETS), live, clients)


def budget_percent(write: Writer, percent: int = 30) -> Scenario:
    """A budget in percent of the managed objects live (12 here, clients included): 30% refuses the
    plan's 5 deletes."""
    project = PROJECT.replace("maxDeletes: 3", f"maxDeletes: {percent}%")
    return replace(budget(write), manifest=manifest(write, TRIO, project))


def budget_percent_allows(write: Writer) -> Scenario:
    """50% of the 12 managed objects allows the 5 deletes; of the servers alone it would not."""
    return budget_percent(write, 50)


SCENARIOS: dict[str, Callable[[Writer], Scenario]] = {
    "in-sync": in_sync,
    "nothing-live": nothing_live,
    "creates": creates,
    "updates": updates,
    "prune-clients": prune_clients,
    "prune-off": prune_off,
    "prune-servers": prune_servers,
    "protected": protected,
    "problems": problems,
    "problems-lenient": problems_lenient,
    "surface-move": surface_move,
    "surface-problems": surface_problems,
    "targeted": targeted,
    "targeted-problems": targeted_problems,
    "budget": budget,
    "budget-percent": budget_percent,
    "budget-percent-allows": budget_percent_allows,
}


# ---- planning while reading ------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What planning gives: a plan, or the error (its message and problems, and a refused plan)."""

    raised: type[Exception] | None
    plan: Plan | None
    message: str = ""
    reasons: tuple[str, ...] = ()


def outcome(make: Callable[[], Plan]) -> Outcome:
    try:
        return Outcome(None, make())
    except DeleteBudgetError as refused:
        return Outcome(DeleteBudgetError, refused.plan, str(refused), tuple(refused.reasons))
    except PlanError as error:
        return Outcome(PlanError, None, str(error), tuple(error.reasons))


def orders(ids: Sequence[str]) -> list[tuple[str, ...]]:
    """The orders the clients arrive in: as asked, reversed, and seeded shuffles."""
    found = [tuple(ids), tuple(reversed(ids))]
    for seed in range(5):
        shuffled = list(ids)
        random.Random(seed).shuffle(shuffled)  # noqa: S311 - seeded: the same orders on every run
        found.append(tuple(shuffled))
    return found


def planned_while_reading(scenario: Scenario, order: Sequence[str]) -> Outcome:
    """The plan made as the clients arrive in ``order``, built as the real caller builds it."""
    full = scenario.full()
    clients: dict[str, tuple[LiveClient, ...]] = {}
    live = live_state(scenario.servers, clients, complete=scenario.complete)
    reading = list(scenario.read())
    planning = PlanWhileReading(scenario.manifest, live, scenario.options, scenario.desired, reading)
    for server_id in order:
        assert planning.waiting
        clients[server_id] = full.clients_of(server_id)
        planning.read(server_id)
    assert not planning.waiting
    in_order = {server_id: clients[server_id] for server_id in reading}  # as the caller reorders them
    clients.clear()
    clients.update(in_order)
    assert live == full
    return outcome(planning.plan)


def planned_whole(scenario: Scenario) -> Outcome:
    return outcome(lambda: build_plan(scenario.manifest, scenario.full(), scenario.options))


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_the_plan_made_while_reading_is_build_plans_in_every_arrival_order(write: Writer, name: str) -> None:
    scenario = SCENARIOS[name](write)
    expected = planned_whole(scenario)
    for order in orders(scenario.read()):
        assert planned_while_reading(scenario, order) == expected, order


@pytest.mark.parametrize("name", ["prune-servers", "surface-move", "budget", "targeted"])
def test_alike_too_when_a_servers_delete_leaves_its_clients_to_the_plan(
    write: Writer, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """Without ``SERVER_DELETE_CASCADES`` a pruned server's clients are deleted one by one, first:
    planned in the step that waited for them, in their place."""
    server_kind = replace(kinds.SERVER, delete_cascades=False)
    monkeypatch.setattr(kinds, "KINDS", MappingProxyType({**kinds.KINDS, Kind.SERVER: server_kind}))
    scenario = SCENARIOS[name](write)
    expected = planned_whole(scenario)
    assert expected.plan is not None
    assert not any(change.cascade for change in expected.plan.changes)
    assert any(c.action is Action.DELETE and c.kind is Kind.CLIENT for c in expected.plan.changes)
    for order in orders(scenario.read()):
        assert planned_while_reading(scenario, order) == expected, order


def summary(result: Outcome) -> list[str]:
    """What a scenario plans, in brief: its changes and withheld objects, or what it raises and the
    object (or the first words) of each problem."""
    if result.raised is not None:
        lines = [result.raised.__name__, *(" ".join(r.split(" ")[:3]) for r in result.reasons)]
    else:
        lines = []
    if result.plan is not None:
        lines += [f"{action} {address}" for action, address in actions(result.plan)]
        lines += [f"withheld {w.address}" for w in result.plan.withheld]
    return lines


BUDGET_DELETES = [
    'delete client "calendar/stale"',
    'delete client "crm/stale"',
    'delete client "docs/stale"',
    'delete server "old"',
]

EXPECTED: dict[str, list[str]] = {
    "in-sync": [],
    "nothing-live": [
        'create server "calendar"',
        'create server "crm"',
        'create server "docs"',
        'create client "calendar/agent"',
        'create client "crm/report"',
        'create client "crm/sync"',
        'create client "docs/reader"',
    ],
    "creates": [
        'create server "crm"',
        'create client "calendar/agent"',
        'create client "crm/report"',
        'create client "crm/sync"',
    ],
    "updates": [
        'update server "calendar"',
        'update server "crm"',
        'adopt server "legacy"',
        'update client "calendar/agent"',
        'update client "crm/report"',
        'adopt client "legacy/x"',
        'rotate-secret client "docs/reader"',
    ],
    "prune-clients": [
        'delete client "calendar/stale"',
        'delete client "crm/old"',
        'delete client "docs/gone"',
        'withheld client "crm/dcr"',
        'withheld client "crm/guarded"',
    ],
    "prune-off": [
        'withheld client "calendar/stale"',
        'withheld client "crm/dcr"',
        'withheld client "crm/guarded"',
        'withheld client "crm/old"',
        'withheld client "docs/gone"',
    ],
    "prune-servers": [
        'delete server "empty"',
        'delete server "old"',
        'withheld server "busy"',
        'withheld server "dyn"',
    ],
    "protected": [
        'update server "docs"',
        'withheld client "calendar/guarded"',
        'withheld client "crm/also-guarded"',
        'withheld server "kept"',
    ],
    "problems": [
        "PlanError",
        'server "calendar" exists',
        'client "crm/legacy" exists',
        'client "crm/sync" exists',
        'client "docs/reader" matches',
        'client "ops/ci" exists',
        'server "twin" matches',
    ],
    "problems-lenient": ['delete client "crm/stale"'],
    "surface-move": [
        'create server "calendar"',
        'update server "crm"',
        'create client "calendar/agent"',
        'delete server "calendar"',
        'withheld server "crm"',
    ],
    "surface-problems": [
        "PlanError",
        'server "calendar" is',
        'client "crm/sync" exists',
        'server "docs" exists',
    ],
    "targeted": [
        'update client "calendar/agent"',
        'update client "crm/report"',
        'create client "crm/sync"',
        'delete client "crm/stale"',
        'withheld server "old"',
    ],
    "targeted-problems": ["PlanError", 'client "calendar/agent" exists', 'client "crm/sync" needs'],
    "budget": ["DeleteBudgetError", "the plan deletes", *BUDGET_DELETES],
    "budget-percent": ["DeleteBudgetError", "the plan deletes", *BUDGET_DELETES],
    "budget-percent-allows": BUDGET_DELETES,
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_each_scenario_plans_what_it_is_about(write: Writer, name: str) -> None:
    """The scenarios above are what their names say (so that the test of arrival orders means it)."""
    assert summary(planned_whole(SCENARIOS[name](write))) == EXPECTED[name]


def test_the_plan_waits_until_every_server_is_read_and_only_then_is_made(write: Writer) -> None:
    scenario = prune_servers(write)
    clients: dict[str, tuple[LiveClient, ...]] = {}
    live = live_state(scenario.servers, clients, complete=True)
    reading = list(scenario.read())
    planning = PlanWhileReading(scenario.manifest, live, scenario.options, scenario.desired, reading)
    full = scenario.full()
    for server_id in reading:
        assert planning.waiting
        with pytest.raises(ValueError, match="not made yet"):
            planning.plan()
        clients[server_id] = full.clients_of(server_id)
        planning.read(server_id)
    assert not planning.waiting
    assert planning.plan() == build_plan(scenario.manifest, full, scenario.options)


def test_with_nothing_to_read_the_plan_is_made_at_once(write: Writer) -> None:
    scenario = nothing_live(write)
    live = live_state((), {}, complete=True)
    planning = PlanWhileReading(scenario.manifest, live, scenario.options, scenario.desired, ())
    assert not planning.waiting
    assert planning.plan() == build_plan(scenario.manifest, scenario.full(), scenario.options)
    targeted_none = replace(targeted(write), reading=())  # a targeted plan whose targets are not live
    assert planned_while_reading(targeted_none, ()) == planned_whole(targeted_none)


# ---- random projects -------------------------------------------------------------------------------


def random_scenario(write: Writer, seed: int) -> Scenario:
    """A project of a dozen servers, each in the manifests or not, live once, twice or not at all, on
    either surface, ours or not, protected or not, with clients of every kind; random options. How
    much is wrong with it (someone else's objects, two of one name) is random too."""
    rng = random.Random(seed)  # noqa: S311 - seeded test data, not cryptography
    mess = rng.choice([0.0, 0.0, 0.03, 0.1])
    documents: list[str] = []
    servers: list[LiveServer] = []
    clients: list[LiveClient] = []
    for i in range(12):
        name = f"s{i:02d}"
        if rng.random() < 0.7:
            documents.append(_random_document(rng, name))
        copies = 2 if rng.random() < mess else rng.choice([0, 1, 1, 1])
        for copy in range(copies):
            sid = f"MS{i:02d}{copy}"
            live = server(
                name,
                sid,
                owned=rng.random() >= mess,
                tags=_random_tags(rng, mess),
                description=rng.choice(["wanted", "old"]),
                approvedScopes=[{"name": "read"}],
            )
            servers.append(resources(live) if rng.random() < 0.3 else live)
            for j in range(rng.randint(0, 4)):
                fields: dict[str, Any] = {"scopes": rng.choice([["read"], []])}
                if rng.random() < 0.1:
                    fields["registrationType"] = "dcr"
                clients.append(
                    client(
                        f"c{j}" if rng.random() >= mess else f"c{rng.randint(0, 4)}",
                        f"C{i:02d}{copy}{j}",
                        sid,
                        owned=rng.random() >= mess,
                        tags=_random_tags(rng, mess),
                        **fields,
                    )
                )
    rng.shuffle(servers)
    if not documents:
        documents.append("kind: MCPServer\nname: only\n")
    project = PRUNE_SECRETS.replace("maxDeletes: 3", f"maxDeletes: {rng.choice(['3', '50%', '100'])}")
    if rng.random() < 0.3:
        project += 'ignore:\n  - {tag: legacy}\n  - {name: "*/c3"}\n'

    options = PlanOptions(prune=rng.choice([None, True, False]), allow_deletes=rng.choice([None, 5, MANY]))
    reading: tuple[str, ...] | None = None
    if rng.random() < 0.3:
        roots = rng.sample(sorted({s.name for s in servers}), k=min(2, len(servers)))
        options = replace(options, targets=tuple(Target.parse(f"server:{r}") for r in roots))
        reading = tuple(s.id for s in servers if s.name in roots)
    texts = "---\n".join(documents)
    return Scenario(manifest(write, texts, project), tuple(servers), tuple(clients), options, reading)


def _random_document(rng: random.Random, name: str) -> str:
    text = f"kind: MCPServer\nname: {name}\ndescription: wanted\napprovedScopes: [{{name: read}}]\n"
    surface = rng.choice([None, None, "mcp-servers", "resources"])
    if surface is not None:
        text += f"surface: {surface}\naudienceWhitelist: [{audience(name)}]\n"
    text += "adopt: true\n" if rng.random() < 0.2 else ""
    text += "protect: true\n" if rng.random() < 0.1 else ""
    names = [f"c{j}" for j in range(rng.randint(0, 3))]
    if names:
        adopt = ", adopt: true" if rng.random() < 0.1 else ""
        text += "clients:\n" + "".join(f"  - {{name: {c}, scopes: [read]{adopt}}}\n" for c in names)
    return text


def _random_tags(rng: random.Random, mess: float) -> list[str]:
    protect = [PROTECT_TAG] if rng.random() < 0.1 else []
    legacy = ["legacy"] if rng.random() < 0.05 else []  # what an ignore rule may name
    return [*protect, *legacy, *([OTHER] if rng.random() < mess else [])]


@pytest.mark.parametrize("lenient", [False, True])
@pytest.mark.parametrize("seed", range(40))
def test_random_projects_plan_alike_in_every_arrival_order(write: Writer, seed: int, lenient: bool) -> None:
    scenario = random_scenario(write, seed)
    scenario = replace(scenario, options=replace(scenario.options, lenient=lenient))
    expected = planned_whole(scenario)
    for order in orders(scenario.read()):
        assert planned_while_reading(scenario, order) == expected, order


def test_random_projects_cover_plans_problems_and_refusals(write: Writer) -> None:
    """The random projects above reach every outcome, and plans that wait for clients."""
    results = [planned_whole(random_scenario(write, seed)) for seed in range(40)]
    assert {r.raised for r in results} == {None, PlanError, DeleteBudgetError}
    made = [r.plan for r in results if r.plan is not None]
    assert any(c.kind.value == "client" and c.server_id for p in made for c in p.changes)
    assert any(p.withheld for p in made)
    assert any(c.action is Action.DELETE and c.cascade for p in made for c in p.changes)


# ---- judging ahead ---------------------------------------------------------------------------------

FINDINGS_PROJECT = PROJECT + (
    "policy:\n  exceptions:\n    - {rule: MCP017, server: crm, reason: narrowed next quarter}\n"
)
FINDINGS = """kind: MCPServer
name: calendar
description: Calendar tools
approvedCallbackUrls: [https://calendar.example.com/cb]
clients:
  - name: agent
    approvedCallbackUrls: ["https://*.example.com/cb"]
  - name: fresh
    approvedCallbackUrls: [http://fresh.example.com/cb]
---
kind: MCPServer
name: crm
description: CRM tools
approvedScopes: [{name: read}, {name: write}]
clients:
  - {name: sync, scopes: [read, write]}
  - {name: report, scopes: [read]}
"""


def findings_scenario(write: Writer) -> Scenario:
    """Findings resolved (a plain http callback fixed, a pruned server's), kept (a wildcard callback,
    every scope, accepted by the policy), new (a new client's plain http callback)."""
    live = (
        server(
            "calendar",
            "MS1",
            description="Calendar tools",
            approvedCallbackUrls=["http://calendar.example.com/cb"],
        ),
        server("crm", "MS2", description="CRM tools", approvedScopes=[{"name": "read"}, {"name": "write"}]),
        server("old", "MS3", approvedCallbackUrls=["http://old.example.com/cb"], audienceWhitelist=[]),
        server("elsewhere", "MS4", owned=False, approvedCallbackUrls=["http://x.example.com/cb"]),
    )
    clients = (
        client("agent", "C1", "MS1", approvedCallbackUrls=["https://*.example.com/cb"]),
        client("sync", "C2", "MS2", scopes=["read", "write"]),
        client("report", "C3", "MS2", scopes=["read", "write"]),
        client("x", "C4", "MS3", approvedCallbackUrls=["http://old.example.com/x"]),
        client("y", "C5", "MS4", owned=False, approvedCallbackUrls=["myapp://cb"]),
    )
    return Scenario(manifest(write, FINDINGS, FINDINGS_PROJECT), live, clients)


class CountingJudge(Judge):
    """A judge that counts the subjects it judges."""

    calls = 0

    def __call__(self, subject: Subject) -> list[Finding]:
        self.calls += 1
        return super().__call__(subject)


def live_subjects(live: LiveState) -> list[Subject]:
    """The live objects as PlanAhead judges them when they arrive."""
    subjects = [Subject("server", s.name, s.fields, server_fields=s.fields) for s in live.servers]
    for s in live.servers:
        subjects += [Subject("client", s.name, c.fields, c.name, s.fields) for c in live.clients_of(s.id)]
    return subjects


def judged_before(write: Writer) -> tuple[Scenario, LiveState, list[Subject], CountingJudge]:
    """The findings scenario's live state, the subjects its plan judges as they stand, and a judge."""
    scenario = findings_scenario(write)
    live = scenario.full()
    plan = build_plan(scenario.manifest, live, scenario.options)
    before = plan_subjects(scenario.manifest, live, plan).before
    judge = CountingJudge(all_rules(), policy_of(scenario.manifest.project.policy).policy)
    return scenario, live, before, judge


def test_judged_ahead_finds_what_evaluate_finds_without_judging_again(write: Writer) -> None:
    _scenario, live, before, judge = judged_before(write)
    expected = evaluate(before, judge.rules, judge.policy)
    assert {f.rule for f in expected} >= {"MCP007", "MCP014", "MCP017", "MCP019", "MCP020"}
    assert any(f.excepted for f in expected)  # the policy's exception applies
    ahead = JudgedAhead(judge)
    for subject in live_subjects(live):
        ahead.add(subject)
    judge.calls = 0
    assert ahead.evaluate(before) == expected
    assert judge.calls == 0  # every subject was looked up


def test_judged_ahead_judges_the_subjects_not_added(write: Writer) -> None:
    _scenario, live, before, judge = judged_before(write)
    expected = evaluate(before, judge.rules, judge.policy)
    ahead = JudgedAhead(judge)
    added = live_subjects(live)[::2]  # every other one
    for subject in added:
        ahead.add(subject)
    known = {(s.kind, s.server, s.client, id(s.fields), id(s.server_fields)) for s in added}
    misses = [
        s for s in before if (s.kind, s.server, s.client, id(s.fields), id(s.server_fields)) not in known
    ]
    assert 0 < len(misses) < len(before)
    judge.calls = 0
    assert ahead.evaluate(before) == expected
    assert judge.calls == len(misses)


def test_judged_ahead_is_not_confused_by_equal_or_other_mappings(write: Writer) -> None:
    _scenario, live, before, judge = judged_before(write)
    expected = evaluate(before, judge.rules, judge.policy)
    # Added with copies of the live mappings (equal content, other objects): judged again, alike.
    copies = JudgedAhead(judge)
    for subject in live_subjects(live):
        fields = MappingProxyType(dict(subject.fields))
        server_fields = fields if subject.kind == "server" else MappingProxyType(dict(subject.server_fields))
        copies.add(replace(subject, fields=fields, server_fields=server_fields))
    judge.calls = 0
    assert copies.evaluate(before) == expected
    assert judge.calls == len(before)
    # Added under the same names with other content: never taken for the live objects.
    clean: dict[str, Any] = {"approvedCallbackUrls": ["https://ok.example.com/cb"]}
    others = JudgedAhead(judge)
    for subject in live_subjects(live):
        others.add(replace(subject, fields=MappingProxyType(clean), server_fields=MappingProxyType(clean)))
    assert others.evaluate(before) == expected


def test_a_client_judged_ahead_beside_one_server_is_judged_again_beside_another() -> None:
    rules = all_rules()
    fields = MappingProxyType({"scopes": ["read", "write"]})
    narrow = MappingProxyType({"approvedScopes": [{"name": "read"}]})
    wide = MappingProxyType({"approvedScopes": [{"name": "read"}, {"name": "write"}]})
    ahead = JudgedAhead(Judge(rules))
    ahead.add(Subject("client", "crm", fields, "sync", narrow))
    later = [Subject("client", "crm", fields, "sync", wide)]
    expected = evaluate(later, rules)
    assert [f.rule for f in expected] == ["MCP017"]  # every one of the wide server's scopes
    assert ahead.evaluate(later) == expected


class Fields(dict[str, Any]):
    """A subject's fields that can be watched for being freed (a plain dict cannot)."""


def test_the_mappings_a_subject_added_ahead_names_live_as_long_as_the_judged_do() -> None:
    """Subjects are keyed by the ids of their mappings: a mapping freed while it is keyed on could
    leave its id to a new one, whose findings would then be taken for the old one's."""
    ahead = JudgedAhead(Judge(all_rules()))
    fields, server_fields = Fields(scopes=["read"]), Fields(approvedScopes=[{"name": "read"}])
    watched = weakref.ref(fields), weakref.ref(server_fields)
    ahead.add(Subject("client", "crm", fields, "sync", server_fields))
    del fields, server_fields
    gc.collect()
    assert all(ref() is not None for ref in watched)
    del ahead
    gc.collect()
    assert watched[0]() is None  # the watch works (a rule keeps the last server's fields it saw)


def test_subjects_dropped_by_their_caller_are_not_confused_with_new_ones() -> None:
    """The same, by what is found: mappings made after those added ahead were dropped by the caller
    (where memory allows, at the very addresses of those) are judged as themselves."""

    def subject(url: str) -> Subject:
        fields = MappingProxyType({"approvedCallbackUrls": [url]})
        return Subject("server", "calendar", fields, server_fields=fields)

    rules = all_rules()
    ahead = JudgedAhead(Judge(rules))
    for round_ in range(5):
        added = [subject(f"http://h{round_}-{n}.example.com/cb") for n in range(300)]  # MCP007 on each
        for item in added:
            ahead.add(item)
        del added, item  # freed together, were they not kept: their memory is what comes next
        gc.collect()
        fresh = [subject("https://ok.example.com/cb") for _n in range(300)]
        assert evaluate(fresh, rules) == []
        assert ahead.evaluate(fresh) == []


# ---- PlanAhead: told of the live project as it arrives ---------------------------------------------


def feed(ahead: PlanAhead, scenario: Scenario, order: Sequence[str]) -> LiveState:
    """Tell ``ahead`` of ``scenario``'s live project as a prefetch does: the servers, then each
    server's clients in ``order``; the clients reordered as the fetch asked for them at the end."""
    full = scenario.full()
    clients: dict[str, tuple[LiveClient, ...]] = {}
    live = live_state(scenario.servers, clients, complete=scenario.complete)
    reading = list(scenario.read())
    ahead.servers(live, reading)
    for server_id in order:
        clients[server_id] = full.clients_of(server_id)
        ahead.clients(server_id)
    if set(clients) == set(reading):
        in_order = {server_id: clients[server_id] for server_id in reading}
        clients.clear()
        clients.update(in_order)
    return live


@pytest.mark.parametrize(
    "name", ["updates", "prune-servers", "surface-move", "targeted", "problems", "budget"]
)
def test_plan_ahead_plans_what_build_plan_plans(write: Writer, name: str) -> None:
    scenario = SCENARIOS[name](write)
    expected = planned_whole(scenario)
    for order in orders(scenario.read())[:4]:
        ahead = PlanAhead(scenario.manifest, scenario.options, scenario.desired)
        live = feed(ahead, scenario, order)
        planning = ahead.planning(live)
        assert planning is not None
        assert outcome(planning.plan) == expected


def test_plan_ahead_offers_nothing_for_another_state_or_before_every_client_arrived(write: Writer) -> None:
    scenario = prune_servers(write)
    reading = list(scenario.read())
    full = scenario.full()
    ahead = PlanAhead(scenario.manifest, scenario.options, scenario.desired)
    assert ahead.planning(full) is None  # told of nothing yet
    ahead.clients(reading[0])  # clients before any servers: ignored
    assert ahead.planning(full) is None
    clients: dict[str, tuple[LiveClient, ...]] = {}
    live = live_state(scenario.servers, clients, complete=True)
    ahead.servers(live, reading)
    for server_id in reading:
        assert ahead.planning(live) is None  # some servers' clients are still to come
        clients[server_id] = full.clients_of(server_id)
        ahead.clients(server_id)
    planning = ahead.planning(live)
    assert planning is not None
    assert planning.plan() == build_plan(scenario.manifest, full, scenario.options)
    assert full == live
    assert ahead.planning(full) is None  # an equal state, but not the one it was told of


def test_plan_ahead_judges_the_live_objects_as_they_arrive(write: Writer) -> None:
    scenario = findings_scenario(write)
    ahead = PlanAhead(scenario.manifest, scenario.options, scenario.desired)
    live = feed(ahead, scenario, list(reversed(scenario.read())))
    planning = ahead.planning(live)
    assert planning is not None
    plan = planning.plan()
    assert plan == build_plan(scenario.manifest, scenario.full(), scenario.options)
    judged = ahead.judged
    assert judged is not None
    rules, policy = all_rules(), policy_of(scenario.manifest.project.policy).policy
    assert (judged.judge.rules, judged.judge.policy) == (rules, policy)  # so that the review uses it
    before = plan_subjects(scenario.manifest, live, plan).before
    counting = CountingJudge(rules, policy)
    judged.judge = counting  # judges what was not judged ahead: nothing
    assert judged.evaluate(before) == evaluate(before, rules, policy)
    assert counting.calls == 0


@pytest.mark.parametrize("arrival", range(3))
def test_the_review_with_findings_judged_ahead_is_the_review_without(
    write: Writer, monkeypatch: pytest.MonkeyPatch, arrival: int
) -> None:
    scenario = findings_scenario(write)
    ahead = PlanAhead(scenario.manifest, scenario.options, scenario.desired)
    live = feed(ahead, scenario, orders(scenario.read())[arrival])
    planning = ahead.planning(live)
    assert planning is not None
    plan = planning.plan()
    judged = ahead.judged
    assert judged is not None
    without = review_plan(scenario.manifest, live, plan, scenario.options)
    assert {f.status for f in without.findings} == {"new", "existing", "resolved"}
    assert any(f.excepted for f in without.findings)
    looked_up: list[list[Finding]] = []
    evaluate_ahead = judged.evaluate

    def spy(subjects: Sequence[Subject]) -> list[Finding]:
        looked_up.append(evaluate_ahead(subjects))
        return looked_up[-1]

    monkeypatch.setattr(judged, "evaluate", spy)
    counting = CountingJudge(judged.judge.rules, judged.judge.policy)
    judged.judge = counting
    assert review_plan(scenario.manifest, live, plan, scenario.options, judged=judged) == without
    assert len(looked_up) == 1  # the review took the live objects' findings from those judged ahead
    assert looked_up[0]
    assert counting.calls == 0  # and every one of them had been judged ahead


@pytest.mark.parametrize("where", ["start", "read"])
def test_planning_ahead_that_fails_is_dropped_and_judging_goes_on(
    write: Writer, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """A failure while planning ahead (a bug, say) is not raised while the project is read: the plan
    is made again once all of it is (reconciler.workflow.plan_against), where it fails as it always did."""
    scenario = findings_scenario(write)

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("a bug in planning ahead")

    target = "__init__" if where == "start" else "read"
    monkeypatch.setattr(PlanWhileReading, target, broken)
    ahead = PlanAhead(scenario.manifest, scenario.options, scenario.desired)
    live = feed(ahead, scenario, list(scenario.read()))
    assert ahead.planning(live) is None
    monkeypatch.undo()
    plan = build_plan(scenario.manifest, live, scenario.options)
    assert ahead.judged is not None  # judging went on beside it
    alone = review_plan(scenario.manifest, live, plan, scenario.options)
    assert review_plan(scenario.manifest, live, plan, scenario.options, judged=ahead.judged) == alone
    assert alone.findings  # the scenario has findings to compare


def test_plan_ahead_judges_only_what_the_review_may_judge(
    write: Writer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The objects the manifests name and those the plan may delete (ours), never someone else's that no
    manifest names: a plugin rule sees no object with the prefetch that it would not see without."""
    seen: list[str] = []
    judge_one = Judge.__call__

    def spying(self: Judge, subject: Subject) -> list[Finding]:
        seen.append(subject.address)
        return judge_one(self, subject)

    monkeypatch.setattr(Judge, "__call__", spying)
    scenario = findings_scenario(write)
    ahead = PlanAhead(scenario.manifest, scenario.options, scenario.desired)
    feed(ahead, scenario, list(scenario.read()))
    assert not [a for a in seen if "elsewhere" in a], seen  # not ours, named by no manifest
    assert any('"old"' in a for a in seen), seen  # ours: the plan may delete it
    assert any("old/x" in a for a in seen), seen  # and its clients with it
    assert any("calendar/agent" in a for a in seen), seen  # named
    seen.clear()
    live = scenario.full()
    plan = build_plan(scenario.manifest, live, scenario.options)
    review_plan(scenario.manifest, live, plan, scenario.options)
    assert not [a for a in seen if "elsewhere" in a]  # nor does the review, without the prefetch


def test_a_subjects_identity_covers_every_field_it_has() -> None:
    """JudgedAhead keys a subject on every field of it: a field added to Subject must join the key."""
    from reconciler.findings import _identity  # noqa: PLC0415 - the key is private

    base = Subject("client", "s", MappingProxyType({}), "c", MappingProxyType({}), written=False)
    changed: dict[str, Any] = {
        "kind": "server",
        "server": "t",
        "fields": MappingProxyType({}),
        "client": "d",
        "server_fields": MappingProxyType({}),
        "written": True,
    }
    assert set(changed) == {f.name for f in dataclasses.fields(Subject)}
    for name, value in changed.items():
        assert _identity(replace(base, **{name: value})) != _identity(base), name
