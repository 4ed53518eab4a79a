"""``mcp-reconciler emulator-console``: hand edits on a running emulator, over HTTP, that drift then sees.

Every test talks to a real emulator over a socket (``serving``), as a person's second shell would.
"""

from __future__ import annotations

import http.server
import json
import re
import shlex
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.cli import run
from reconciler.cli.console import parse_edit, target
from reconciler.emulator import RunningEmulator
from reconciler.errors import UsageError
from tests.conftest import EXAMPLES, ROOT, Writer, project_yaml, serving

KEY = "K2-console-test-key-7c4d"
PROJECT = "P2CONSOLE"
OWNER = "managed-by:mcp-reconciler"
SERVER = """\
kind: MCPServer
name: calendar
description: Calendar tools
tags: [team:productivity]
audienceWhitelist: [https://calendar.example.com/mcp]
approvedScopes:
  - {name: calendar:read, description: Read events}
  - {name: calendar:write, description: Write events}
dynamicRegistration: {enabled: true}
clients:
  - name: agent
    scopes: [calendar:read, calendar:write]
  - name: reporter
    scopes: [calendar:read]
"""


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningEmulator]:
    with serving(monkeypatch, PROJECT, KEY) as handle:
        monkeypatch.setenv("DESCOPE_PROJECT_ID", PROJECT)
        yield handle


@pytest.fixture
def applied(emulator: RunningEmulator, write: Writer, capsys: pytest.CaptureFixture[str]) -> Path:
    """The manifests' folder, applied: the live project matches it."""
    write("project.yaml", project_yaml(PROJECT))
    folder = write("calendar.yaml", SERVER)
    assert run(["apply", str(folder), "--auto-approve"]) == 0, capsys.readouterr().err
    capsys.readouterr()
    return folder


