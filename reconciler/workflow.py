"""The steps behind each command, between the CLI and the pure core: connect, fetch, plan, report.

Nothing here prints or exits; the CLI turns results and errors into output and exit codes.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.api import DescopeClient
from reconciler.drift import DriftReport, detect_drift
from reconciler.errors import UsageError
from reconciler.live import fetch_live_state
from reconciler.models import Manifest
from reconciler.plan import Kind, Plan
from reconciler.planner import PlanOptions, build_plan
from reconciler.throttle import Throttle, ThrottleSettings
from reconciler.wire import LiveState


@dataclass(frozen=True)
class Connection:
    """How to reach the API in this run: credentials come from ``environ``, never from manifests."""

    environ: Mapping[str, str]
    throttle: ThrottleSettings = field(default_factory=ThrottleSettings)

    def client(self, project_id: str) -> DescopeClient:
        return DescopeClient.from_env(self.environ, project_id=project_id, throttle=Throttle(self.throttle))


async def plan_project(manifest: Manifest, connection: Connection, options: PlanOptions) -> Plan:
    """Fetch the live state the manifests need and plan against it."""
    targeted = {t.server for t in options.targets} if options.targets else None
    async with connection.client(manifest.project.projectId) as api:
        live = await fetch_live_state(api, server_names=targeted)
    check_targets(manifest, live, options)
    return build_plan(manifest, live, options)


def check_targets(manifest: Manifest, live: LiveState, options: PlanOptions) -> None:
    """Each target names a server or client that exists in the manifests or live: a typo is an error,
    not a silently empty plan."""
    for target in options.targets:
        declared = manifest.server(target.server)
        live_servers = [s for s in live.servers if s.name == target.server]
        if declared is None and not live_servers:
            raise UsageError(f"--target {target}: no server named {target.server!r} in the manifests or live")
        if target.kind is Kind.CLIENT:
            names = {c.name for c in declared.clients} if declared else set()
            names |= {c.name for s in live_servers for c in live.clients_of(s.id)}
            if target.name not in names:
                raise UsageError(f"--target {target}: no client {target.name!r} in server {target.server!r}")


async def drift_project(manifest: Manifest, connection: Connection) -> DriftReport:
    async with connection.client(manifest.project.projectId) as api:
        live = await fetch_live_state(api)
    return detect_drift(manifest, live)


def save_plan(plan: Plan, path: Path) -> None:
    """Write the plan as JSON, atomically: a reader never sees half a plan."""
    write_atomically(path, json.dumps(plan.to_json(), indent=2, ensure_ascii=False) + "\n", mode=0o644)


def write_atomically(path: Path, text: str, *, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def plan_as_json(plan: Plan) -> str:
    return json.dumps(plan.to_json(), indent=2, ensure_ascii=False) + "\n"


def drift_as_json(report: DriftReport) -> str:
    return json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n"
