"""The steps behind each command, between the CLI and the pure core: connect, fetch, plan, report.

Nothing here prints or exits; the CLI turns results and errors into output and exit codes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.api import DescopeClient
from reconciler.applier import Applier, Progress
from reconciler.delivery import Courier, Masker, resume
from reconciler.drift import DriftReport, detect_drift
from reconciler.errors import ReconcilerError, SavedPlanError, StalePlanError, UsageError
from reconciler.files import write_atomically
from reconciler.journal import Journal, open_deliveries
from reconciler.live import FetchProgress, fetch_live_state
from reconciler.models import ClientSpec, Manifest, secret_key
from reconciler.plan import FORMAT_VERSION, ApplyResult, Kind, Plan, checksum
from reconciler.planner import PlanOptions, build_plan
from reconciler.schemas import validator_for_document
from reconciler.sinks import build_sinks, close_sinks
from reconciler.sinks.base import SecretRecord, SinkError
from reconciler.stale import moved_since
from reconciler.throttle import Throttle, ThrottleSettings
from reconciler.wire import LiveState

DEFAULT_TIMEOUT = 30.0  # seconds per API call; MCP_RECONCILER_TIMEOUT overrides it


@dataclass(frozen=True)
class Connection:
    """How to reach the API in this run: credentials come from ``environ``, never from manifests."""

    environ: Mapping[str, str]
    throttle: ThrottleSettings = field(default_factory=ThrottleSettings)
    fetch_progress: FetchProgress | None = None

    async def live_state(self, api: DescopeClient, server_names: set[str] | None = None) -> LiveState:
        return await fetch_live_state(api, server_names=server_names, progress=self.fetch_progress)

    def client(self, project_id: str) -> DescopeClient:
        timeout = self.environ.get("MCP_RECONCILER_TIMEOUT", "")
        try:
            seconds = float(timeout) if timeout else DEFAULT_TIMEOUT
        except ValueError:
            raise UsageError(f"MCP_RECONCILER_TIMEOUT={timeout!r} is not a number of seconds") from None
        return DescopeClient.from_env(
            self.environ, project_id=project_id, throttle=Throttle(self.throttle), timeout=seconds
        )


async def plan_project(manifest: Manifest, connection: Connection, options: PlanOptions) -> Plan:
    """Fetch the live state the manifests need and plan against it."""
    targeted = {t.server for t in options.targets} if options.targets else None
    async with connection.client(manifest.project.projectId) as api:
        live = await connection.live_state(api, targeted)
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
        live = await connection.live_state(api)
    return detect_drift(manifest, live)


def save_plan(plan: Plan, path: Path) -> None:
    """Write the plan as JSON, atomically: a reader never sees half a plan."""
    write_atomically(path, json.dumps(plan.to_json(), indent=2, ensure_ascii=False) + "\n", mode=0o644)


def plan_as_json(plan: Plan) -> str:
    return json.dumps(plan.to_json(), indent=2, ensure_ascii=False) + "\n"


def drift_as_json(report: DriftReport) -> str:
    return json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n"


def load_saved_plan(path: Path) -> Plan:
    """Read a plan saved by ``plan --out``; refuse one that is truncated, edited or of another version."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SavedPlanError(f"{path}: cannot read the saved plan ({exc.__class__.__name__})") from None
    try:
        document = json.loads(text)
    except ValueError:
        raise SavedPlanError(
            f"{path}: not a complete JSON document (truncated?); run plan --out again"
        ) from None
    if not isinstance(document, dict):
        raise SavedPlanError(f"{path}: not a saved plan")
    if document.get("format_version") != FORMAT_VERSION:
        version = document.get("format_version")
        raise SavedPlanError(
            f"{path}: plan format version {version!r}; this mcp-reconciler reads {FORMAT_VERSION}"
        )
    if document.get("checksum") != checksum(document):
        raise SavedPlanError(
            f"{path}: the checksum does not match: the plan was edited or damaged; run plan again"
        )
    errors = sorted(validator_for_document("plan.schema.json").iter_errors(document), key=str)
    if errors:
        where = "/".join(str(p) for p in errors[0].absolute_path)
        raise SavedPlanError(
            f"{path}: not a valid saved plan (at {where or 'the top'}: {errors[0].message[:120]})"
        )
    return Plan.from_json(document)


@dataclass(frozen=True)
class ApplySettings:
    """What an apply needs besides the plan: where to journal, how to mask, how to show progress."""

    journal: Path
    mask: Masker | None = None
    progress: Progress | None = None


async def apply_saved(plan: Plan, connection: Connection, settings: ApplySettings) -> ApplyResult:
    """Apply exactly a saved plan, after finishing open deliveries and checking it is not stale."""
    sinks = build_sinks(plan.sinks, connection.environ)
    journal = Journal(settings.journal, project=plan.project_id)
    try:
        courier = Courier(sinks, journal, mask=settings.mask)
        async with connection.client(plan.project_id) as api:
            await finish_open_deliveries(api, courier)
            touched = {change.server or change.name for change in plan.changes}
            live = await connection.live_state(api, touched)
            moved = moved_since(plan, live)
            if moved:
                raise StalePlanError(moved)
            return await Applier(
                api, plan, live, sinks=sinks, courier=courier, progress=settings.progress
            ).run()
    finally:
        journal.close()
        close_sinks(sinks)


