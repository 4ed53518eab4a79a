"""``mcp-reconciler demo``: the README's first command, end to end, as a newcomer runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import ROOT


def test_the_demo_walks_through_every_step_without_network_or_credentials(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DESCOPE_", "GITHUB_", "SECRETS_"))}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "reconciler", "demo", "--keep", str(tmp_path / "kept")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert elapsed < 60
    out = done.stdout
    steps = [line for line in out.splitlines() if line.startswith("Step ")]
    assert steps == [
        "Step 1 of 6: Check the manifests offline.",
        "Step 2 of 6: Compare them with the live project.",
        "Step 3 of 6: Make the project match.",
        "Step 4 of 6: A change made by hand, outside Git.",
        "Step 5 of 6: What a scheduled drift check reports.",
        "Step 6 of 6: The next plan puts the manifests back in charge.",
    ]
    assert "Plan: 9 to create, 0 to update, 0 to delete, 0 secrets to rotate." in out
    assert (
        "9 created, 0 updated, 0 adopted, 0 deleted, 0 secrets rotated; 0 failed, 0 skipped; 5 secrets delivered."
        in out
    )
    assert 'server "playground"' in out
    assert "1 dynamically registered client (not drift)." in out
    assert "Drift: 1 changed, 0 missing, 0 orphaned, 1 unmanaged." in out
    assert out.count("Plan: 0 to create, 1 to update, 0 to delete, 0 secrets to rotate.") == 1
    held = json.loads((tmp_path / "kept" / "secrets" / "mcp-clients.json").read_text())
    secrets = [entry["clientSecret"] for entry in held.values()]
    assert len(secrets) == 4
    assert not any(secret in out + done.stderr for secret in secrets)
    assert (tmp_path / "kept" / "journal.jsonl").exists()
