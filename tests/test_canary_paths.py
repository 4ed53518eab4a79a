"""Canary, continued: resumed deliveries, adoption and export also keep every secret in its sink only.

As in tests/test_secret_canary.py, every step runs as a real process at ``-vvv`` against an emulator;
everything printed and every file written outside the sinks is searched for every secret the emulator
ever held, and everything (the sinks too) for the management key. Each path runs twice: plainly, and
as inside GitHub Actions, where a secret may appear on an ``::add-mask::`` line and nowhere else.

- Resumed deliveries: a ``command`` sink whose program echoes the secret it is given to its stdout
  and stderr (which mcp-reconciler must discard), and which first fails every delivery (apply exits
  3, the journal holds them as undelivered), then SIGKILLs mcp-reconciler in the middle of resuming
  them, and again in the middle of delivering a rotated secret; each following apply resumes what
  the killed run left open, from the current secret, without rotating again.
- Adoption: servers and clients made by hand (no ownership tag, one secret chosen by the "person",
  one dynamically registered client), ``export --out DIR --adopt``, a saved plan applied, which
  adopts them and delivers each current secret; a dynamically registered client's secret goes nowhere.
- ``secrets check`` and ``secrets check --fix`` after a secret was removed from its sink.
- The demo, in process at ``-vvv``: its management key is random and never shown, so it is taken from
  the emulator it starts (as the canary guard of tests/canary_guard.py takes it, and every secret).

Failures name secrets by length and SHA-256 prefix only, never by value.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from reconciler.cli import demo as demo_command
from reconciler.cli import run
from reconciler.emulator import EmulatorConfig, RunningEmulator, running_emulator
from reconciler.emulator import store as emulator_store
from reconciler.journal import open_deliveries
from reconciler.tags import ROTATION_PREFIX
from tests.canary_guard import fingerprint, redact
from tests.conftest import EXAMPLES

KEY = "K2-canary-paths-management-key-3b7e"
PROJECT = "P2MCPCANARYPATHS"
OWNER = "managed-by:mcp-reconciler"
SEEDED_SECRET = "hand-made-secret-chosen-by-a-person-9f2c41"
KILLED = -signal.SIGKILL

# The command sink's program: careless on purpose (it echoes what it is given), and on demand broken
# (exits 1) or murderous (SIGKILLs mcp-reconciler, its parent, once, before storing anything).
HOOK = """
import os, pathlib, signal, sys

state = pathlib.Path(sys.argv[1])
secret = sys.stdin.read().strip()
print("hook got", secret)
print("hook got", secret, file=sys.stderr)
mode = (state / "mode").read_text().strip()
if mode == "fail":
    print("hook: refusing", secret, file=sys.stderr)
    sys.exit(1)
