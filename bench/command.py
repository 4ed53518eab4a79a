"""End-to-end benchmarks of the command as a user runs it: ``mcp-reconciler`` in a subprocess, on a
generated manifest tree, each figure beside its floor measured in the same run.

- ``--help``: the console script, beside ``python -c pass`` (the interpreter's own start);
- ``validate``: beside libyaml composing the same files (PyYAML's C parser, nothing else);
- ``plan`` at 20 ms per call: beside the network ideal ``(2 + ceil(S / 8)) x latency``;
- ``apply`` of creates with a file sink under a 1,000 / 10 s limit: beside that limit.

Wall time, CPU (user + system of that process alone, from ``wait4``) and peak RSS of each run.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.manifest_tree import write_tree
from reconciler.kinds import KINDS, Kind, desired_objects
from reconciler.manifest import load_manifest
from reconciler.scopes import write_scopes

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(sys.executable).parent / "mcp-reconciler"  # the console script pip installed
COMPOSE_ONLY = """
import sys, time, yaml
from pathlib import Path
files = sorted(p for p in Path(sys.argv[1]).rglob("*.yaml"))
started = time.perf_counter()
for path in files:
    for _ in yaml.compose_all(path.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader):
        pass
print(time.perf_counter() - started)
"""


def seed_body_for(tree: Path) -> dict[str, Any]:
    """The live project that matches ``tree``: every server and client as apply would create it
    (with the ownership tag), in the API's shapes, for the emulator's seed."""
    manifest = load_manifest([str(tree)], environ={"MCP_VAR_BENCH_SINK_DIR": "/nonexistent"})
    owner = manifest.project.ownershipTag
    servers = []
    for server in desired_objects(manifest):
        fields = dict(KINDS[Kind.SERVER].settle(server.fields, None, "categorized"))
        if "approvedScopes" in fields:
            fields["approvedScopes"] = write_scopes(fields["approvedScopes"], "categorized")  # type: ignore[arg-type]
        clients = [
            {**client.fields, "tags": [*client.fields.get("tags", []), owner]}  # type: ignore[misc]
            for client in server.children
        ]
        servers.append({**fields, "tags": [*fields.get("tags", []), owner], "clients": clients})  # type: ignore[misc]
    return {"servers": servers}


def run(
    command: Sequence[str], *, env: Mapping[str, str] | None = None, expect: tuple[int, ...] = (0,)
) -> dict[str, Any]:
    """Run ``command`` once; its own wall and CPU (``wait4`` reports that child alone) and ``ru_maxrss``,
    which Linux keeps across ``execve`` (so at least the parent's size: ``probed`` reads the child's own)."""
    started = time.perf_counter()
    process = subprocess.Popen(
        list(command),
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert process.stderr is not None
    stderr = process.stderr.read()
    _pid, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    process.returncode = code
    if code not in expect:
        raise RuntimeError(
            f"{' '.join(command[:3])} exited {code}: {stderr.decode(errors='replace')[-2000:]}"
        )
    return {
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_mib": usage.ru_maxrss / 1024,
    }


def probed(arguments: Sequence[str], *, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``run`` of the command through ``bench.probe`` (the console script's own entry point), whose own
    peak memory replaces what ``wait4`` says (see bench.probe), with its fsyncs and bytes written."""
    with tempfile.TemporaryDirectory(prefix="bench-probe-") as scratch:
        out = Path(scratch) / "probe.json"
        probe_env = {**(env or {}), "BENCH_PROBE_OUT": str(out)}
        figures = run([sys.executable, "-m", "bench.probe", *arguments], env=probe_env)
        figures.update(json.loads(out.read_text()))
    return figures


def median_run(command: Sequence[str], *, times: int) -> dict[str, Any]:
    runs = [run(command) for _ in range(times)]
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


def startup(times: int) -> dict[str, Any]:
    return {
        "help": median_run([str(SCRIPT), "--help"], times=times),
        "floor": median_run([sys.executable, "-c", "pass"], times=times),
    }


def validate(tree: Path) -> dict[str, Any]:
    figures = probed(["validate", str(tree)])
    done = subprocess.run(
        [sys.executable, "-c", COMPOSE_ONLY, str(tree)], capture_output=True, text=True, check=True
    )
    figures["floor_s"] = float(done.stdout.strip())
    figures["ratio"] = figures["wall_s"] / figures["floor_s"]
    return figures


