"""Canary: every secret the emulator issues is in its sink and nowhere else; the key is nowhere at all.

The whole life of a project runs as real processes (validate, plan in every format, a saved plan,
apply at debug verbosity, a rotation, drift, secrets check): everything they print or write, the
journal and the plan files included, is searched for every secret and for the management key.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.emulator import EmulatorConfig, RunningEmulator, running_emulator
from tests.canary_guard import fingerprint
from tests.conftest import ROOT

KEY = "K2-canary-management-key-f00d"
PROJECT = "P2MCPRECONCILERDEMO"


@pytest.fixture
def emulator() -> Iterator[RunningEmulator]:
    with running_emulator(
        EmulatorConfig(project_id=PROJECT, management_key=KEY, fault_after_commit_rate=0.2, seed=4)
    ) as handle:
        yield handle


def _secrets(emulator: RunningEmulator) -> set[str]:
    return {c["secret"] for s in emulator.state()["servers"] for c in s.get("clients", []) if c.get("secret")}


def _named(values: set[str]) -> list[str]:
    """Values as a failing assert may show them: by length and SHA-256 prefix, never in clear."""
    return sorted(fingerprint(v) for v in values)


def test_secrets_and_the_key_appear_only_where_they_belong(emulator: RunningEmulator, tmp_path: Path) -> None:
    manifests = tmp_path / "manifests"
    subprocess.run(["cp", "-r", str(ROOT / "manifests"), str(manifests)], check=True)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DESCOPE_", "GITHUB_", "MCP_"))},
        "DESCOPE_BASE_URL": emulator.base_url,
        "DESCOPE_MANAGEMENT_KEY": KEY,
        # The example manifests read ${SECRETS_DIR}: plainly, or (the newer rule) with the MCP_VAR_ prefix.
        "SECRETS_DIR": str(tmp_path / "secrets"),
        "MCP_VAR_SECRETS_DIR": str(tmp_path / "secrets"),
    }
    transcript: list[str] = []

    def cli(*args: str, expect: int = 0) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "reconciler", "-vvv", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        transcript.extend([done.stdout, done.stderr])
        assert done.returncode == expect, done.stderr

    cli("validate", "manifests")
    cli("plan", "manifests", "--out", "plan.json")
    cli("apply", "plan.json")
    issued = _secrets(emulator)
    assert len(issued) == 5
    # A rotation issues new secrets; the old ones must not leak either.
    calendar = manifests / "servers" / "calendar.yaml"
    calendar.write_text(calendar.read_text().replace('rotation: "2026-11-01"', 'rotation: "2026-12-01"'))
    for output_format in ("text", "json", "markdown"):
        cli("plan", "manifests", "--format", output_format, "--detailed-exitcode", expect=2)
        cli("drift", "manifests", "--format", output_format)
    cli("apply", "manifests", "--auto-approve")
    current = _secrets(emulator)
    issued |= current
    assert len(issued) == 6
    cli("plan", "manifests", "--out", "second-plan.json", "--detailed-exitcode")
    cli("secrets", "check", "manifests")
    cli("secrets", "check", "manifests", "--fix")

    sinks = [tmp_path / "secrets" / "mcp-clients.json", tmp_path / "secrets" / "agents.env"]
    held = "\n".join(path.read_text() for path in sinks)
    assert all(secret in held for secret in current), "every current secret is in its sink"

    written = [  # the journal included: it lives beside the Project file, in manifests/.mcp-reconciler
        p
        for p in tmp_path.rglob("*")
        if p.is_file() and p not in sinks and ("manifests" not in p.parts or ".mcp-reconciler" in p.parts)
    ]
    assert {p.name for p in written} >= {"plan.json", "second-plan.json", "journal.jsonl"}
    everything = "\n".join(transcript) + "\n".join(p.read_text(errors="replace") for p in written)
    assert "POST /v1/mgmt/mcp/server/client/create -> 200" in everything  # our debug logging was on
    assert "DEBUG httpcore" in everything  # and the HTTP libraries' own
    assert _named({secret for secret in issued if secret in everything}) == []
    assert [where for where, text in (("output", everything), ("sinks", held)) if KEY in text] == []
    assert json.loads((tmp_path / "plan.json").read_text())["checksum"].startswith("sha256:")


def test_inside_github_actions_secrets_appear_only_in_mask_announcements(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    """With faults (so error messages and retries are printed) and a broken manifest (annotations)."""
    manifests = tmp_path / "manifests"
    subprocess.run(["cp", "-r", str(ROOT / "manifests"), str(manifests)], check=True)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DESCOPE_", "GITHUB_", "MCP_"))},
        "DESCOPE_BASE_URL": emulator.base_url,
        "DESCOPE_MANAGEMENT_KEY": KEY,
        "SECRETS_DIR": str(tmp_path / "secrets"),
        "MCP_VAR_SECRETS_DIR": str(tmp_path / "secrets"),
        "GITHUB_ACTIONS": "true",
        "GITHUB_OUTPUT": str(tmp_path / "github-output"),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
        "MCP_RECONCILER_TIMEOUT": "5",
    }
    outputs: list[str] = []
    for args in (
        ["apply", "manifests", "--auto-approve"],
        ["plan", "manifests", "--format", "markdown"],
        ["drift", "manifests", "--format", "json"],
        ["secrets", "check", "manifests", "--fix"],
    ):
        done = subprocess.run(
            [sys.executable, "-m", "reconciler", "-vvv", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        outputs += [done.stdout, done.stderr]
    (manifests / "broken.yaml").write_text("kind: MCPServer\nname: x\nclients: [{name: c, scopes: [nope]}]\n")
    broken = subprocess.run(
        [sys.executable, "-m", "reconciler", "validate", "manifests"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert broken.returncode == 1
    assert "::error file=manifests/broken.yaml,line=3,col=" in broken.stdout
    outputs += [broken.stdout, broken.stderr]
    issued = _secrets(emulator)
    assert len(issued) == 5
    text = "\n".join(outputs)
    masked = {
        line.removeprefix("::add-mask::") for line in text.splitlines() if line.startswith("::add-mask::")
    }
    assert _named(issued - masked) == []
    unmasked = "\n".join(line for line in text.splitlines() if not line.startswith("::add-mask::"))
    files = "\n".join(
        p.read_text()
        for p in (
            tmp_path / "github-output",
            tmp_path / "summary.md",
            tmp_path / "manifests" / ".mcp-reconciler" / "journal.jsonl",
        )
    )
    assert _named({s for s in issued if s in unmasked or s in files}) == []
    assert [where for where, found in (("output", text), ("files", files)) if KEY in found] == []
