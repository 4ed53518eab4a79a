"""One benchmark measurement per process: ``python -m bench.scenarios KIND < args.json`` prints JSON.

Each measurement runs in a fresh process so that its peak memory (ru_maxrss) and CPU time are its
own; the emulator runs in another process, so its work is not counted as ours.
"""

from __future__ import annotations

import asyncio
import io
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.probe import peak_rss_mib
from reconciler.descope.client import DescopeClient
from reconciler.descope.wire import LiveClient, LiveServer, LiveState
from reconciler.models import Manifest, ProjectSpec, ServerSpec
from reconciler.planner import PlanOptions, build_plan
from reconciler.throttle import Throttle, ThrottleSettings
from reconciler.workflow import ApplySettings, Connection, apply_fresh, plan_project

PROJECT = "P2BENCH"
OWNER = "managed-by:mcp-reconciler"


def live_server(i: int, *, description: str = "same") -> dict[str, Any]:
    return {
        "name": f"s{i:04}",
        "description": description,
        "tags": ["team:a", OWNER],
        "audienceWhitelist": [f"https://s{i}.mcp.example.com/mcp"],
        "approvedScopes": [{"name": "read", "description": "Read"}, {"name": "write", "optional": True}],
        "dynamicRegistration": {"enabled": True},
    }


def live_client(j: int, *, tags: tuple[str, ...] = ("owner:x",)) -> dict[str, Any]:
    return {"name": f"c{j:03}", "scopes": ["read"], "tags": [*tags, OWNER]}


def seed_body(servers: int, clients: int) -> dict[str, Any]:
    return {
        "servers": [
            {**live_server(i), "clients": [live_client(j) for j in range(clients)]} for i in range(servers)
        ]
    }


def manifest(servers: int, clients: int, *, sink_path: str, changed: bool = False) -> Manifest:
    """Manifests matching the seeded project (or, with ``changed``, differing in one field per object)."""
    project = ProjectSpec.model_validate(
        {
            "kind": "Project",
            "projectId": PROJECT,
            "defaultSink": "f",
            "sinks": {"f": {"type": "file", "path": sink_path}},
        }
    )
    specs = []
    for i in range(servers):
        data = {
            k: v
            for k, v in live_server(i, description="changed" if changed else "same").items()
            if k != "tags"
        }
        data["tags"] = ["team:a"]
        client_tags = ["owner:y"] if changed else ["owner:x"]
        data["clients"] = [
            {"name": f"c{j:03}", "scopes": ["read"], "tags": client_tags} for j in range(clients)
        ]
        specs.append(ServerSpec.model_validate({"kind": "MCPServer", **data}))
    return Manifest(project=project, servers=tuple(specs), locations={})


def connection(base_url: str, key: str, *, concurrency: int, rate: tuple[int, float]) -> Connection:
    environ = {"DESCOPE_BASE_URL": base_url, "DESCOPE_MANAGEMENT_KEY": key}
    return Connection(
        environ, ThrottleSettings(concurrency=concurrency, requests=rate[0], per_seconds=rate[1])
    )


def measure_plan(args: dict[str, Any]) -> dict[str, Any]:
    target = manifest(args["servers"], args["clients"], sink_path="unused.json")
    link = connection(args["base_url"], args["key"], concurrency=args["concurrency"], rate=(1_000_000, 1.0))
    return _timed(
        lambda: asyncio.run(plan_project(target, link, PlanOptions())),
        lambda plan: {"changes": len(plan.changes)},
    )


def measure_baseline(args: dict[str, Any]) -> dict[str, Any]:
    """A provider that reads each object with its own call, one after the other: 1 + S + C calls."""

    async def read_each() -> int:
        throttle = Throttle(ThrottleSettings(concurrency=1, requests=1_000_000, per_seconds=1.0))
        async with DescopeClient(
            project_id=PROJECT, management_key=args["key"], base_url=args["base_url"], throttle=throttle
        ) as api:
            servers = await api.load_all_servers()
            calls, limit = 1, args.get("call_limit") or 10**9
            for server in servers:
                if calls >= limit:
                    break
                await api.load_server(server.id)
                calls += 1
                for client_ref in args["client_ids"].get(server.id, []):
                    if calls >= limit:
                        break
                    await api.load_client(server.id, id=client_ref)
                    calls += 1
            return calls

    return _timed(lambda: asyncio.run(read_each()), lambda calls: {"calls_made": calls})


def measure_apply(args: dict[str, Any]) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench-apply-"))
    target = manifest(args["servers"], args["clients"], sink_path=str(work / "secrets.json"))
    link = connection(
        args["base_url"], args["key"], concurrency=args["concurrency"], rate=tuple(args["rate"])
    )
    settings = ApplySettings(journal=work / "journal.jsonl")

    def apply() -> Any:
        return asyncio.run(apply_fresh(target, link, PlanOptions(), settings, lambda _plan: True))[1]

    return _timed(
        apply, lambda result: {"done": len(result.done), "failed": len(result.failed) + len(result.skipped)}
    )


def measure_diff(args: dict[str, Any]) -> dict[str, Any]:
    """Planning alone, no network: every object differs from its manifest in one field."""
    servers, clients = args["servers"], args["clients"]
    target = manifest(servers, clients, sink_path="unused.json", changed=True)
    live = LiveState(
        tuple(LiveServer.from_wire({"id": f"MS{i}", **live_server(i)}) for i in range(servers)),
        {
            f"MS{i}": tuple(
                LiveClient.from_wire(
                    {"id": f"C{i}-{j}", "clientId": "x", "mcpServerId": f"MS{i}", **live_client(j)}
                )
                for j in range(clients)
            )
            for i in range(servers)
        },
    )
    if args.get("profile"):
        import cProfile  # noqa: PLC0415 - only when a profile is asked for
        import pstats  # noqa: PLC0415

        profiler = cProfile.Profile()
        profiler.runcall(build_plan, target, live)
        buffer = io.StringIO()
        pstats.Stats(profiler, stream=buffer).sort_stats("cumulative").print_stats(14)
        return {"profile": buffer.getvalue()}
    return _timed(lambda: build_plan(target, live), lambda plan: {"changes": len(plan.changes)})


def _timed(work: Any, describe: Any) -> dict[str, Any]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    figures = {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}
    peak = peak_rss_mib()  # its own: ru_maxrss would include the parent's size (kept across execve)
    if peak is None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    figures["peak_rss_mib"] = peak
    return {**figures, **describe(result)}


KINDS = {"plan": measure_plan, "baseline": measure_baseline, "apply": measure_apply, "diff": measure_diff}

if __name__ == "__main__":
    print(json.dumps(KINDS[sys.argv[1]](json.loads(sys.stdin.read()))))
