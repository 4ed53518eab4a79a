"""Two teams share one Descope project: each Project's ownershipTag and ignore rules keep plan, drift and
export to its own objects (reconciler/ignore.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.cli import run
from reconciler.descope.wire import LiveClient, LiveServer, LiveState
from reconciler.drift import IGNORED_HINT, detect_drift
from reconciler.emulator import RunningEmulator
from reconciler.errors import ManifestError, PlanError
from reconciler.export import ExportOptions, export_project
from reconciler.ignore import Scope, name_matches
from reconciler.kinds import Kind
from reconciler.manifest import load_manifest
from reconciler.models import IgnoreRule, Manifest
from reconciler.planner import build_plan
from reconciler.render.markdown import render_drift_markdown
from reconciler.render.text import render_drift_text
from reconciler.schemas import validator_for_document
from tests.conftest import Writer, serving

KEY = "K2-shared-projects-key-7c3"
PROJECT = "P2MCPRECONCILERDEMO"
TEAM_A = "managed-by:team-a"
TEAM_B = "managed-by:team-b"

# ---- the rules, on their own -------------------------------------------------------------------


def _server(name: str, *tags: str, id: str = "S1") -> LiveServer:
    return LiveServer.from_wire({"id": id, "name": name, "tags": list(tags)})


def _client(name: str, *tags: str, id: str = "C1", server: str = "S1") -> LiveClient:
    return LiveClient.from_wire({"id": id, "name": name, "tags": list(tags)}, server)


def _scope(*rules: dict[str, str], owner: str = TEAM_A) -> Scope:
    return Scope(owner, tuple(IgnoreRule.model_validate(rule) for rule in rules))


def test_rules_match_by_ownership_tag_tag_and_name_and_say_which_rule_matched() -> None:
    scope = _scope({"ownershipTag": "team-c"}, {"tag": "legacy"}, {"name": "sandbox-*"})
    assert scope.why_ignored(("x",), _server("x", "team-c")) == 'ignore rule 1 (ownershipTag "team-c")'
    assert scope.why_ignored(("x",), _server("x", "blue", "legacy")) == 'ignore rule 2 (tag "legacy")'
    assert scope.why_ignored(("sandbox-1",), _server("sandbox-1")) == 'ignore rule 3 (name "sandbox-*")'
    # Exact tags, case-sensitive names: nothing else matches.
    assert scope.why_ignored(("x",), _server("x", "legacy-2", "Legacy", "team-c2")) is None
    assert scope.why_ignored(("Sandbox-1",), _server("Sandbox-1")) is None
    # An ownershipTag rule names another owner, which a manifest entry may still adopt; tag and name
    # rules put an object out of reach.
    assert scope.other_owner(("team-c",)) == "team-c"
    assert scope.rule_for(("x",), _server("x", "team-c")) is None
    assert scope.rule_for(("x",), _server("x", "legacy")) == 'ignore rule 2 (tag "legacy")'


def test_name_patterns_match_a_server_or_server_slash_client_one_part_at_a_time() -> None:
    assert name_matches("legacy-*", ("legacy-crm",))
    assert not name_matches("legacy-*", ("legacy-crm", "bot"))  # * never crosses a /
    assert name_matches("calendar/ci-*", ("calendar", "ci-bot"))
    assert name_matches("*/ci-*", ("tickets", "ci-1"))
    assert not name_matches("*/ci-*", ("ci-server",))
    assert not name_matches("calendar/ci-*", ("calendar", "CI-bot"))
    assert name_matches("team-[ab]/?", ("team-b", "x"))
    scope = _scope({"name": "calendar/ci-*"})
    assert scope.why_ignored(("calendar", "ci-bot"), _client("ci-bot")) == (
        'ignore rule 1 (name "calendar/ci-*")'
    )
    assert scope.why_ignored(("calendar",), _server("calendar")) is None


def test_another_reconcilers_managed_by_tag_is_recognised_without_a_rule() -> None:
    scope = _scope()
    assert scope.other_owner((TEAM_B, "blue")) == TEAM_B
    assert scope.why_ignored(("x",), _server("x", TEAM_B)) == (
        'another reconciler\'s (ownership tag "managed-by:team-b")'
    )
    assert scope.other_owner(("managed-byteam-b", "team-b")) is None
    assert scope.why_ignored(("x",), _server("x", "blue")) is None  # unowned: not someone else's


def test_an_object_with_our_own_tag_is_never_ignored() -> None:
    scope = _scope({"tag": "legacy"}, {"name": "*"}, {"ownershipTag": "team-c"})
    ours = _server("anything", "legacy", TEAM_B, "team-c", TEAM_A)
    assert scope.why_ignored(("anything",), ours) is None
    assert scope.rule_for(("anything",), ours) is None
    assert scope.other_owner(ours.tags) is None


def test_a_client_under_an_ignored_server_is_ignored_with_it() -> None:
    live = LiveState(
        servers=(_server("legacy-crm", "legacy", id="S1"), _server("mine", TEAM_A, id="S2")),
        clients={
            "S1": (_client("bot", id="C1", server="S1"),),
            "S2": (_client("agent", TEAM_A, id="C2", server="S2"), _client("hand", id="C3", server="S2")),
        },
    )
    assert _scope({"tag": "legacy"}).ignored(live) == {
        (Kind.SERVER, "S1"): 'ignore rule 1 (tag "legacy")',
        (Kind.CLIENT, "C1"): 'its server "legacy-crm" is ignored: ignore rule 1 (tag "legacy")',
    }
    # A server that a manifest entry names is matched, not ignored, and neither are its clients.
    assert _scope({"tag": "legacy"}).ignored(live, claimed={"S1"}) == {}


# ---- the Project setting -------------------------------------------------------------------------

PROJECT_HEAD = "kind: Project\nprojectId: P2test\nownershipTag: managed-by:team-a\n"


def _problems(folder: Path) -> list[str]:
    with pytest.raises(ManifestError) as caught:
        load_manifest([str(folder)], environ={})
    return [str(p).replace(f"{folder}/", "") for p in caught.value.problems]


def test_the_project_reads_its_ignore_rules(write: Writer) -> None:
    folder = write(
        "p.yaml", PROJECT_HEAD + "ignore:\n  - tag: legacy\n  - {name: 'sandbox-*'}\n  - ownershipTag: c\n"
    )
    project = load_manifest([str(folder)], environ={}).project
    assert [(rule.key, rule.value) for rule in project.ignore] == [
        ("tag", "legacy"),
        ("name", "sandbox-*"),
        ("ownershipTag", "c"),
    ]
    assert Scope.of(project) == Scope(TEAM_A, project.ignore)


def test_a_rule_with_two_keys_an_empty_rule_and_an_unknown_key_are_refused_where_they_are(
    write: Writer,
) -> None:
    folder = write(
        "p.yaml",
        PROJECT_HEAD + "ignore:\n  - {tag: legacy, name: 'x*'}\n  - {}\n  - {label: x}\n  - name: ''\n",
    )
    assert _problems(folder) == [
        "p.yaml:5:25: ignore[0].name: 'x*' cannot be combined with tag in one rule: "
        "each ignore rule has exactly one of ownershipTag, tag or name",
        "p.yaml:6:5: ignore[1]: {} should be non-empty",
        "p.yaml:7:6: ignore[2].label: unknown field 'label'",
        "p.yaml:8:11: ignore[3].name: must not be empty",
    ]


def test_a_rule_naming_our_own_ownership_tag_is_refused(write: Writer) -> None:
    folder = write(
        "p.yaml", PROJECT_HEAD + "ignore:\n  - tag: managed-by:team-b\n  - ownershipTag: managed-by:team-a\n"
    )
    assert _problems(folder) == [
        "p.yaml:6:19: ignore[1].ownershipTag: 'managed-by:team-a' is this Project's own ownershipTag: "
        "an ignore rule naming it would ignore every object the Project manages",
    ]
    # The default tag is the Project's own when it sets none.
    folder = write("p.yaml", "kind: Project\nprojectId: P2test\nignore: [{tag: managed-by:mcp-reconciler}]\n")
    assert _problems(folder) == [
        "p.yaml:3:16: ignore[0].tag: 'managed-by:mcp-reconciler' is this Project's own ownershipTag: "
        "an ignore rule naming it would ignore every object the Project manages",
    ]


# ---- planning and drift, on their own ------------------------------------------------------------


def _manifest(folder: Path, ignore: str = "", servers: str = "") -> Manifest:
    (folder / "p.yaml").write_text(PROJECT_HEAD + (f"ignore: {ignore}\n" if ignore else ""))
    (folder / "s.yaml").write_text(servers or "kind: MCPServer\nname: mine\n")
    return load_manifest([str(folder)], environ={})


def _live(*servers: dict[str, Any]) -> LiveState:
    return LiveState(
        servers=tuple(LiveServer.from_wire(s) for s in servers),
        clients={
            s["id"]: tuple(LiveClient.from_wire(c, s["id"]) for c in s.get("clients", [])) for s in servers
        },
    )


def test_a_manifest_entry_named_like_an_ignored_object_is_refused_not_created_twice(tmp_path: Path) -> None:
    manifest = _manifest(
        tmp_path,
        "[{name: 'legacy-*'}]",
        "kind: MCPServer\nname: legacy-crm\n---\nkind: MCPServer\nname: mine\n",
    )
    live = _live({"id": "S1", "name": "legacy-crm", "tags": []})
    with pytest.raises(PlanError) as caught:
        build_plan(manifest, live)
    assert caught.value.reasons == [
        'server "legacy-crm" exists in Descope (S1) but the Project ignores it (ignore rule 1 (name '
        '"legacy-*")); rename the manifest entry or change the rule'
    ]
    # drift does not hide what plan refuses.
    report = detect_drift(manifest, live)
    assert [(u.address, u.note) for u in report.unmanaged] == [
        ('server "legacy-crm"', IGNORED_HINT.format(rule='ignore rule 1 (name "legacy-*")'))
    ]
    assert report.ignored == 0


def test_another_reconcilers_object_that_a_manifest_names_is_a_conflict_naming_its_owner(
    tmp_path: Path,
) -> None:
    manifest = _manifest(tmp_path, servers="kind: MCPServer\nname: wiki\n")
    live = _live({"id": "S1", "name": "wiki", "tags": [TEAM_B]})
    with pytest.raises(PlanError) as caught:
        build_plan(manifest, live)
    assert caught.value.reasons == [
        'server "wiki" exists in Descope (S1) but is not managed by mcp-reconciler: another reconciler '
        'owns it (ownership tag "managed-by:team-b"); set adopt: true to take it over, or choose another name'
    ]
    adopting = _manifest(tmp_path, servers="kind: MCPServer\nname: wiki\nadopt: true\n")
    (change,) = build_plan(adopting, live).changes
    assert (change.action.value, change.id) == ("adopt", "S1")


def test_our_object_wins_over_another_reconcilers_of_the_same_name(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, servers="kind: MCPServer\nname: wiki\n")
    live = _live(
        {"id": "S1", "name": "wiki", "tags": [TEAM_B]}, {"id": "S2", "name": "wiki", "tags": [TEAM_A]}
    )
    assert build_plan(manifest, live).changes == ()
    report = detect_drift(manifest, live)
    assert (report.has_drift, report.duplicated, report.ignored) == (False, (), 1)


def test_ignored_and_foreign_objects_are_neither_planned_nor_pruned_nor_drift(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, "[{tag: legacy}]")
    live = _live(
        {"id": "S1", "name": "mine", "tags": [TEAM_A]},
        {"id": "S2", "name": "theirs", "tags": [TEAM_B], "clients": [{"id": "C1", "name": "c"}]},
        {"id": "S3", "name": "old", "tags": ["legacy"]},
        {"id": "S4", "name": "hand-made", "tags": []},
    )
    plan = build_plan(manifest, live, None)
    assert plan.changes == ()
    report = detect_drift(manifest, live)
    assert [u.address for u in report.unmanaged] == ['server "hand-made"']
    assert (report.orphaned, report.changed, report.ignored) == ((), (), 3)
    assert "ignored" not in report.summary  # the step outputs keep their names
    assert report.to_json()["summary"]["ignored"] == 3
    line = "3 objects ignored (other owners or the Project's ignore rules).\n"
    assert render_drift_text(report).count(line) == 1
    assert render_drift_markdown(report).count(line) == 1


def test_drift_says_nothing_of_ignored_objects_when_there_are_none(tmp_path: Path) -> None:
    report = detect_drift(_manifest(tmp_path), _live({"id": "S1", "name": "mine", "tags": [TEAM_A]}))
    assert report.ignored == 0
    assert "ignored" not in render_drift_text(report)
    assert "ignored" not in render_drift_markdown(report)


def test_export_skips_another_reconcilers_objects() -> None:
    live = _live(
        {
            "id": "S1",
            "name": "mine",
            "tags": [TEAM_A],
            "clients": [
                {"id": "C1", "name": "ok", "tags": [TEAM_A]},
                {"id": "C2", "name": "b", "tags": [TEAM_B]},
            ],
        },
        {"id": "S2", "name": "theirs", "tags": [TEAM_B]},
        {"id": "S3", "name": "hand-made", "tags": []},
    )
    result = export_project(live, ExportOptions(project_id="P2", ownership_tag=TEAM_A))
    assert sorted(result.files) == ["project.yaml", "servers/hand-made.yaml", "servers/mine.yaml"]
    assert "name: b" not in result.files["servers/mine.yaml"]
    assert result.warnings[:2] == [
        'client "mine/b" (C2) is skipped: another reconciler manages it (ownership tag "managed-by:team-b")',
        'server "theirs" (S2) is skipped: another reconciler manages it (ownership tag "managed-by:team-b")',
    ]


# ---- two teams, one project, over HTTP -----------------------------------------------------------


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[RunningEmulator]:
    with serving(monkeypatch, PROJECT, KEY) as handle:
        monkeypatch.chdir(tmp_path)
        yield handle


TEAM_SERVERS = {
    "team-a": (
        "kind: MCPServer\nname: alpha-calendar\napprovedScopes: [{name: read}]\n"
        "clients:\n  - {name: agent, scopes: [read]}\n"
        "---\nkind: MCPServer\nname: alpha-docs\n"
    ),
    "team-b": (
        "kind: MCPServer\nname: beta-tickets\napprovedScopes: [{name: triage}]\n"
        "clients:\n  - {name: triager, scopes: [triage]}\n  - {name: reporter, scopes: [triage]}\n"
        "---\nkind: MCPServer\nname: beta-wiki\n"
    ),
}


def _team(tmp_path: Path, team: str, *, ignore: str = "", extra: str = "") -> str:
    folder = tmp_path / team
    folder.mkdir(exist_ok=True)
    (folder / "project.yaml").write_text(
        f"kind: Project\nprojectId: {PROJECT}\nownershipTag: managed-by:{team}\nprune: true\n"
        f"defaultSink: local\nsinks:\n  local: {{type: file, path: .secrets/{team}.json}}\n"
        + (f"ignore: {ignore}\n" if ignore else "")
    )
    (folder / "servers.yaml").write_text(TEAM_SERVERS[team] + extra)
    return str(folder)


def _drift(capsys: pytest.CaptureFixture[str], folder: str, output_format: str = "text") -> tuple[int, str]:
    capsys.readouterr()
    code = run(["drift", folder, "--detailed-exitcode", "--format", output_format])
    return code, capsys.readouterr().out


def _names(emulator: RunningEmulator) -> set[str]:
    return {
        path
        for server in emulator.state()["servers"]
        for path in (server["name"], *(f"{server['name']}/{c['name']}" for c in server.get("clients", [])))
    }


def test_two_teams_share_one_project_without_touching_each_other(
    emulator: RunningEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    team_a, team_b = _team(tmp_path, "team-a"), _team(tmp_path, "team-b")
    assert run(["apply", team_a, "--auto-approve"]) == 0
    assert run(["apply", team_b, "--auto-approve"]) == 0
    assert "0 deleted" in capsys.readouterr().out
    everything = {
        "alpha-calendar",
        "alpha-calendar/agent",
        "alpha-docs",
        "beta-tickets",
        "beta-tickets/triager",
        "beta-tickets/reporter",
        "beta-wiki",
    }
    assert _names(emulator) == everything

    # Each team's plan, with pruning on, changes and deletes nothing; applying it again neither.
    for folder in (team_a, team_b):
        assert run(["plan", folder, "--detailed-exitcode"]) == 0
        capsys.readouterr()
        assert run(["plan", folder, "--format", "json"]) == 0
        plan = json.loads(capsys.readouterr().out)
        assert plan["changes"] == []
        assert plan["withheld"] == []
        assert run(["apply", folder, "--auto-approve"]) == 0
    assert _names(emulator) == everything

    # Each team's drift: none, and one line counting the other team's objects.
    code, text = _drift(capsys, team_a)
    assert code == 0
    assert "No drift. The project matches the manifests." in text
    assert text.count("4 objects ignored (other owners or the Project's ignore rules).\n") == 1
    assert "nmanaged" not in text
    code, text = _drift(capsys, team_b)
    assert code == 0
    assert text.count("3 objects ignored (other owners or the Project's ignore rules).\n") == 1
    code, markdown = _drift(capsys, team_b, "markdown")
    assert code == 0
    assert markdown.count("3 objects ignored (other owners or the Project's ignore rules).\n") == 1

    code, out = _drift(capsys, team_a, "json")
    assert code == 0
    document = json.loads(out)
    assert document["format_version"] == 3
    assert document["drift"] is False
    assert document["summary"] == {
        "changed": 0,
        "missing": 0,
        "orphaned": 0,
        "unmanaged": 0,
        "dynamicClients": 0,
        "duplicated": 0,
        "ignored": 4,
    }
    assert list(validator_for_document("drift.schema.json").iter_errors(document)) == []


def test_an_ignore_rule_takes_a_hand_made_object_out_of_drift(
    emulator: RunningEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["apply", _team(tmp_path, "team-a"), "--auto-approve"]) == 0
    emulator.seed({"servers": [{"name": "old-crm", "tags": ["legacy"], "clients": [{"name": "bot"}]}]})
    (legacy,) = (s for s in emulator.state()["servers"] if s["name"] == "old-crm")

    # Without the rule, the hand-made server and its client are unmanaged: drift.
    code, out = _drift(capsys, _team(tmp_path, "team-a"), "json")
    assert code == 2
    document = json.loads(out)
    assert [u["address"] for u in document["unmanaged"]] == ['server "old-crm"', 'client "old-crm/bot"']
    assert document["summary"]["ignored"] == 0
    assert list(validator_for_document("drift.schema.json").iter_errors(document)) == []

    # With it, both are ignored: counted, not drift.
    with_rule = _team(tmp_path, "team-a", ignore="[{tag: legacy}]")
    code, text = _drift(capsys, with_rule)
    assert code == 0
    assert text.count("2 objects ignored (other owners or the Project's ignore rules).\n") == 1
    assert "old-crm" not in text
    code, out = _drift(capsys, with_rule, "json")
    document = json.loads(out)
    assert (document["drift"], document["unmanaged"], document["summary"]["ignored"]) == (False, [], 2)
    assert list(validator_for_document("drift.schema.json").iter_errors(document)) == []
    assert run(["plan", with_rule, "--detailed-exitcode"]) == 0

    # A manifest entry of the ignored object's name is refused, not created a second time.
    capsys.readouterr()
    clash = _team(tmp_path, "team-a", ignore="[{tag: legacy}]", extra="---\nkind: MCPServer\nname: old-crm\n")
    assert run(["plan", clash]) == 1
    assert (
        f'server "old-crm" exists in Descope ({legacy["id"]}) but the Project ignores it (ignore rule 1 '
        '(tag "legacy")); rename the manifest entry or change the rule'
    ) in capsys.readouterr().err
    assert [s["name"] for s in emulator.state()["servers"]].count("old-crm") == 1