def plan(
    tree: Path, servers: int, emulator: Any, *, latency_ms: float, concurrency: int, runs: int = 3
) -> dict[str, Any]:
    """The median (by wall time) of ``runs`` plans of the same project: one run on a shared 2-core
    machine varies by a fifth from the next."""
    emulator.admin("POST", "seed", seed_body_for(tree))
    env = {
        "DESCOPE_BASE_URL": emulator.base_url,
        "DESCOPE_MANAGEMENT_KEY": emulator.key,
        "MCP_RECONCILER_RATE_LIMIT": "100000/1",  # the tool itself, not a client-side limit
        "MCP_RECONCILER_CONCURRENCY": str(concurrency),
    }
    rows = []
    for _ in range(runs):
        emulator.admin("POST", "reset", {"countersOnly": True})
        figures = probed(["plan", str(tree)], env=env)
        figures["calls"] = emulator.admin("GET", "stats")["total"]
        rows.append(figures)
    figures = sorted(rows, key=lambda row: row["wall_s"])[len(rows) // 2]
    figures["runs"] = runs
    figures["wall_s_range"] = [min(r["wall_s"] for r in rows), max(r["wall_s"] for r in rows)]
    figures["floor_s"] = (2 + math.ceil(servers / concurrency)) * latency_ms / 1000
    figures["ratio"] = figures["wall_s"] / figures["floor_s"]
    return figures


def apply(tree: Path, emulator: Any, *, rate: tuple[int, float], concurrency: int) -> dict[str, Any]:
    emulator.admin("POST", "reset", {})
    with tempfile.TemporaryDirectory(prefix="bench-apply-") as scratch:
        probe_out = Path(scratch) / "probe.json"
        env = {
            "DESCOPE_BASE_URL": emulator.base_url,
            "DESCOPE_MANAGEMENT_KEY": emulator.key,
            "MCP_RECONCILER_RATE_LIMIT": f"{rate[0]}/{rate[1]:g}",
            "MCP_RECONCILER_CONCURRENCY": str(concurrency),
            "MCP_RECONCILER_JOURNAL": str(Path(scratch) / "journal.jsonl"),
            "MCP_RECONCILER_LOCK_DIR": str(Path(scratch) / "locks"),
            "MCP_VAR_BENCH_SINK_DIR": scratch,
            "BENCH_PROBE_OUT": str(probe_out),
        }
        figures = run([sys.executable, "-m", "bench.probe", "apply", str(tree), "--auto-approve"], env=env)
        figures.update(json.loads(probe_out.read_text()))
    stats = emulator.admin("GET", "stats")
    body = seed_body_for(tree)
    secrets = sum(len(server["clients"]) for server in body["servers"])
    objects = len(body["servers"]) + secrets
    allowed = rate[0] / rate[1]
    figures.update(
        requests=stats["total"],
        rate_limited=stats["rateLimited"],
        objects=objects,
        achieved_per_s=stats["total"] / figures["wall_s"],
        allowed_per_s=allowed,
        fraction=stats["total"] / figures["wall_s"] / allowed,
        cpu_ms_per_create=1000 * figures["cpu_s"] / objects,
        fsyncs_per_secret=figures["fsyncs"] / max(1, secrets),
        bytes_per_secret=figures["write_bytes"] / max(1, secrets),
    )
    return figures


def scenarios(
    sizes: Sequence[int], *, clients: int, apply_sizes: Sequence[int], latency_ms: float, times: int
) -> dict[str, Any]:
    """Every end-to-end scenario at every size; ``emulator`` comes from bench.__main__."""
    from bench.__main__ import emulator  # noqa: PLC0415 - one emulator helper for every benchmark

    concurrency = 8
    rate = (1000, 10.0)
    results: dict[str, Any] = {"startup": startup(times), "validate": [], "plan": [], "apply": []}
    with tempfile.TemporaryDirectory(prefix="bench-trees-") as scratch:
        for servers in sizes:
            tree = Path(scratch) / f"tree-{servers}"
            write_tree(tree, servers, clients)
            label = f"{servers}x{clients}"
            results["validate"].append({"size": label, **validate(tree)})
            with emulator(latency_ms=latency_ms) as emu:
                runs = min(times, 3)
                row = plan(tree, servers, emu, latency_ms=latency_ms, concurrency=concurrency, runs=runs)
                results["plan"].append({"size": label, **row})
            if servers in apply_sizes:
                with emulator(latency_ms=0) as emu:
                    row = apply(tree, emu, rate=rate, concurrency=concurrency)
                    results["apply"].append({"size": label, **row})
    return results


def render(results: Mapping[str, Any]) -> str:
    """The tables for BENCHMARKS.md."""
    start = results["startup"]
    lines = [
        "| command | wall s | CPU s | peak RSS MiB | floor | floor s | x floor |",
        "|---|---:|---:|---:|---|---:|---:|",
        _row("--help", start["help"], "python -c pass", start["floor"]["wall_s"]),
    ]
    for row in results["validate"]:
        lines.append(_row(f"validate {row['size']}", row, "libyaml compose", row["floor_s"]))
    for row in results["plan"]:
        lines.append(
            _row(f"plan {row['size']} ({row['calls']:,} calls)", row, "network ideal", row["floor_s"])
        )
    for row in results["apply"]:
        floor = row["requests"] / row["allowed_per_s"]
        lines.append(_row(f"apply {row['size']} ({row['requests']:,} calls)", row, "rate limit", floor))
    if results["apply"]:
        lines += [
            "",
            "| apply | creates | of the limit | CPU ms per create | fsyncs per secret | bytes written "
            "per secret | 429s |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for row in results["apply"]:
            cells = [
                row["size"],
                f"{row['objects']:,}",
                f"{row['fraction']:.0%}",
                f"{row['cpu_ms_per_create']:.2f}",
                f"{row['fsyncs_per_secret']:.2f}",
                f"{row['bytes_per_secret']:,.0f}",
                str(row["rate_limited"]),
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _row(name: str, figures: Mapping[str, Any], floor_name: str, floor_s: float) -> str:
    cells = [
        name,
        f"{figures['wall_s']:.2f}",
        f"{figures['cpu_s']:.2f}",
        f"{figures['peak_rss_mib']:.0f}",
        floor_name,
        f"{floor_s:.3f}",
        f"{figures['wall_s'] / floor_s:.1f}",
    ]
    return "| " + " | ".join(cells) + " |"