async def apply_fresh(
    manifest: Manifest,
    connection: Connection,
    options: PlanOptions,
    settings: ApplySettings,
    confirm: Callable[[Plan], bool],
) -> tuple[Plan, ApplyResult | None]:
    """Finish open deliveries, plan, ask ``confirm``, apply. No result when declined or nothing to do."""
    project = manifest.project
    sinks = build_sinks(project.sink_settings(), connection.environ)
    journal = Journal(settings.journal, project=project.projectId)
    try:
        courier = Courier(sinks, journal, mask=settings.mask)
        async with connection.client(project.projectId) as api:
            resumed = await finish_open_deliveries(api, courier)
            targeted = {t.server for t in options.targets} if options.targets else None
            live = await connection.live_state(api, targeted)
            check_targets(manifest, live, options)
            plan = build_plan(manifest, live, options)
            if not plan.changes:
                return plan, _merged(resumed, None)
            if not confirm(plan):
                return plan, None
            applier = Applier(api, plan, live, sinks=sinks, courier=courier, progress=settings.progress)
            return plan, _merged(resumed, await applier.run())
    finally:
        journal.close()
        close_sinks(sinks)


async def finish_open_deliveries(api: DescopeClient, courier: Courier) -> ApplyResult:
    """Deliver the secrets a previous run issued but did not get into their sinks; the result
    counts them, so a run that still could not deliver one exits 3 like the run that issued it."""
    result = ApplyResult()
    for item in open_deliveries(courier.journal.path, courier.journal.project):
        outcome = await resume(api, courier, item)
        if outcome is None:
            continue
        if outcome.delivered:
            result.delivered += 1
        else:
            result.undelivered.append((f'client "{item.server}/{item.client}"', outcome.reason))
    return result


def _merged(resumed: ApplyResult, result: ApplyResult | None) -> ApplyResult | None:
    """The applier's result with the resumed deliveries added; None when nothing happened at all."""
    if result is None:
        return resumed if resumed.delivered or resumed.undelivered else None
    result.delivered += resumed.delivered
    result.undelivered[:0] = resumed.undelivered
    return result


def check_sinks(plan: Plan, environ: Mapping[str, str]) -> list[str]:
    """Problems with the sinks the plan's new secrets need: reachability and permission."""
    needed = {c.secret.sink for c in plan.changes if c.secret is not None and c.issues_secret}
    if not needed:
        return []
    try:
        sinks = build_sinks({n: s for n, s in plan.sinks.items() if n in needed}, environ)
    except SinkError as exc:
        return [str(exc)]
    problems = []
    try:
        for name in sorted(needed):
            try:
                sinks[name].check()
            except SinkError as exc:
                problems.append(str(exc))
            except KeyError:
                problems.append(f"sink {name!r} is not declared")
    finally:
        close_sinks(sinks)
    return problems


@dataclass(frozen=True)
class SecretStatus:
    """Whether one managed client's current secret is in its sink."""

    address: str
    sink: str
    state: str  # a Verification value, "fixed", "absent" (client not live) or "error"
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.state in ("match", "unreadable", "fixed")


async def check_secrets(
    manifest: Manifest, connection: Connection, *, fix: bool, journal: Path
) -> list[SecretStatus]:
    """Verify every managed client's current secret against its sink; with ``fix``, deliver it again."""
    project = manifest.project
    sinks = build_sinks(project.sink_settings(), connection.environ)
    log = Journal(journal, project=project.projectId)
    try:
        courier = Courier(sinks, log)
        async with connection.client(project.projectId) as api:
            live = await connection.live_state(api, {s.name for s in manifest.servers})
            work = [
                _check_one(api, courier, live, project.ownershipTag, spec, fix=fix)
                for spec in _clients(manifest)
            ]
            return list(await asyncio.gather(*work))
    finally:
        log.close()
        close_sinks(sinks)


def _clients(manifest: Manifest) -> list[tuple[str, ClientSpec, str]]:
    default = manifest.project.defaultSink or ""
    return [
        (server.name, client, client.secret.sink or default)
        for server in manifest.servers
        for client in server.clients
    ]


async def _check_one(
    api: DescopeClient,
    courier: Courier,
    live: LiveState,
    owner: str,
    entry: tuple[str, ClientSpec, str],
    *,
    fix: bool,
) -> SecretStatus:
    server_name, spec, sink_name = entry
    address = f'client "{server_name}/{spec.name}"'
    server = next((s for s in live.servers if s.name == server_name and owner in s.tags), None)
    client = next((c for c in live.clients_of(server.id) if c.name == spec.name), None) if server else None
    if server is None or client is None or owner not in client.tags:
        return SecretStatus(address, sink_name, "absent", "not a managed client in the live project yet")
    record = SecretRecord(server_name, spec.name, client.client_id, secret_key(server_name, spec))
    try:
        current = await api.get_client_secret(server.id, client.id)
        state = (await asyncio.to_thread(courier.sinks[sink_name].verify, record, current)).value
    except (ReconcilerError, SinkError) as exc:
        return SecretStatus(address, sink_name, "error", str(exc))
    if fix and state != "match":
        outcome = await courier.hand_off(record, sink_name, current)
        return SecretStatus(address, sink_name, "fixed" if outcome.delivered else "error", outcome.reason)
    return SecretStatus(address, sink_name, state)


async def fetch_for_export(connection: Connection, project_id: str) -> LiveState:
    async with connection.client(project_id) as api:
        return await connection.live_state(api)