if mode == "kill":
    parent = os.getppid()
    cmdline = pathlib.Path(f"/proc/{parent}/cmdline").read_bytes().split(b"\\0")
    try:
        first = os.open(state / "killed", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        sys.exit(1)  # another delivery of the same run: its parent is dying already
    os.close(first)
    if parent > 1 and b"reconciler" in cmdline:
        os.kill(parent, signal.SIGKILL)
    sys.exit(1)
store = state / "store"
store.mkdir(exist_ok=True)
(store / os.environ["MCP_SECRET_KEY"].replace("/", "__")).write_text(secret)
"""


@pytest.fixture
def emulator() -> Iterator[RunningEmulator]:
    with running_emulator(EmulatorConfig(project_id=PROJECT, management_key=KEY)) as handle:
        yield handle


def live_secrets(emulator: RunningEmulator) -> dict[str, str]:
    """``server/client`` -> current secret, for every client the emulator holds."""
    return {
        f"{s['name']}/{c['name']}": c["secret"]
        for s in emulator.state()["servers"]
        for c in s.get("clients", [])
        if c.get("secret")
    }


def found(text: str, values: set[str]) -> list[str]:
    """The values that occur in ``text``, named by fingerprint (a failing assert must not show them)."""
    return sorted(fingerprint(v) for v in values if v in text)


@dataclass
class Project:
    """A working directory, the environment of every run, and all that the runs printed."""

    folder: Path
    emulator: RunningEmulator
    github: bool
    env: dict[str, str] = field(default_factory=dict, repr=False)
    transcript: list[str] = field(default_factory=list, repr=False)
    issued: set[str] = field(default_factory=set, repr=False)  # every secret the emulator ever held

    def __post_init__(self) -> None:
        secrets_dir = str(self.folder / "secrets")
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("DESCOPE_", "GITHUB_", "MCP_"))},
            "DESCOPE_BASE_URL": self.emulator.base_url,
            "DESCOPE_MANAGEMENT_KEY": KEY,
            "DESCOPE_PROJECT_ID": PROJECT,
            # Manifests read ${SECRETS_DIR}: from the plain variable, or (the newer rule) the prefixed one.
            "SECRETS_DIR": secrets_dir,
            "MCP_VAR_SECRETS_DIR": secrets_dir,
        }
        if self.github:
            self.env |= {
                "GITHUB_ACTIONS": "true",
                "GITHUB_OUTPUT": str(self.folder / "github-output"),
                "GITHUB_STEP_SUMMARY": str(self.folder / "summary.md"),
            }

    def cli(self, *args: str, expect: int | None = 0) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "reconciler", "-vvv", *args],
            cwd=self.folder,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        self.transcript += [done.stdout, done.stderr]
        self.issued |= set(live_secrets(self.emulator).values())
        if expect is not None:
            shown = redact(done.stderr[-3000:], self.issued, [KEY])
            assert done.returncode == expect, f"{args}: exit {done.returncode}\n{shown}"
        return done

    def search(self, sinks: list[Path]) -> None:
        """No secret in anything printed or written outside ``sinks``; the key nowhere at all."""
        self.issued |= set(live_secrets(self.emulator).values())
        printed = "\n".join(self.transcript)
        files = [p for p in self.folder.rglob("*") if p.is_file()]
        written = {p: p.read_text(errors="replace") for p in files if p not in sinks}
        held = "\n".join(p.read_text(errors="replace") for p in files if p in sinks)
        assert "DEBUG httpcore" in printed  # the libraries' debug logging was on, and searched
        unmasked = "\n".join(line for line in printed.splitlines() if not line.startswith("::add-mask::"))
        assert found(unmasked, self.issued) == []
        leaked = {str(p.relative_to(self.folder)): found(text, self.issued) for p, text in written.items()}
        assert {name: values for name, values in leaked.items() if values} == {}
        assert found(printed + "\n".join(written.values()) + held, {KEY}) == []
        if self.github:
            masked = {
                line.removeprefix("::add-mask::")
                for line in printed.splitlines()
                if line.startswith("::add-mask::")
            }
            unannounced = {v for v in self.issued if v in held} - masked
            assert sorted(fingerprint(v) for v in unannounced) == []  # every delivered secret was masked

    def journal_open(self) -> list[tuple[str, str, str]]:
        journal = self.folder / "manifests" / ".mcp-reconciler" / "journal.jsonl"  # beside the Project file
        return sorted((d.event, d.server, d.client) for d in open_deliveries(journal, PROJECT))


@pytest.fixture(params=[False, True], ids=["plain", "github-actions"])
def project(request: pytest.FixtureRequest, emulator: RunningEmulator, tmp_path: Path) -> Project:
    return Project(tmp_path, emulator, github=request.param)


def write_resumable_manifests(folder: Path) -> Path:
    hook_state = folder / "hook"
    hook_state.mkdir()
    (folder / "hook.py").write_text(HOOK)
    command = json.dumps([sys.executable, str(folder / "hook.py"), str(hook_state)])
    manifests = folder / "manifests"
    manifests.mkdir()
    (manifests / "project.yaml").write_text(
        f"kind: Project\nprojectId: {PROJECT}\ndefaultSink: local\nsinks:\n"
        "  local: {type: file, path: '${SECRETS_DIR}/clients.json'}\n"
        f"  hook: {{type: command, command: {command}, timeoutSeconds: 30}}\n"
    )
    (manifests / "servers.yaml").write_text(
        "kind: MCPServer\nname: alpha\napprovedScopes: [{name: read}]\nclients:\n"
        "  - {name: a1, scopes: [read], secret: {rotation: r1}}\n"
        "  - {name: a2, scopes: [read], secret: {sink: hook, rotation: r1}}\n"
        "---\n"
        "kind: MCPServer\nname: beta\napprovedScopes: [{name: read}]\nclients:\n"
        "  - {name: b1, scopes: [read], secret: {sink: hook}}\n"
        "  - {name: b2, scopes: [read]}\n"
    )
    return manifests


def hook_mode(folder: Path, mode: str) -> None:
    (folder / "hook" / "mode").write_text(mode)
    (folder / "hook" / "killed").unlink(missing_ok=True)


def hook_holds(folder: Path) -> dict[str, str]:
    store = folder / "hook" / "store"
    return {p.name.replace("__", "/"): p.read_text() for p in store.iterdir()} if store.exists() else {}


def test_resumed_deliveries_keep_secrets_in_their_sinks(project: Project) -> None:
    folder, emulator = project.folder, project.emulator
    manifests = write_resumable_manifests(folder)
    project.cli("validate", "manifests")

    # 1. The hook fails every delivery: the clients exist, two secrets are recorded as undelivered.
    hook_mode(folder, "fail")
    failed = project.cli("apply", "manifests", "--auto-approve", expect=3)
    assert 'secret not delivered: client "alpha/a2"' in failed.stderr
    assert "exited with code 1 (its output is not shown" in failed.stderr
    assert project.journal_open() == [("undelivered", "alpha", "a2"), ("undelivered", "beta", "b1")]
    project.cli("secrets", "check", "manifests", expect=None)  # a command sink cannot be read back

    # 2. The next apply resumes them, and the hook SIGKILLs it in the middle of a delivery.
    hook_mode(folder, "kill")
    project.cli("apply", "manifests", "--auto-approve", expect=KILLED)
    assert hook_holds(folder) == {}
    assert {client for _, _, client in project.journal_open()} == {"a2", "b1"}

    # 3. A saved plan (nothing to change) applied from the same folder: the open deliveries finish first.
    hook_mode(folder, "ok")
    project.cli("plan", "manifests", "--out", "plan.json")
    project.cli("apply", "plan.json")
    assert project.journal_open() == []
    live = live_secrets(emulator)
    assert found("\n".join(hook_holds(folder).values()), {live["alpha/a2"], live["beta/b1"]}) == sorted(
        fingerprint(v) for v in (live["alpha/a2"], live["beta/b1"])
    )

    # 4. A rotation killed in the middle of its delivery, then resumed: the new secret, rotated once.
    servers = manifests / "servers.yaml"
    servers.write_text(
        servers.read_text().replace("{sink: hook, rotation: r1}", "{sink: hook, rotation: r2}")
    )
    before = live_secrets(emulator)["alpha/a2"]
    hook_mode(folder, "kill")
    project.cli("apply", "manifests", "--auto-approve", expect=KILLED)
    assert project.journal_open() == [("rotate-started", "alpha", "a2")]
    hook_mode(folder, "ok")
    project.cli("apply", "manifests", "--auto-approve")
    assert project.journal_open() == []
    after = live_secrets(emulator)["alpha/a2"]
    assert after != before
    assert hook_holds(folder)["alpha/a2"] == after  # (compares; a failure would show only a diff)
    assert emulator.stats()["requests"].get("server/client/secret/rotate", 0) == 1
    alpha = next(s for s in emulator.state()["servers"] if s["name"] == "alpha")
    a2 = next(c for c in alpha["clients"] if c["name"] == "a2")
    assert ROTATION_PREFIX + "r2" in a2["tags"]

    # 5. A secret removed from its sink: check finds it missing, --fix delivers it again.
    sink = folder / "secrets" / "clients.json"
    held: dict[str, Any] = json.loads(sink.read_text())
    del held["beta/b2"]
    sink.write_text(json.dumps(held))
    checked = project.cli("secrets", "check", "manifests", expect=3)
    assert 'missing  client "beta/b2" -> sink local' in checked.stdout
    project.cli("secrets", "check", "manifests", "--fix")
    assert json.loads(sink.read_text())["beta/b2"]["clientSecret"] == live_secrets(emulator)["beta/b2"]
    project.cli("drift", "manifests", "--detailed-exitcode")
    project.cli("plan", "manifests", "--detailed-exitcode")

    assert len(project.issued) == 5  # four clients, one rotated
    project.search(sinks=[sink, *(folder / "hook" / "store").iterdir()])


def test_adoption_and_export_keep_secrets_in_their_sinks(project: Project) -> None:
    folder, emulator = project.folder, project.emulator
    emulator.seed(
        {
            "servers": [
                {
                    "name": "legacy-tools",
                    "description": "made by hand in the console",
                    "tags": ["team:ops"],
                    "approvedScopes": [{"name": "tools:read"}, {"name": "tools:write"}],
                    "clients": [
                        {"name": "cron", "scopes": ["tools:read"], "secret": SEEDED_SECRET},
                        {"name": "ops-bot", "scopes": ["tools:read", "tools:write"], "tags": ["owner:ops"]},
                        {"name": "someones-app", "scopes": ["tools:read"], "registrationType": "dcr"},
                    ],
                },
                {"name": "notes", "approvedScopes": [{"name": "notes:read"}], "clients": [{"name": "n"}]},
            ]
        }
    )
    seeded = live_secrets(emulator)
    assert seeded["legacy-tools/cron"] == SEEDED_SECRET

    # Export: the manifests of what exists, each unmanaged object marked for adoption.
    exported = project.cli("export", "--out", "exported", "--adopt")
    assert "Exported 2 servers and 3 clients to exported" in exported.stdout
    texts = "\n".join(p.read_text() for p in sorted((folder / "exported").rglob("*.yaml")))
    assert texts.count("adopt: true") == 5
    assert "someones-app" not in texts
    project.cli("validate", "exported")

    # A saved plan, applied from the same folder: adopts, and delivers each current secret.
    project.cli("plan", "exported", "--out", "plan.json")
    applied = project.cli("apply", "plan.json")
    assert "0 created, 0 updated, 5 adopted, 0 deleted, 0 secrets rotated" in applied.stdout
    assert "3 secrets delivered" in applied.stdout
    sink = folder / "exported" / ".secrets" / "mcp-clients.json"
    held = json.loads(sink.read_text())
    assert sorted(held) == ["legacy-tools/cron", "legacy-tools/ops-bot", "notes/n"]
    for name, entry in held.items():
        assert entry["clientSecret"] == seeded[name], name  # the current secret: nothing was rotated
    assert emulator.stats()["requests"].get("server/client/secret/rotate", 0) == 0
    assert found(sink.read_text(), {seeded["legacy-tools/someones-app"]}) == []  # an end user's: not ours
    assert all(OWNER in s["tags"] for s in emulator.state()["servers"])

    # Managed now: every secret is where it belongs, nothing drifted, a new export needs no adoption.
    project.cli("secrets", "check", "exported")
    held["notes/n"]["clientSecret"] = "replaced-by-someone-else-0000"
    sink.write_text(json.dumps(held))
    project.cli("secrets", "check", "exported", expect=3)
    project.cli("secrets", "check", "exported", "--fix")
    assert json.loads(sink.read_text())["notes/n"]["clientSecret"] == seeded["notes/n"]
    project.cli("drift", "exported", "--detailed-exitcode")
    again = project.cli("export", "--out", "again")
    assert "adopt" not in "\n".join(p.read_text() for p in (folder / "again").rglob("*.yaml"))
    assert "warning" not in again.stderr.lower()

    assert set(seeded.values()) <= project.issued
    project.search(sinks=[sink])


def test_the_demo_at_debug_verbosity_shows_neither_its_key_nor_a_secret(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    keys: list[str] = []
    secrets: list[str] = []

    def config(**settings: Any) -> EmulatorConfig:
        keys.append(settings["management_key"])
        return EmulatorConfig(**settings)

    def issued() -> str:
        secrets.append(secret := issue())
        return secret

    issue = emulator_store.new_secret
    monkeypatch.setattr(demo_command, "EmulatorConfig", config)
    monkeypatch.setattr(emulator_store, "new_secret", issued)
    caplog.set_level(logging.DEBUG)  # the root logger, as -vvv sets it outside pytest
    ours = logging.getLogger("reconciler")
    level = ours.level
    try:
        assert run(["-vvv", "demo", str(EXAMPLES), "--keep", str(tmp_path / "kept")]) == 0
    finally:
        ours.setLevel(level)  # -vvv set it for the process; the next tests run as they would have
    out, err = capsys.readouterr()
    shown = out + err + "\n".join(r.getMessage() for r in caplog.records)
    assert "Client secrets went to agents.env, mcp-clients.json" in out
    assert "POST /v1/mgmt/mcp/server/client/create -> 200" in shown  # debug logging was on
    assert len(keys) == 1
    assert len(secrets) == 6  # five delivered, and the hand-made server's dynamically registered client
    assert found(shown, {*keys, *secrets}) == []
    written = "\n".join(p.read_text() for p in (tmp_path / "kept").rglob("*") if p.is_file())
    assert found(written, {*keys}) == []