def console(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = run(["emulator-console", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def drift(folder: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert run(["drift", str(folder), "--format", "json"]) == 0
    document: dict[str, Any] = json.loads(capsys.readouterr().out)
    return document


def addresses(document: dict[str, Any], section: str) -> list[str]:
    """How drift names each object of ``section``: ``server "calendar"``, ``client "calendar/agent"``."""
    named = []
    for entry in document[section]:
        if "address" in entry:
            named.append(entry["address"])
        else:
            path = "/".join(part for part in (entry.get("server"), entry["name"]) if part)
            named.append(f'{entry["kind"]} "{path}"')
    return named


def live_server(emulator: RunningEmulator, name: str) -> dict[str, Any]:
    return next(s for s in emulator.state()["servers"] if s["name"] == name)


# ---- edits, each seen by drift ---------------------------------------------------------------------


def test_a_server_field_and_a_tag_set_by_hand_are_drift(
    applied: Path, emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = console(capsys, "set", "calendar", "description=Edited by hand", "tags+=hotfix")
    assert code == 0
    assert re.fullmatch(r'Changed server "calendar" \(MS\w+, mcp-servers\): 2 edits\.\n', out)
    server = live_server(emulator, "calendar")
    assert server["description"] == "Edited by hand"
    assert server["tags"][-1] == "hotfix"
    assert OWNER in server["tags"]  # the other tags are kept

    document = drift(applied, capsys)
    assert addresses(document, "changed") == ['server "calendar"']
    assert {field["path"] for field in document["changed"][0]["fields"]} == {"description", "tags"}


def test_nested_fields_and_json_values(
    applied: Path, emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    scope = '{"name": "calendar:admin", "description": "Everything"}'
    code, _, err = console(
        capsys,
        "set",
        "calendar",
        "dynamicRegistration.enabled:=false",
        "sessionSettings.sessionTokenExpiration:=30",
        f"approvedScopes.permissionsScopes+:={scope}",
    )
    assert code == 0, err
    server = live_server(emulator, "calendar")
    assert server["dynamicRegistration"] == {"enabled": False}
    assert server["sessionSettings"] == {"sessionTokenExpiration": 30}
    assert "calendar:admin" in [s["name"] for s in server["approvedScopes"]["permissionsScopes"]]
    paths = {field["path"] for field in drift(applied, capsys)["changed"][0]["fields"]}
    assert "dynamicRegistration.enabled" in paths


def test_a_client_edited_by_hand_is_drift(
    applied: Path, emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = console(capsys, "set", "calendar/agent", "scopes-=calendar:write")
    assert code == 0
    assert re.fullmatch(r'Changed client "calendar/agent" \(MSC\w+\): 1 edit\.\n', out)
    document = drift(applied, capsys)
    assert addresses(document, "changed") == ['client "calendar/agent"']


def test_a_field_removed_with_null(
    applied: Path, emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    assert console(capsys, "set", "calendar", "description:=null")[0] == 0
    assert "description" not in live_server(emulator, "calendar")
    assert addresses(drift(applied, capsys), "changed") == ['server "calendar"']


def test_objects_created_by_hand_are_unmanaged(
    applied: Path, emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = console(capsys, "create", "sandbox", "description=Someone's experiment")
    assert code == 0
    assert re.fullmatch(r'Created server "sandbox" \(MS\w+, mcp-servers\); no manifest manages it\.\n', out)
    code, out, _ = console(capsys, "create", "calendar/console-bot", 'scopes:=["calendar:read"]')
    assert code == 0
    assert out.startswith('Created client "calendar/console-bot" (MSC')
    bot = next(c for c in live_server(emulator, "calendar")["clients"] if c["name"] == "console-bot")
    assert bot["scopes"] == ["calendar:read"]
    assert OWNER not in (bot.get("tags") or [])

    document = drift(applied, capsys)
    assert sorted(addresses(document, "unmanaged")) == ['client "calendar/console-bot"', 'server "sandbox"']


def test_a_resource_made_and_edited_by_hand(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = console(
        capsys, "create", "inventory", "--surface", "resources", "uri=https://inventory.example.com/mcp"
    )
    assert code == 0, err
    assert re.fullmatch(r'Created server "inventory" \(RS\w+, resources\); no manifest manages it\.\n', out)
    code, _, err = console(
        capsys, "set", "inventory", "dynamicRegistrationSettings.tags+=console", "description=x"
    )
    assert code == 0, err
    resource = emulator.state()["resources"][0]
    assert resource["dynamicRegistrationSettings"]["tags"] == ["console"]
    assert resource["version"] == "2"  # an update, as the API makes it


def test_deletes_by_hand_are_missing_objects(
    applied: Path, emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = console(capsys, "delete", "calendar/reporter")
    assert code == 0
    assert out.startswith('Deleted client "calendar/reporter" (MSC')
    assert addresses(drift(applied, capsys), "missing") == ['client "calendar/reporter"']

    code, out, _ = console(capsys, "delete", "calendar")
    assert code == 0
    assert out.endswith(", with its 1 client.\n")
    assert emulator.state()["servers"] == []
    missing = addresses(drift(applied, capsys), "missing")
    assert missing == ['server "calendar"', 'client "calendar/agent"', 'client "calendar/reporter"']


def test_edits_are_not_api_traffic_and_reach_the_state_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from reconciler.emulator import EmulatorConfig, running_emulator  # noqa: PLC0415

    state = tmp_path / "state.json"
    config = EmulatorConfig(project_id=PROJECT, management_key=KEY, state_file=state)
    with running_emulator(config) as handle:
        monkeypatch.setenv("DESCOPE_BASE_URL", handle.base_url)
        monkeypatch.setenv("DESCOPE_MANAGEMENT_KEY", KEY)
        monkeypatch.setenv("DESCOPE_PROJECT_ID", PROJECT)
        assert console(capsys, "create", "sandbox", "tags+=x")[0] == 0
        assert handle.stats()["total"] == 0
    kept = json.loads(state.read_text())
    assert [server["fields"]["name"] for server in kept["servers"]] == ["sandbox"]


# ---- show -----------------------------------------------------------------------------------------


def test_show_lists_every_object_and_never_a_secret(
    applied: Path, emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = console(capsys, "show")
    assert code == 0
    lines = out.splitlines()
    assert re.fullmatch(r'server "calendar" \(MS\w+, mcp-servers\)  tags: team:productivity, .*', lines[0])
    assert [line.split('"')[1] for line in lines[1:]] == ["agent", "reporter"]
    code, shown, _ = console(capsys, "show", "calendar/agent")
    assert code == 0
    document = json.loads(shown)
    assert document["fields"]["scopes"] == ["calendar:read", "calendar:write"]
    secrets = [c["secret"] for c in live_server(emulator, "calendar")["clients"]]
    code, listed, _ = console(capsys, "show", "--json")
    assert code == 0
    assert [s["name"] for s in json.loads(listed)["servers"]] == ["calendar"]
    assert not any(secret in out + shown + listed for secret in secrets)


def test_show_on_an_empty_emulator(emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]) -> None:
    assert console(capsys, "show") == (0, "The emulator holds no server.\n", "")


# ---- what a person gets wrong ---------------------------------------------------------------------


def test_an_unknown_name_lists_the_known_ones(applied: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = console(capsys, "set", "calender", "description=x")
    assert code == 1
    assert err == (
        "error: the emulator refused the request (HTTP 404): no server is named 'calender': "
        "the servers are 'calendar'\n"
    )
    code, _, err = console(capsys, "delete", "calendar/agnet")
    assert code == 1
    assert "server 'calendar' has no client named 'agnet': its clients are 'agent', 'reporter'" in err


def test_a_name_two_servers_have_is_refused_with_both_ids(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    emulator.seed(
        {"servers": [{"id": "MS" + "A" * 27, "name": "twin"}, {"id": "MS" + "B" * 27, "name": "twin"}]}
    )
    code, _, err = console(capsys, "set", "twin", "description=x")
    assert code == 1
    assert "2 servers are named 'twin'" in err
    assert "name one by its id" in err
    assert console(capsys, "set", "MS" + "B" * 27, "description=x")[0] == 0


def test_what_descope_assigns_cannot_be_changed(applied: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = console(capsys, "set", "calendar/agent", "clientId=abc")
    assert code == 1
    assert "clientId cannot be changed in the console: Descope assigns it" in err


def test_a_change_the_api_would_refuse_is_refused(applied: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = console(capsys, "set", "calendar", "description:=5")
    assert code == 1
    assert "server.description: expected a string, got an integer" in err
    code, _, err = console(capsys, "set", "calendar", "tags-=absent")
    assert code == 1
    assert "'absent' is not in the array" in err


def test_a_value_that_is_not_json_says_how_to_write_text(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = console(capsys, "set", "calendar", "description:=hello")
    assert code == 1
    assert (
        err
        == "error: 'description:=hello': 'hello' is not JSON (for text, write description=hello; quote JSON strings)\n"
    )


def test_without_an_emulator_it_says_how_to_start_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DESCOPE_MANAGEMENT_KEY", KEY)
    monkeypatch.setenv("DESCOPE_BASE_URL", "http://127.0.0.1:9")
    code, _, err = console(capsys, "show")
    assert code == 1
    assert err.startswith("error: cannot reach an emulator at http://127.0.0.1:9 (")
    assert "start one with 'mcp-reconciler emulator'" in err
    monkeypatch.delenv("DESCOPE_BASE_URL")
    code, _, err = console(capsys, "show")
    assert code == 1
    assert "set DESCOPE_BASE_URL to the emulator's address" in err


def test_a_base_url_that_is_not_an_emulator_is_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.send_error(404)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound) as other:
        threading.Thread(target=other.serve_forever, daemon=True).start()
        try:
            monkeypatch.setenv("DESCOPE_MANAGEMENT_KEY", KEY)
            monkeypatch.setenv("DESCOPE_BASE_URL", f"http://127.0.0.1:{other.server_address[1]}")
            code, _, err = console(capsys, "show")
        finally:
            other.shutdown()
    assert code == 1
    assert "has no emulator console (HTTP 404 on /emulator/console)" in err
    assert KEY not in err


def test_a_wrong_key_is_refused_without_repeating_it(
    emulator: RunningEmulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DESCOPE_MANAGEMENT_KEY", "K2-not-the-key-of-this-emulator")
    code, _, err = console(capsys, "show")
    assert code == 1
    assert "the management key is not valid for this project" in err
    assert "K2-not" not in err


# ---- the edit syntax (pure) -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "edit"),
    [
        ("description=Hi there", {"path": "description", "set": "Hi there"}),
        ("description=", {"path": "description", "set": ""}),
        ("url=https://x.example/?a=b", {"path": "url", "set": "https://x.example/?a=b"}),
        ("skipConsentScreen:=true", {"path": "skipConsentScreen", "set": True}),
        ("logo:=null", {"path": "logo", "set": None}),
        ("tags+=hotfix", {"path": "tags", "add": "hotfix"}),
        ("tags-=hotfix", {"path": "tags", "remove": "hotfix"}),
        ('scopes+:={"name": "a"}', {"path": "scopes", "add": {"name": "a"}}),
        ("ids-:=3", {"path": "ids", "remove": 3}),
        ("dynamicRegistration.enabled:=false", {"path": "dynamicRegistration.enabled", "set": False}),
    ],
)
def test_edits_are_read_as_httpie_reads_fields(text: str, edit: dict[str, Any]) -> None:
    assert parse_edit(text) == edit


@pytest.mark.parametrize("text", ["description", "=x", "9lives=x", "a b=c"])
def test_what_is_not_an_edit_is_refused(text: str) -> None:
    with pytest.raises(UsageError, match="is not an edit"):
        parse_edit(text)


def test_targets_name_a_server_or_one_of_its_clients() -> None:
    assert target("calendar") == {"server": "calendar"}
    assert target("calendar/agent") == {"server": "calendar", "client": "agent"}
    for bad in ("/agent", "calendar/", ""):
        with pytest.raises(UsageError):
            target(bad)


# ---- the README's example -------------------------------------------------------------------------


def test_the_readme_console_example_runs_and_drift_says_what_it_promises(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Changes made by hand: `emulator-console`", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    commands = [shlex.split(line, comments=True) for line in block.splitlines()]
    assert all(words[0] == ".venv/bin/mcp-reconciler" for words in commands)
    promised = re.search(r"drift manifests/ +# (.*)", block)
    assert promised is not None
    with serving(monkeypatch, "P2MCPRECONCILERDEMO", KEY):
        monkeypatch.setenv("DESCOPE_PROJECT_ID", "P2MCPRECONCILERDEMO")
        # Secrets and journal in the test's own folder, not beside the checkout's manifests/project.yaml.
        monkeypatch.setenv("MCP_VAR_SECRETS_DIR", str(Path.cwd() / "secrets"))
        monkeypatch.setenv("MCP_RECONCILER_STATE_DIR", str(Path.cwd() / "state"))
        for words in commands:
            argv = [str(EXAMPLES) if word == "manifests/" else word for word in words[1:]]
            assert run(argv) == 0, (argv, capsys.readouterr().err)
    out = capsys.readouterr().out
    assert out.rstrip().endswith(f"Drift: {promised[1]}.")
