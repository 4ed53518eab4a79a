"""Property-based tests (hypothesis) of the planner, its overlay contract, and apply against the emulator.

Random manifests (built with ``model_validate``, so ``model_fields_set`` says what each one mentions)
are planned against random live states: servers and clients with overlapping names, owned or not,
protected or not, registered dynamically or not, with unknown extra fields and zero values present
or absent. The properties:

1. determinism: the same inputs give the same plan, the same JSON and the same checksum;
2. safety: pruning never deletes what the reconciler does not own, what is protected, dynamically
   registered clients, or a server that still has such clients; only owned objects are updated;
3. convergence (pure): a tiny simulator that carries the plan out with ``overlay`` reaches a state
   whose plan is empty;
4. convergence and idempotence (real): ``apply`` over HTTP against the emulator, then an empty plan,
   and a second apply that sends nothing but reads;
5. field preservation: every field a manifest does not mention, unknown ones included, is kept;

and, focused: conflicts are refused exactly when they exist, a rotation marker is acted on once, and a
manifest naming the reconciler's own tags is refused or converges.

Generation avoids states that are legitimately errors (a live object of a manifest entry's name that
is not owned gets ``adopt: true``; duplicated live names are kept out of the manifest), except in the
property about exactly those errors.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from reconciler.descope.wire import LiveClient, LiveServer, LiveState, server_to_wire
from reconciler.diff import overlay
from reconciler.emulator import EmulatorConfig, RunningEmulator, running_emulator
from reconciler.emulator.app import MUTATIONS, omit_zero
from reconciler.errors import ManifestError, PlanError
from reconciler.kinds import CLIENT, SERVER
from reconciler.manifest import load_manifest
from reconciler.models import DEFAULT_OWNERSHIP_TAG, Manifest, ProjectSpec, ServerSpec
from reconciler.plan import Action, ApplyResult, Change, Kind, Plan
from reconciler.planner import PlanOptions, build_plan
from reconciler.scopes import ScopesFormat
from reconciler.tags import PROTECT_TAG, ROTATION_PREFIX, user_tags
from reconciler.throttle import ThrottleSettings
from reconciler.workflow import ApplySettings, Connection, apply_fresh, plan_project

OWNER = DEFAULT_OWNERSHIP_TAG
PROJECT = "P2MCPRECONCILERPROPS"
KEY = "K2-properties-key-5e1f"
BIG = 1_000_000  # an allow_deletes that no generated plan reaches

SERVER_NAMES = ("alpha", "beta", "gamma", "delta", "eps")
CLIENT_NAMES = ("ci", "bot", "web", "job")
USER_TAGS = ("team:a", "team:b", "tier:gold", "x")
URLS = ("https://a.example.com/mcp", "https://b.example.com/cb", "https://c.example.com")
SCOPE_NAMES = ("read", "write", "admin", "cal:read")
VALUES = ("conn-1", "conn-2")
DOMAINS = ("example.com", "*.example.org", "corp.test")
UNITS = ("seconds", "minutes", "hours", "days", "weeks")
MARKERS = ("r1", "r2", "7")
SERVER_EXTRA_KEYS = ("futureField", "legacyFlag", "nestedExtra")
CLIENT_EXTRA_KEYS = ("futureField", "clientNote")

PURE = settings(
    max_examples=300,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
REAL = settings(PURE, max_examples=40)


# ---- strategies ----------------------------------------------------------------------------------

json_values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers(-2, 3) | st.sampled_from(["", "v", "w"]),
    lambda inner: (
        st.lists(inner, max_size=2) | st.dictionaries(st.sampled_from(["k", "m"]), inner, max_size=2)
    ),
    max_leaves=4,
)
urls = st.lists(st.sampled_from(URLS), unique=True, max_size=2)
tag_lists = st.lists(st.sampled_from(USER_TAGS), unique=True, max_size=3)


@st.composite
def scope_lists(draw: st.DrawFn) -> list[dict[str, Any]]:
    names = draw(st.lists(st.sampled_from(SCOPE_NAMES), unique=True, max_size=3))
    optional = {
        "description": st.sampled_from(["", "Read", "Write"]),
        "optional": st.booleans(),
        "values": st.lists(st.sampled_from(VALUES), unique=True, max_size=2),
    }
    return [{"name": name, **draw(st.fixed_dictionaries({}, optional=optional))} for name in names]


def units() -> st.SearchStrategy[str]:
    return st.sampled_from(UNITS)


SERVER_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "description": st.sampled_from(["", "Calendar", "CRM"]),
    "audienceWhitelist": urls,
    "approvedScopes": scope_lists(),
    "approvedCallbackUrls": urls,
    "dynamicRegistration": st.fixed_dictionaries(
        {},
        optional={
            "enabled": st.booleans(),
            "disableApprovedScopesAsDefault": st.booleans(),
            "flowId": st.sampled_from(["", "flow-a"]),
        },
    ),
    "sessionSettings": st.fixed_dictionaries(
        {},
        optional={
            "enabled": st.booleans(),
            "sessionTokenExpiration": st.integers(0, 30),
            "sessionTokenExpirationUnit": units(),
            "refreshTokenExpiration": st.integers(0, 30),
            "refreshTokenExpirationUnit": units(),
            "keySessionTokenExpiration": st.integers(0, 30),
            "keySessionTokenExpirationUnit": units(),
            "userTemplateId": st.sampled_from(["", "tpl-u"]),
            "keyTemplateId": st.sampled_from(["", "tpl-k"]),
        },
    ),
    "cimdSettings": st.fixed_dictionaries(
        {},
        optional={
            "enabled": st.booleans(),
            "domainPolicies": st.fixed_dictionaries(
                {},
                optional={
                    "policies": st.lists(
                        st.fixed_dictionaries(
                            {"domainPattern": st.sampled_from(DOMAINS)}, optional={"enabled": st.booleans()}
                        ),
                        unique_by=lambda policy: str(policy["domainPattern"]),
                        max_size=2,
                    )
                },
            ),
        },
    ),
    "skipConsentScreen": st.booleans(),
}


@st.composite
def live_tags(draw: st.DrawFn, *, markers: int = 0) -> list[str]:
    """User tags plus, at random, the ownership tag, the protect tag and up to ``markers`` rotation markers."""
    tags = list(draw(tag_lists))
    if draw(st.booleans()):
        tags.append(OWNER)
    if draw(st.integers(0, 3)) == 0:
        tags.append(PROTECT_TAG)
    tags += [
        ROTATION_PREFIX + m for m in draw(st.lists(st.sampled_from(MARKERS), unique=True, max_size=markers))
    ]
    return list(draw(st.permutations(tags)))


@st.composite
def live_clients(draw: st.DrawFn, server_index: int) -> list[dict[str, Any]]:
    clients = []
    for j in range(draw(st.integers(0, 3))):
        cid = f"MSC{server_index}x{j}"
        fields: dict[str, Any] = {"id": cid, "clientId": f"oauth{server_index}x{j}"}
        fields["name"] = draw(st.sampled_from(CLIENT_NAMES))
        tags = draw(live_tags(markers=1))
        if draw(st.booleans()) or tags:  # an empty list present, or absent
            fields["tags"] = tags
        optional = {
            "registrationType": st.sampled_from(["", "preRegistered", "dcr", "cimd"]),
            "scopes": st.lists(st.sampled_from(SCOPE_NAMES), unique=True, max_size=2),
            "approvedCallbackUrls": urls,
            "forceAddAllAuthorizationInfo": st.booleans(),
            "description": st.sampled_from(["", "made by hand"]),
            **{key: json_values for key in CLIENT_EXTRA_KEYS},
        }
        clients.append({**fields, **draw(st.fixed_dictionaries({}, optional=optional))})
    return clients


@st.composite
def live_servers(draw: st.DrawFn) -> list[dict[str, Any]]:
    """0-4 live servers (seed form: clients nested) with explicit ids, names that may repeat; each
    client carries at most one rotation marker (several: see rotation_cases)."""
    servers = []
    for i in range(draw(st.integers(0, 4))):
        fields: dict[str, Any] = {"id": f"MS{i}", "name": draw(st.sampled_from(SERVER_NAMES))}
        tags = draw(live_tags())
        if draw(st.booleans()) or tags:  # an empty list present, or absent
            fields["tags"] = tags
        optional = {**SERVER_FIELDS, **{key: json_values for key in SERVER_EXTRA_KEYS}}
        fields.update(draw(st.fixed_dictionaries({}, optional=optional)))
        servers.append({**fields, "clients": draw(live_clients(i))})
    return servers


@st.composite
def manifest_client(draw: st.DrawFn, name: str, scope_names: list[str]) -> dict[str, Any]:
    optional: dict[str, st.SearchStrategy[Any]] = {
        "tags": tag_lists,
        "approvedCallbackUrls": urls,
        "secret": st.fixed_dictionaries(
            {}, optional={"rotation": st.sampled_from(MARKERS) | st.integers(1, 2)}
        ),
        "protect": st.booleans(),
        "adopt": st.booleans(),
    }
    if scope_names:
        optional["scopes"] = st.lists(st.sampled_from(scope_names), unique=True, max_size=2)
    return {"name": name, **draw(st.fixed_dictionaries({}, optional=optional))}


@st.composite
def manifest_server(draw: st.DrawFn, name: str, live_clients: tuple[str, ...] = ()) -> dict[str, Any]:
    optional = {**SERVER_FIELDS, "tags": tag_lists, "protect": st.booleans(), "adopt": st.booleans()}
    spec: dict[str, Any] = {"kind": "MCPServer", "name": name}
    spec.update(draw(st.fixed_dictionaries({}, optional=optional)))
    scope_names = [scope["name"] for scope in spec.get("approvedScopes", [])]
    chosen = [n for n in dict.fromkeys(live_clients) if draw(st.booleans())]  # names the live server has
    client_names = list(
        dict.fromkeys(chosen + draw(st.lists(st.sampled_from(CLIENT_NAMES), unique=True, max_size=3)))
    )
    if draw(st.booleans()) or client_names:
        spec["clients"] = [draw(manifest_client(n, scope_names)) for n in client_names]
    return spec


@dataclass(frozen=True)
class Scenario:
    """A manifest and a live state, as plain JSON-shaped data (the live one in the emulator's seed form)."""

    project: dict[str, Any]
    servers: list[dict[str, Any]]
    live: list[dict[str, Any]]

    def manifest(self, sink_path: str = "secrets/out.json") -> Manifest:
        project = ProjectSpec.model_validate(
            {**self.project, "sinks": {"local": {"type": "file", "path": sink_path}}}
        )
        return Manifest(project, tuple(ServerSpec.model_validate(s) for s in self.servers), {})

    def live_state(self) -> LiveState:
        return live_state_of(self.live)


def live_state_of(servers: list[dict[str, Any]]) -> LiveState:
    clients = {
        s["id"]: tuple(LiveClient.from_wire({**c, "mcpServerId": s["id"]}, s["id"]) for c in s["clients"])
        for s in servers
    }
    live = tuple(LiveServer.from_wire({k: v for k, v in s.items() if k != "clients"}) for s in servers)
    return LiveState(live, clients)


def _duplicates(names: list[str]) -> set[str]:
    return {name for name in names if names.count(name) > 1}


def _mirror(draw: st.DrawFn, spec: dict[str, Any], live: Mapping[str, Any]) -> None:
    """Make a manifest server (and its clients) say what the live one already has, for the fields
    it mentions: the user tags, the protect tag, the scopes and, at random, a recorded rotation marker."""
    for key in set(SERVER_FIELDS) & set(spec) & set(live):
        spec[key] = copy.deepcopy(live[key])
    if "tags" in spec:
        spec["tags"] = _dedup(live.get("tags"))
    spec["protect"] = PROTECT_TAG in live.get("tags", [])
    approved = [scope["name"] for scope in spec.get("approvedScopes", [])]
    for client in spec.get("clients", []):
        if "scopes" in client:
            client["scopes"] = [name for name in client["scopes"] if name in approved]
        found = next((c for c in live["clients"] if c["name"] == client["name"]), None)
        if found is None:
            continue
        tags = list(found.get("tags", []))
        for key in {"approvedCallbackUrls", "scopes"} & set(client) & set(found):
            client[key] = [v for v in found[key] if key != "scopes" or v in approved]
        if "tags" in client:
            client["tags"] = _dedup(tags)
        client["protect"] = PROTECT_TAG in tags
        recorded = [t.removeprefix(ROTATION_PREFIX) for t in tags if t.startswith(ROTATION_PREFIX)]
        if draw(st.booleans()) and recorded:
            client["secret"] = {"rotation": draw(st.sampled_from(recorded))}


@st.composite
def scenarios(draw: st.DrawFn, *, conflicts: bool = False, prune: bool | None = None) -> Scenario:
    """A random manifest against a random live state; without ``conflicts``, one that plans cleanly
    (short of the delete budget): unowned matches are adopted, duplicated live names left out.
    Half of the manifest entries that match a live object copy what they mention from it, so that
    plans with nothing or little to do are frequent too."""
    live = draw(live_servers())
    banned = set() if conflicts else _duplicates([s["name"] for s in live])
    chosen = [s["name"] for s in live if draw(st.booleans())]  # names live servers have
    names = dict.fromkeys(chosen + draw(st.lists(st.sampled_from(SERVER_NAMES), unique=True, max_size=3)))
    clients_of = {s["name"]: tuple(c["name"] for c in s["clients"]) for s in reversed(live)}
    servers = [draw(manifest_server(n, clients_of.get(n, ()))) for n in names if n not in banned]
    for spec in servers:
        match = next((s for s in live if s["name"] == spec["name"]), None)
        if match is not None and draw(st.booleans()):
            _mirror(draw, spec, match)
    if not conflicts:
        for spec in servers:
            match = next((s for s in live if s["name"] == spec["name"]), None)
            if match is None:
                continue
            if OWNER not in match.get("tags", []):
                spec["adopt"] = True
            twice = _duplicates([c["name"] for c in match["clients"]])
            spec["clients"] = [c for c in spec.get("clients", []) if c["name"] not in twice]
            for client in spec["clients"]:
                found = next((c for c in match["clients"] if c["name"] == client["name"]), None)
                if found is not None and OWNER not in found.get("tags", []):
                    client["adopt"] = True
    max_deletes = draw(st.integers(0, 6) | st.sampled_from(["0%", "50%", "100%"]))
    project = _project(prune=draw(st.booleans()) if prune is None else prune, max_deletes=max_deletes)
    return Scenario(project, servers, live)


def _project(*, prune: bool, max_deletes: int | str) -> dict[str, Any]:
    return {
        "kind": "Project",
        "projectId": PROJECT,
        "prune": prune,
        "maxDeletes": max_deletes,
        "defaultSink": "local",
    }


# ---- a tiny pure simulator of apply ---------------------------------------------------------------


@dataclass
class World:
    """Live objects as plain dicts: server id → fields, and server id → client id → fields."""

    servers: dict[str, dict[str, Any]]
    clients: dict[str, dict[str, dict[str, Any]]]
    shape: ScopesFormat = "categorized"  # the approvedScopes shape the simulated API answers in

    @classmethod
    def of(cls, live: LiveState, shape: ScopesFormat) -> World:
        return cls(
            {s.id: dict(s.fields) for s in live.servers},
            {s.id: {c.id: dict(c.fields) for c in live.clients_of(s.id)} for s in live.servers},
            shape,
        )

    def live_state(self) -> LiveState:
        """The world as the API answers: servers' scopes in the world's shape, read back as a load does."""
        servers = tuple(
            LiveServer.from_wire(server_to_wire(fields, self.shape)) for fields in self.servers.values()
        )
        clients = {
            sid: tuple(LiveClient.from_wire(c, sid) for c in self.clients[sid].values())
            for sid in self.servers
        }
        return LiveState(servers, clients)


def simulate(live: LiveState, plan: Plan) -> World:
    """Carry out ``plan`` in its order: create → desired with fresh ids; update/adopt → overlay;
    delete → remove (servers with their clients); rotate → record the marker as record_rotation does."""
    world = World.of(live, plan.scopes_format)
    created: dict[str, str] = {}
    fresh = itertools.count()
    for change in plan.changes:
        if change.kind is Kind.SERVER:
            _server_step(world, change, created, f"NEWS{next(fresh)}")
        else:
            sid = change.server_id or created[change.server or ""]
            _client_step(world.clients[sid], sid, change, f"NEWC{next(fresh)}")
    return world


def _server_step(world: World, change: Change, created: dict[str, str], new_id: str) -> None:
    if change.action is Action.CREATE:
        world.servers[new_id] = {"id": new_id, **change.desired}
        world.clients[new_id] = {}
        created[change.name] = new_id
    elif change.action is Action.DELETE:
        del world.servers[change.id or ""]
        del world.clients[change.id or ""]
    else:
        world.servers[change.id or ""] = overlay(world.servers[change.id or ""], change.desired)


def _client_step(clients: dict[str, dict[str, Any]], sid: str, change: Change, new_id: str) -> None:
    if change.action is Action.CREATE:
        assigned = {"id": new_id, "clientId": "oauth" + new_id, "mcpServerId": sid}
        clients[new_id] = {**assigned, "registrationType": "preRegistered", **change.desired}
    elif change.action is Action.DELETE:
        del clients[change.id or ""]
    elif change.action is Action.ROTATE_SECRET:
        assert change.secret is not None
        assert change.secret.rotation is not None
        fields = clients[change.id or ""]
        tags = list(fields.get("tags") or [])
        marker = ROTATION_PREFIX + change.secret.rotation
        if marker not in tags:  # reconciler.delivery.record_rotation, step by step
            fields["tags"] = [*(t for t in tags if not t.startswith(ROTATION_PREFIX)), marker]
    else:
        clients[change.id or ""] = overlay(clients[change.id or ""], change.desired)


# ---- checks shared by the pure and the real properties --------------------------------------------

Snapshot = dict[str, tuple[dict[str, Any], dict[str, dict[str, Any]]]]  # server id → (fields, clients)


def snapshot_of_world(world: World) -> Snapshot:
    return {sid: (dict(fields), dict(world.clients[sid])) for sid, fields in world.servers.items()}


def snapshot_of_emulator(state: Mapping[str, Any]) -> Snapshot:
    return {
        s["id"]: (
            {k: v for k, v in s.items() if k != "clients"},
            {c["id"]: {k: v for k, v in c.items() if k != "secret"} for c in s.get("clients", [])},
        )
        for s in state["servers"]
    }


def _norm(value: Any, *, loose: bool) -> Any:
    """``value`` as the API shows it: with ``loose``, zero values (and fields emptied by that) are absent."""
    return omit_zero({"v": value}).get("v") if loose else value


def _dedup(tags: Any) -> list[str]:
    return list(dict.fromkeys(user_tags(list(tags or []), OWNER)))


def _assert_kept(
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    desired: Mapping[str, Any],
    *,
    loose: bool,
    where: str,
    top: bool = True,
) -> None:
    """Every field of ``before`` that ``desired`` does not mention is the same in ``after``."""
    for key in sorted(set(before) | set(after)):
        if key == "tags" and top:
            continue  # checked by the caller: the system tags may change
        old, new = before.get(key), after.get(key)
        if key not in desired:
            assert _norm(old, loose=loose) == _norm(new, loose=loose), (
                f"{where}.{key} changed: {old!r} -> {new!r}"
            )
        elif isinstance(desired[key], Mapping) and isinstance(old, Mapping):
            nested = new if isinstance(new, Mapping) else {}
            _assert_kept(old, nested, desired[key], loose=loose, where=f"{where}.{key}", top=False)


def _server_desired(spec: ServerSpec | None) -> dict[str, Any]:
    if spec is None:
        return {}
    return SERVER.payload(spec)


def assert_fields_preserved(manifest: Manifest, before: Snapshot, after: Snapshot, *, loose: bool) -> None:
    """Property 5: an object keeps every field its manifest entry does not mention, unknown ones
    included, and its user tags unless the entry mentions tags; objects in no manifest are untouched
    (apart from being deleted)."""
    for sid, (fields, clients) in before.items():
        if sid not in after:
            continue
        new_fields, new_clients = after[sid]
        spec = manifest.server(str(fields.get("name")))
        desired = _server_desired(spec)
        _assert_kept(fields, new_fields, desired, loose=loose, where=f"server {sid}")
        if spec is None:
            assert _norm(fields.get("tags"), loose=loose) == _norm(new_fields.get("tags"), loose=loose)
        elif "tags" not in spec.model_fields_set:
            assert _dedup(fields.get("tags")) == _dedup(new_fields.get("tags")), f"server {sid} user tags"
        client_specs = {c.name: c for c in spec.clients} if spec else {}
        for cid, client in clients.items():
            if cid not in new_clients:
                continue
            entry = client_specs.get(str(client.get("name")))
            wanted = {"name": entry.name, **CLIENT.payload(entry)} if entry else {}
            _assert_kept(client, new_clients[cid], wanted, loose=loose, where=f"client {sid}/{cid}")
            if entry is None or "tags" not in entry.model_fields_set:
                old_tags, new_tags = client.get("tags"), new_clients[cid].get("tags")
                if entry is None:
                    assert _norm(old_tags, loose=loose) == _norm(new_tags, loose=loose), f"client {cid} tags"
                else:
                    assert _dedup(old_tags) == _dedup(new_tags), f"client {sid}/{cid} user tags"


def _dynamic(client: LiveClient) -> bool:
    return client.registration_type not in ("", "preRegistered")


def predicted_conflicts(manifest: Manifest, live: LiveState) -> int:
    """How many problems a plan must report: ambiguous names, and unowned matches without adopt."""
    count = 0
    for spec in manifest.servers:
        matches = [s for s in live.servers if s.name == spec.name]
        if len(matches) > 1 or (matches and OWNER not in matches[0].tags and not spec.adopt):
            count += 1
            continue
        for client in spec.clients if matches else ():
            found = [c for c in live.clients_of(matches[0].id) if c.name == client.name]
            if len(found) > 1 or (found and OWNER not in found[0].tags and not client.adopt):
                count += 1
    return count


def plan_or_problems(
    manifest: Manifest, live: LiveState, options: PlanOptions | None = None
) -> Plan | list[str]:
    """The plan, or the problems a PlanError lists."""
    try:
        return build_plan(manifest, live, options)
    except PlanError as error:
        return error.reasons


def weighted_deletes(plan: Plan, live: LiveState) -> int:
    """Deletes as the budget counts them: a server's delete counts its clients too."""
    total = 0
    for change in plan.changes:
        if change.action is Action.DELETE:
            total += 1 + (len(live.clients_of(change.id or "")) if change.kind is Kind.SERVER else 0)
    return total


def delete_budget(project: ProjectSpec, live: LiveState) -> int:
    if isinstance(project.maxDeletes, int):
        return project.maxDeletes
    managed = sum(OWNER in s.tags for s in live.servers)
    managed += sum(OWNER in c.tags for cs in live.clients.values() for c in cs)
    return managed * int(project.maxDeletes.rstrip("%")) // 100


# ---- 1. determinism -------------------------------------------------------------------------------


@PURE
@given(scenarios())
def test_planning_is_deterministic(scenario: Scenario) -> None:
    options = PlanOptions(allow_deletes=BIG)
    first = build_plan(scenario.manifest(), scenario.live_state(), options)
    second = build_plan(scenario.manifest(), scenario.live_state(), options)
    assert first == second
    assert first.to_json() == second.to_json()
    assert first.to_json()["checksum"] == second.to_json()["checksum"]
    assert Plan.from_json(first.to_json()) == first


# ---- 2. safety ------------------------------------------------------------------------------------


@PURE
@given(scenarios(prune=True), st.none() | st.integers(0, 12))
def test_pruning_never_deletes_what_it_must_not(scenario: Scenario, allow: int | None) -> None:
    manifest, live = scenario.manifest(), scenario.live_state()
    plan = plan_or_problems(manifest, live, PlanOptions(allow_deletes=allow))
    if isinstance(plan, list):
        # Conflicts are generated away: the only reason left is the delete budget, and it is right.
        assert all(r.startswith("the plan deletes ") for r in plan), plan
        deletes = weighted_deletes(build_plan(manifest, live, PlanOptions(allow_deletes=BIG)), live)
        assert deletes > delete_budget(manifest.project, live)
        assert allow is None or deletes > allow
        return
    deletes = weighted_deletes(plan, live)
    assert deletes <= max(delete_budget(manifest.project, live), allow or 0)
    servers = {s.id: s for s in live.servers}
    clients = {c.id: c for cs in live.clients.values() for c in cs}
    wanted = {s.name for s in manifest.servers}
    for change in plan.changes:
        if change.action is Action.CREATE:
            continue
        target = servers[change.id or ""] if change.kind is Kind.SERVER else clients[change.id or ""]
        owned = OWNER in target.tags
        assert owned == (change.action is not Action.ADOPT), change  # only owned objects are changed
        if change.action is not Action.DELETE:
            continue
        assert PROTECT_TAG not in target.tags, change
        if isinstance(target, LiveClient):
            assert not _dynamic(target), change
            spec = manifest.server(change.server or "")
            assert spec is not None
            assert target.name not in {c.name for c in spec.clients}
        else:
            assert target.name not in wanted
            for client in live.clients_of(target.id):
                assert OWNER in client.tags, change
                assert not _dynamic(client), change
    for change in plan.changes:
        if change.action is Action.ADOPT:
            spec = manifest.server(change.server or change.name)
            assert spec is not None
            entry = (
                spec if change.kind is Kind.SERVER else next(c for c in spec.clients if c.name == change.name)
            )
            assert entry.adopt


@PURE
@given(scenarios(conflicts=True, prune=False))
def test_conflicts_are_refused_exactly_when_they_exist(scenario: Scenario) -> None:
    manifest, live = scenario.manifest(), scenario.live_state()
    expected = predicted_conflicts(manifest, live)
    outcome = plan_or_problems(manifest, live)
    assert len(outcome) == expected if isinstance(outcome, list) else expected == 0, outcome


# ---- 3. and 5. convergence and field preservation, pure -------------------------------------------


@PURE
@given(scenarios())
def test_the_plan_carried_out_by_overlay_converges_and_keeps_unmentioned_fields(scenario: Scenario) -> None:
    manifest, live = scenario.manifest(), scenario.live_state()
    options = PlanOptions(allow_deletes=BIG)
    plan = build_plan(manifest, live, options)
    event("actions: " + ", ".join(sorted({c.action.value for c in plan.changes})))
    world = simulate(live, plan)
    again = build_plan(manifest, world.live_state(), options)
    assert again.changes == (), [(c.action.value, c.address, c.fields) for c in again.changes]
    assert_fields_preserved(
        manifest, snapshot_of_world(World.of(live, plan.scopes_format)), snapshot_of_world(world), loose=False
    )


@st.composite
def rotation_cases(draw: st.DrawFn) -> Scenario:
    """An owned client carrying any number of recorded rotation markers, and a manifest that asks for
    one (or none): the focused version of property 3 for the rotation marker."""
    markers = draw(st.lists(st.sampled_from(MARKERS), unique=True, max_size=3))
    tags = draw(st.permutations([OWNER, *(ROTATION_PREFIX + m for m in markers)]))
    client: dict[str, Any] = {"name": "ci"}
    rotation = draw(st.none() | st.sampled_from(MARKERS))
    if rotation is not None:
        client["secret"] = {"rotation": rotation}
    live_client = {"id": "MSC0x0", "clientId": "oauth0x0", "name": "ci", "tags": tags}
    live = [{"id": "MS0", "name": "alpha", "tags": [OWNER], "clients": [live_client]}]
    servers = [{"kind": "MCPServer", "name": "alpha", "clients": [client]}]
    return Scenario(_project(prune=False, max_deletes=0), servers, live)


@PURE
@given(rotation_cases())
def test_a_rotation_is_carried_out_once_even_with_several_recorded_markers(scenario: Scenario) -> None:
    manifest, live = scenario.manifest(), scenario.live_state()
    world = simulate(live, build_plan(manifest, live))
    again = build_plan(manifest, world.live_state())
    assert again.changes == (), [(c.action.value, c.address, c.fields) for c in again.changes]


# ---- 4. and 5. convergence, idempotence and field preservation, over HTTP -------------------------


@pytest.fixture(scope="module")
def emulator() -> Iterator[RunningEmulator]:
    with running_emulator(EmulatorConfig(project_id=PROJECT, management_key=KEY)) as handle:
        yield handle


def _seed_form(live: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**s, "clients": [dict(c) for c in s["clients"]]} for s in live]


