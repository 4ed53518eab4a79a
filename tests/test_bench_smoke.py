"""The benchmark script runs end to end at a tiny size, so it cannot rot (figures live in BENCHMARKS.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def test_the_benchmark_runs_at_a_tiny_size(tmp_path: Path) -> None:
    tracked = ROOT / "bench" / "results.json"
    before = tracked.read_bytes() if tracked.exists() else None
    done = subprocess.run(  # no --out: a smoke run writes to the temporary folder
        [sys.executable, "-m", "bench", "--smoke"],
        cwd=ROOT,
        env={**os.environ, "TMPDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = tmp_path / "mcp-reconciler-bench-smoke.json"
    assert (tracked.read_bytes() if tracked.exists() else None) == before  # the tracked figures stay
    results = json.loads(out.read_text())
    ours, single, baseline = results["plan"]
    # This tool: servers/all and resources/load (both surfaces), then one search per server.
    assert (ours["calls"], single["calls"], baseline["calls"]) == (2 + 3, 2 + 3, 1 + 3 + 3 * 2)
    assert results["apply"]["done"] == 12  # the server is seeded and in sync; its 12 clients are created
    assert results["apply"]["failed"] == 0
    assert results["diff"]["changes"] == 20 + 20 * 5
    assert "build_plan" in results["profile"]
    assert "| 3x2 | this tool |" in done.stdout
    # The command as a user runs it, on a generated tree, each figure beside its floor.
    command = results["command"]
    assert command["startup"]["help"]["wall_s"] > command["startup"]["floor"]["wall_s"] > 0
    (validated,) = command["validate"]
    assert validated["floor_s"] > 0
    (planned,) = command["plan"]
    assert planned["calls"] == 2 + 2  # two servers: servers/all, resources/load, a search each
    (applied,) = command["apply"]
    assert applied["objects"] == 2 + 2 * 2  # every server and client created ...
    assert applied["requests"] >= applied["objects"]
    assert applied["fsyncs"] > 0  # ... with its secrets written through the file sink
    assert "| validate 2x2 |" in done.stdout