@REAL
@given(scenario=scenarios())
def test_apply_against_the_emulator_converges_and_a_second_apply_only_reads(
    emulator: RunningEmulator, scenario: Scenario
) -> None:
    emulator.reset()
    if scenario.live:
        emulator.seed({"servers": _seed_form(scenario.live)})
    before = snapshot_of_emulator(emulator.state())
    options = PlanOptions(allow_deletes=BIG)
    with tempfile.TemporaryDirectory() as folder:
        manifest = scenario.manifest(str(Path(folder) / "secrets" / "out.json"))
        connection = Connection(
            environ={"DESCOPE_BASE_URL": emulator.base_url, "DESCOPE_MANAGEMENT_KEY": KEY},
            throttle=ThrottleSettings(requests=BIG, per_seconds=1.0),
        )
        apply_settings = ApplySettings(journal=Path(folder) / "journal.jsonl")

        def apply() -> tuple[Plan, ApplyResult | None]:
            return asyncio.run(apply_fresh(manifest, connection, options, apply_settings, lambda _plan: True))

        plan, result = apply()
        event("actions: " + ", ".join(sorted({c.action.value for c in plan.changes})))
        if result is not None:
            assert result.ok, (result.failed, result.skipped, result.undelivered)
        assert plan.has_changes == (result is not None)
        after = asyncio.run(plan_project(manifest, connection, options))
        assert after.changes == (), [(c.action.value, c.address, c.fields) for c in after.changes]
        assert_fields_preserved(manifest, before, snapshot_of_emulator(emulator.state()), loose=True)

        emulator.reset(counters_only=True)
        second, nothing = apply()
        assert second.changes == ()
        assert nothing is None
        sent = {endpoint for endpoint, count in emulator.stats()["requests"].items() if count}
        assert not sent & set(MUTATIONS), sent


# ---- the tags the reconciler keeps for itself, in a manifest --------------------------------------

RESERVED = (OWNER, PROTECT_TAG, ROTATION_PREFIX + "r1")


@PURE
@given(
    st.lists(st.sampled_from(RESERVED + USER_TAGS), unique=True, min_size=1, max_size=3),
    st.booleans(),
)
def test_a_manifest_naming_reserved_tags_is_refused_or_converges(tags: list[str], protect: bool) -> None:
    text = (
        f"kind: MCPServer\nname: alpha\nprotect: {str(protect).lower()}\n"
        f"tags: [{', '.join(repr(t) for t in tags)}]\n"
    )
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "p.yaml").write_text(f"kind: Project\nprojectId: {PROJECT}\n", encoding="utf-8")
        (Path(folder) / "s.yaml").write_text(text, encoding="utf-8")
        try:
            manifest = load_manifest([folder], environ={})
        except ManifestError:
            return
    empty = LiveState(())
    plan = build_plan(manifest, empty)
    again = build_plan(manifest, simulate(empty, plan).live_state())
    assert again.changes == (), [(c.action.value, c.address, c.fields) for c in again.changes]
