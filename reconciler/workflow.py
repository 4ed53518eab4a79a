"""The steps behind each command, between the CLI and the pure core: connect, fetch, plan, report.

Nothing here prints or exits; the CLI turns results and errors into output and exit codes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from reconciler.applier import Applier, Progress
from reconciler.delivery import Courier, Handoff, Masker, Outcome, resume_all
from reconciler.descope.client import DescopeClient
from reconciler.descope.transport import resolve_base_url
from reconciler.descope.wire import FetchListener, LiveState
from reconciler.drift import DriftReport, detect_drift
from reconciler.errors import ReconcilerError, SavedPlanError, StalePlanError, UsageError
from reconciler.files import write_atomically
from reconciler.finding_locations import locate, object_location
from reconciler.findings import (
    SEVERITIES,
    Finding,
    JudgedAhead,
    Rule,
    Severity,
    at_or_above,
    compare,
    evaluate,
    ordered,
)
from reconciler.journal import Journal, OpenDelivery, open_deliveries
from reconciler.journal_retention import compact_quietly, keep_runs
from reconciler.kinds import Desired
from reconciler.live import FetchProgress, fetch_live_state
from reconciler.lock import LockSettings, ProjectLock
from reconciler.models import ClientSpec, Manifest, secret_key
from reconciler.plan import FORMAT_VERSION, ApplyResult, Plan, checksum, signature
from reconciler.planner import PlanOptions, PlanWhileReading, Target, build_plan, check_targets
from reconciler.policy import TeamPolicy, policy_of
from reconciler.prefetch import Prefetch, prefetching
from reconciler.provenance import differences, manifest_digests, unsafe_path
from reconciler.rule_plugins import all_rules
from reconciler.schemas import validator_for_document
from reconciler.sinks import build_sinks, close_sinks
from reconciler.sinks.base import SecretRecord, SecretSink, SinkError
from reconciler.stale import moved_since, plan_differences
from reconciler.subjects import manifest_subjects, plan_subjects
from reconciler.textsafe import json_visible
from reconciler.throttle import Throttle, ThrottleSettings

DEFAULT_TIMEOUT = 30.0  # seconds per API call; MCP_RECONCILER_TIMEOUT overrides it
PLAN_KEY_VARIABLE = "MCP_RECONCILER_PLAN_KEY"
MIN_PLAN_KEY_LENGTH = 16


@dataclass(frozen=True)
class Connection:
    """How to reach the API in this run: credentials come from ``environ``, never from manifests."""

    environ: Mapping[str, str]
    throttle: ThrottleSettings = field(default_factory=ThrottleSettings)
    fetch_progress: FetchProgress | None = None

    async def live_state(
        self,
        api: DescopeClient,
        server_names: set[str] | None = None,
        listener: FetchListener | None = None,
    ) -> LiveState:
        return await fetch_live_state(
            api, server_names=server_names, progress=self.fetch_progress, listener=listener
        )

    async def fetch(
        self, project_id: str, server_names: set[str] | None = None, listener: FetchListener | None = None
    ) -> LiveState:
        """The live state of the project (only of ``server_names``, when given), over a client of its own."""
        async with self.client(project_id) as api:
            return await self.live_state(api, server_names, listener)

    def client(self, project_id: str) -> DescopeClient:
        timeout = self.environ.get("MCP_RECONCILER_TIMEOUT", "").strip()
        try:
            seconds = float(timeout) if timeout else DEFAULT_TIMEOUT
        except ValueError:
            seconds = -1.0
        if not 0 < seconds <= DescopeClient.MAX_TIMEOUT:  # also refuses nan and inf
            shown = timeout if len(timeout) <= 40 else timeout[:39] + "…"
            raise UsageError(
                f"MCP_RECONCILER_TIMEOUT={shown!r} is not a usable timeout: give a number of seconds above 0 "
                f"and at most {DescopeClient.MAX_TIMEOUT:g} (the default is {DEFAULT_TIMEOUT:g})"
            )
        return DescopeClient.from_env(
            self.environ, project_id=project_id, throttle=Throttle(self.throttle), timeout=seconds
        )


async def plan_project(manifest: Manifest, connection: Connection, options: PlanOptions) -> Plan:
    """Fetch the live state the manifests need and plan against it."""
    return plan_against(manifest, await live_for_plan(manifest, connection, options), options)


def early_reader(
    connection: Connection, options: PlanOptions | None = None
) -> contextlib.AbstractContextManager[Prefetch | None]:
    """A head start on what :func:`plan_project` (with ``options``) or :func:`drift_project` (without)
    fetches, read in another process while the manifests load (see reconciler.prefetch)."""
    servers = _servers_needed(options) if options is not None else None

    def fetch(project_id: str, listener: FetchListener) -> LiveState:
        return asyncio.run(connection.fetch(project_id, servers, listener))

    return prefetching(fetch, connection.environ)


def _servers_needed(options: PlanOptions) -> set[str] | None:
    """The servers whose live state a plan with ``options`` reads: the targeted ones, else all (None)."""
    return {t.root for t in options.targets} if options.targets else None


async def live_for_plan(manifest: Manifest, connection: Connection, options: PlanOptions) -> LiveState:
    """The live state a plan with ``options`` reads: every server, and the clients of those it plans."""
    return await connection.fetch(manifest.project.projectId, _servers_needed(options))


async def reviewed_plan(manifest: Manifest, connection: Connection, options: PlanOptions) -> Plan:
    """The plan, with its security findings marked new, existing or resolved, as ``plan`` shows it."""
    live = await live_for_plan(manifest, connection, options)
    plan = plan_against(manifest, live, options)
    return replace(plan, findings=review_plan(manifest, live, plan, options).findings)


def plan_against(
    manifest: Manifest,
    live: LiveState,
    options: PlanOptions,
    desired: Sequence[Desired] | None = None,
    planning: PlanWhileReading | None = None,
) -> Plan:
    """The plan that makes ``live`` what ``manifest`` says, once every --target is known to exist;
    ``planning`` is that plan made as ``live`` arrived (reconciler.plan_ahead), when it was."""
    check_targets(manifest, live, options.targets)
    if planning is not None:
        return planning.plan()
    return build_plan(manifest, live, options, desired=desired)


async def drift_project(
    manifest: Manifest, connection: Connection, *, live: LiveState | None = None
) -> DriftReport:
    if live is None:
        live = await connection.fetch(manifest.project.projectId)
    return detect_drift(manifest, live)


def plan_key(environ: Mapping[str, str]) -> bytes | None:
    """The key that signs saved plans and checks their signature, when the team set one."""
    value = environ.get(PLAN_KEY_VARIABLE, "")
    if not value:
        return None
    if len(value) < MIN_PLAN_KEY_LENGTH:
        raise UsageError(
            f"{PLAN_KEY_VARIABLE} is too short: use at least {MIN_PLAN_KEY_LENGTH} characters "
            "(e.g. the output of `openssl rand -hex 32`)"
        )
    return value.encode("utf-8", "surrogateescape")


def save_plan(plan: Plan, path: Path, *, signing_key: bytes | None = None) -> None:
    """Write the plan as JSON, atomically (a reader never sees half a plan); signed with a key."""
    text = (
        json_visible(json.dumps(plan.to_json(signing_key=signing_key), indent=2, ensure_ascii=False)) + "\n"
    )
    write_atomically(path, text, mode=0o644)


def plan_as_json(plan: Plan) -> str:
    return json_visible(json.dumps(plan.to_json(), indent=2, ensure_ascii=False)) + "\n"


def drift_as_json(report: DriftReport) -> str:
    return json_visible(json.dumps(report.to_json(), indent=2, ensure_ascii=False)) + "\n"


def _other_version_advice(version: object) -> str:
    """What to do with a saved plan of another format version (docs/UPGRADING.md lists the versions)."""
    if isinstance(version, int) and not isinstance(version, bool) and version < FORMAT_VERSION:
        return (
            "it was made by an older mcp-reconciler; run plan --out again with this version "
            "(what changed: docs/UPGRADING.md)"
        )
    if isinstance(version, int) and not isinstance(version, bool):
        return (
            "it was made by a newer mcp-reconciler; apply it with that version, or plan again with this one"
        )
    return "run plan --out again with this version"


def load_saved_plan(path: Path, *, signing_key: bytes | None) -> Plan:
    """Read a plan saved by ``plan --out``; refuse one that is truncated, edited, of another version,
    or (with a key) unsigned or signed with another key."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SavedPlanError(f"{path}: cannot read the saved plan ({exc.__class__.__name__})") from None
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        raise SavedPlanError(
            f"{path}: not a complete JSON document (truncated?); run plan --out again"
        ) from None
    if not isinstance(document, dict):
        raise SavedPlanError(f"{path}: not a saved plan")
    if document.get("format_version") != FORMAT_VERSION:
        version = json.dumps(document.get("format_version"))[:20]  # "2" (a string) shows as "2", 2 as 2
        raise SavedPlanError(
            f"{path}: plan format version {version}; this mcp-reconciler reads {FORMAT_VERSION}: "
            + _other_version_advice(document.get("format_version"))
        )
    try:
        summed = checksum(document)
    except UnicodeEncodeError:  # a lone surrogate: JSON escapes allow one, no text can hold it
        raise SavedPlanError(f"{path}: holds text that is not valid Unicode; run plan --out again") from None
    if document.get("checksum") != summed:
        raise SavedPlanError(
            f"{path}: the checksum does not match: the plan was edited or damaged; run plan again"
        )
    _check_signature(path, document, signing_key)
    errors = sorted(validator_for_document("plan.schema.json").iter_errors(document), key=str)
    if errors:
        where = "/".join(str(p) for p in errors[0].absolute_path)
        raise SavedPlanError(
            f"{path}: not a valid saved plan (at {where or 'the top'}: {errors[0].message[:120]})"
        )
    plan = Plan.from_json(document)
    if plan.refused is not None:
        raise SavedPlanError(f"{path}: the plan was refused when it was made ({plan.refused}); plan again")
    if plan.change_set != document["changeSet"]:
        raise SavedPlanError(f"{path}: the change-set digest does not match the changes: the plan was edited")
    return plan


def _check_signature(path: Path, document: Mapping[str, object], key: bytes | None) -> None:
    signed = document.get("signature")
    if key is None:
        if signed is not None:
            raise SavedPlanError(
                f"{path}: the plan is signed, but {PLAN_KEY_VARIABLE} is not set to check the signature"
            )
        return
    if signed is None:
        raise SavedPlanError(
            f"{path}: the plan is not signed, and {PLAN_KEY_VARIABLE} is set: only plans signed with "
            "that key are applied (plan --out signs them when the same key is set)"
        )
    expected = signature(document, key).encode()
    if not isinstance(signed, str) or not hmac.compare_digest(
        signed.encode("utf-8", "surrogatepass"), expected
    ):
        raise SavedPlanError(
            f"{path}: the plan's signature does not match {PLAN_KEY_VARIABLE}: it was edited or signed "
            "with another key; nothing was applied"
        )


def saved_plan_sources(
    plan: Plan, paths: Sequence[str], *, var_files: Sequence[str]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The manifest paths and var files to check a saved plan against: those given, else the ones the
    plan recorded, which must stay inside the working directory (the plan file may be hostile)."""
    chosen_paths = tuple(paths) or plan.made_from.paths
    chosen_vars = tuple(var_files) or plan.made_from.var_files
    for recorded, given in ((plan.made_from.paths, paths), (plan.made_from.var_files, var_files)):
        if given:
            continue
        for path in recorded:
            if unsafe_path(path):
                raise SavedPlanError(
                    f"the plan records the path {path!r}, outside the working directory; give the "
                    "manifest paths (and --var-file) on the command line after the plan file"
                )
    return chosen_paths, chosen_vars


def verify_made_from(plan: Plan, manifest: Manifest) -> None:
    """Refuse a saved plan that was not made from ``manifest``, naming each object that differs."""
    if manifest.project.projectId != plan.project_id:
        raise SavedPlanError(
            f"the plan is for project {plan.project_id}, but the manifests are for "
            f"{manifest.project.projectId}; nothing was applied"
        )
    found = differences(plan.made_from.digests, manifest_digests(manifest))
    if found:
        raise SavedPlanError(
            f"the manifests are not the ones the plan was made from ({len(found)} difference"
            f"{'s' if len(found) != 1 else ''}); nothing was applied: plan again and review the new plan",
            details=found,
        )


@dataclass(frozen=True)
class ApplySettings:
    """What an apply needs besides the plan: where to journal, how to mask, how to show progress."""

    journal: Path
    mask: Masker | None = None
    progress: Progress | None = None
    lock: LockSettings | None = None  # None: no project lock (the demo, which owns its emulator)


def one_writer(
    project_id: str, connection: Connection, lock: LockSettings | None
) -> contextlib.AbstractAsyncContextManager[object]:
    """The project's lock (reconciler.lock), to hold from before the first read of the journal or of
    the live project until the run ends; nothing when ``lock`` is None."""
    if lock is None:
        return contextlib.nullcontext()
    return ProjectLock(project_id, base_url=resolve_base_url(project_id, connection.environ), settings=lock)


async def apply_saved(
    plan: Plan,
    manifest: Manifest,
    connection: Connection,
    settings: ApplySettings,
    show: Callable[[Plan], None],
) -> ApplyResult:
    """Apply exactly a saved plan: only when ``manifest`` is what it was made from, after finishing
    open deliveries, and only when planning again now gives the same changes (nothing moved live and
    the file says what the manifests say). Sinks come from the manifests, never from the plan. The
    project's lock (``settings.lock``) is held from before the journal is read until the end."""
    verify_made_from(plan, manifest)
    options = PlanOptions(
        prune=plan.made_from.prune,
        allow_deletes=plan.made_from.allow_deletes,
        targets=tuple(Target.parse(t) for t in plan.targets),
    )
    async with _writing(manifest, connection, settings, options) as run:
        moved = moved_since(plan, run.live)
        if moved:
            raise StalePlanError(moved)
        # Not _plan_against: a saved plan's targets were checked when it was made, from these same
        # manifests; a target gone live since shows above as stale, or changes nothing.
        now = build_plan(manifest, run.live, options)
        if now.change_set != plan.change_set:
            raise SavedPlanError(
                "the saved plan is not what the manifests and the live project give now (the file was "
                "edited, or the project changed); nothing was applied: plan again",
                details=plan_differences(plan, now),
            )
        show(now)  # only what was verified: the file's own text (its withheld list) is not shown
        return await run.apply(plan)


async def apply_fresh(
    manifest: Manifest,
    connection: Connection,
    options: PlanOptions,
    settings: ApplySettings,
    confirm: Callable[[Plan], bool],
) -> tuple[Plan, ApplyResult | None]:
    """Finish open deliveries, plan, ask ``confirm``, apply, all under the project's lock (taken before
    the journal or the live project is read). No result when declined or nothing to do."""
    async with _writing(manifest, connection, settings, options) as run:
        plan = plan_against(manifest, run.live, options)
        if not plan.changes:
            resumed = run.resumed
            return plan, resumed if resumed.delivered or resumed.undelivered or resumed.notices else None
        if not confirm(plan):
            return plan, None
        return plan, await run.apply(plan)


@dataclass
class _WriteRun:
    """One run that may change the project: the API, the courier, what was resumed, the live state."""

    api: DescopeClient
    courier: Courier
    resumed: ApplyResult
    live: LiveState
    progress: Progress | None

    async def apply(self, plan: Plan) -> ApplyResult:
        """Carry out ``plan``; the result counts the deliveries resumed before it too."""
        self.api.scopes_format = plan.scopes_format  # the shape the plan was made for, also with no server
        applier = Applier(
            self.api, plan, self.live, sinks=self.courier.sinks, courier=self.courier, progress=self.progress
        )
        result = await applier.run()
        result.delivered += self.resumed.delivered
        result.undelivered[:0] = self.resumed.undelivered
        result.notices[:0] = self.resumed.notices
        return result


@contextlib.asynccontextmanager
async def _writing(
    manifest: Manifest, connection: Connection, settings: ApplySettings, options: PlanOptions
) -> AsyncIterator[_WriteRun]:
    """The project's lock, the sinks and journal, the API; open deliveries finished, then the live state
    a plan with ``options`` needs read."""
    project_id = manifest.project.projectId
    keep = keep_runs(connection.environ)  # a bad setting fails before anything changes
    async with one_writer(project_id, connection, settings.lock):
        with delivery_kit(manifest, connection, settings.journal, settings.mask) as courier:
            async with connection.client(project_id) as api:
                resumed = await finish_open_deliveries(api, courier, manifest)
                live = await connection.live_state(api, _servers_needed(options))
                yield _WriteRun(api, courier, resumed, live, settings.progress)
        compact_quietly(settings.journal, keep=keep)  # the run's journal closed, the lock still held


@contextlib.contextmanager
def delivery_kit(
    manifest: Manifest, connection: Connection, journal: Path, mask: Masker | None
) -> Iterator[Courier]:
    """The manifests' sinks and the journal, as one courier; both closed however the run ends."""
    project = manifest.project
    with (
        _built_sinks(manifest.sink_settings(), connection.environ) as sinks,
        contextlib.closing(Journal(journal, project=project.projectId)) as log,
    ):
        yield Courier(sinks, log, mask=mask)


@contextlib.contextmanager
def _built_sinks(
    settings: Mapping[str, Mapping[str, Any]], environ: Mapping[str, str]
) -> Iterator[dict[str, SecretSink]]:
    """The sinks ``settings`` declare (SinkError when one cannot be made), closed however the block ends."""
    sinks = build_sinks(settings, environ)
    try:
        yield sinks
    finally:
        close_sinks(sinks)


async def finish_open_deliveries(api: DescopeClient, courier: Courier, manifest: Manifest) -> ApplyResult:
    """Deliver the secrets a previous run issued but did not get into their sinks; the result
    counts them, so a run that still could not deliver one exits 3 like the run that issued it.

    A client still in the manifests gets its secret where the manifests send it now (its sink may
    have changed, or been removed, since); one that left the manifests, with a sink that left them
    too, has nowhere to go: it is closed in the journal and reported, never retried for ever."""
    result = ApplyResult()
    items: list[OpenDelivery] = []
    for opened in open_deliveries(courier.journal.path, courier.journal.project):
        item, notice = _current_destination(opened, manifest, courier)
        if notice:
            result.notices.append(notice)
        if item is None:
            courier.journal.write("abandoned", server=opened.server, client=opened.client, sink=opened.sink)
        else:
            items.append(item)
    for item, outcome in zip(items, await resume_all(api, courier, items), strict=True):
        if outcome is None:
            continue
        if outcome.delivered:
            result.delivered += 1
        else:
            result.undelivered.append((f'client "{item.server}/{item.client}"', outcome.reason))
    return result


def _current_destination(
    item: OpenDelivery, manifest: Manifest, courier: Courier
) -> tuple[OpenDelivery | None, str]:
    """Where an open delivery goes now: the client's sink and key in the manifests, else the recorded
    ones while that sink is still declared, else nowhere; with a notice when that is not the recorded."""
    address = f'client "{item.server}/{item.client}"'
    server = manifest.server(item.server)
    client = next((c for c in server.clients if c.name == item.client), None) if server else None
    if client is not None:
        sink = client.secret.sink or manifest.project.defaultSink or ""
        key = secret_key(item.server, client)
        if (sink, key) == (item.sink, item.key):
            return item, ""
        notice = (
            f"{address}: a previous run could not deliver its secret to sink {item.sink!r} (key "
            f"{item.key!r}); delivering it to the client's current sink {sink!r} (key {key!r}) instead"
        )
        return replace(item, sink=sink, key=key), notice
    if item.sink in courier.sinks:
        return item, ""
    return None, (
        f"{address}: a previous run could not deliver its secret, and neither the client nor its sink "
        f"{item.sink!r} is in the manifests any more, so there is nowhere to deliver it; closed in the "
        "journal. If the client still exists in Descope, rotate its secret or delete it"
    )


def check_sinks(plan: Plan, manifest: Manifest, environ: Mapping[str, str]) -> dict[str, str]:
    """What is wrong with each sink the plan's new secrets need (reachability, permission), by sink.
    Only those sinks are made, one at a time (no journal, no lock: a plan changes nothing), so an
    unrelated sink cannot fail it and one broken sink is not blamed on the others."""
    declared = manifest.sink_settings()  # relative paths resolved against the Project's folder
    problems: dict[str, str] = {}
    for name in plan.secret_sinks:
        if name not in declared:
            problems[name] = f"sink {name!r} is not declared"
            continue
        try:
            with _built_sinks({name: declared[name]}, environ) as sinks:
                sinks[name].check()
        except SinkError as exc:  # cannot be made, or failed its check
            problems[name] = str(exc)
    return problems


@dataclass(frozen=True)
class SecretStatus:
    """Whether one managed client's current secret is in its sink."""

    address: str
    sink: str
    state: str  # a Verification value, "undelivered" (per the journal), "fixed", "absent" or "error"
    detail: str = ""

    @property
    def ok(self) -> bool:
        """Verified in its sink. "unreadable" (a sink that cannot give a value back) is not, though it
        is no problem either (``reconciler.render.results.secrets_problems``)."""
        return self.state in ("match", "fixed")


async def check_secrets(
    manifest: Manifest,
    connection: Connection,
    *,
    fix: bool,
    journal: Path,
    mask: Masker | None = None,
    lock: LockSettings | None = None,
) -> list[SecretStatus]:
    """Verify every managed client's current secret against its sink; with ``fix``, deliver it again
    (announced to ``mask`` first, like every secret apply issues), holding the project's ``lock``."""
    project = manifest.project
    async with one_writer(project.projectId, connection, lock if fix else None):
        return await _check_secrets(manifest, connection, fix=fix, journal=journal, mask=mask)


async def _check_secrets(
    manifest: Manifest, connection: Connection, *, fix: bool, journal: Path, mask: Masker | None
) -> list[SecretStatus]:
    project = manifest.project
    with delivery_kit(manifest, connection, journal, mask) as courier:
        async with connection.client(project.projectId) as api:
            live = await connection.live_state(api, {s.name for s in manifest.servers})
            # A sink that cannot be read back (command, GitHub) cannot say a secret is missing; the
            # journal can, when a run recorded that it never got there.
            pending = frozenset(
                (item.server, item.client) for item in open_deliveries(journal, project.projectId)
            )
            work = [
                _check_one(api, courier, live, project.ownershipTag, spec, pending=pending)
                for spec in _clients(manifest)
            ]
            checked = await asyncio.gather(*work)
        if not fix:
            return [status for status, _ in checked]
        return await _fix(courier, checked)


async def _fix(
    courier: Courier, checked: Sequence[tuple[SecretStatus, Handoff | None]]
) -> list[SecretStatus]:
    """Deliver again every checked secret not in its sink, in one batch per sink (like an apply step)."""
    handoffs = [h for status, h in checked if h is not None and status.state != "match"]
    outcomes = iter(await courier.hand_off_many(handoffs))
    return [
        _redelivered(status, next(outcomes)) if h is not None and status.state != "match" else status
        for status, h in checked
    ]


def _redelivered(status: SecretStatus, outcome: Outcome) -> SecretStatus:
    return replace(status, state="fixed" if outcome.delivered else "error", detail=outcome.reason)


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
    pending: frozenset[tuple[str, str]],
) -> tuple[SecretStatus, Handoff | None]:
    """One client's secret against its sink, with the hand-off that would deliver it again (None
    when its current secret could not be read)."""
    server_name, spec, sink_name = entry
    address = f'client "{server_name}/{spec.name}"'
    server = next((s for s in live.servers if s.name == server_name and owner in s.tags), None)
    client = next((c for c in live.clients_of(server.id) if c.name == spec.name), None) if server else None
    if server is None or client is None or owner not in client.tags:
        return SecretStatus(
            address, sink_name, "absent", "not a managed client in the live project yet"
        ), None
    record = SecretRecord(server_name, spec.name, client.client_id, secret_key(server_name, spec))
    try:
        current = await api.get_client_secret(server.id, client.id)
        if courier.mask is not None:
            courier.mask(current)  # before the sink sees it, as for every secret apply handles
        state = (await asyncio.to_thread(courier.sinks[sink_name].verify, record, current)).value
    except (ReconcilerError, SinkError) as exc:
        return SecretStatus(address, sink_name, "error", str(exc)), None
    if state == "unreadable" and (server_name, spec.name) in pending:
        state = "undelivered"  # the journal says the last delivery did not arrive
    return SecretStatus(address, sink_name, state), Handoff(record, sink_name, current)


async def fetch_for_export(connection: Connection, project_id: str) -> LiveState:
    return await connection.fetch(project_id)


# ---- security findings -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Review:
    """The security findings of one run, the rules that ran, and the severity that fails it."""

    findings: tuple[Finding, ...]
    rules: tuple[str, ...]
    fail_on: Severity | None

    def failing(self, *, new_only: bool = False) -> list[Finding]:
        return at_or_above(self.findings, self.fail_on, new_only=new_only)


def fail_threshold(asked: str | None, team: TeamPolicy, default: Severity | None) -> Severity | None:
    """``--fail-on`` when given, else the Project policy's ``failOn``, else the command's default."""
    chosen = asked if asked is not None else team.fail_on
    if chosen is None:
        return default
    return None if chosen == "never" else next((s for s in SEVERITIES if s == chosen), default)


def _ran(rules: Sequence[Rule], team: TeamPolicy) -> tuple[str, ...]:
    """The ids of the rules that ran: all but those the policy turns off."""
    return tuple(rule.id for rule in rules if rule.id not in team.policy.disabled)


def lint_manifest(manifest: Manifest, *, fail_on: str | None = None) -> Review:
    """The manifests' findings as written (offline), located at their fields, under the team's policy."""
    rules = all_rules()
    team = policy_of(manifest.project.policy)
    found = evaluate(manifest_subjects(manifest), rules, team.policy)
    return Review(
        tuple(locate(found, manifest.locations)), _ran(rules, team), fail_threshold(fail_on, team, "high")
    )


def review_plan(
    manifest: Manifest,
    live: LiveState,
    plan: Plan,
    options: PlanOptions,
    *,
    fail_on: str | None = None,
    judged: JudgedAhead | None = None,
) -> Review:
    """The findings of the objects the manifests name or ``plan`` deletes, as they stand live and as
    they will stand once it is applied (``reconciler.subjects.plan_subjects``), marked new, existing or
    resolved; an adopted object's findings are new (the change takes them on). A targeted plan: only
    its targets' servers. An object the plan leaves alone is judged once: its findings stand after as
    before; one ``judged`` ahead (with these rules and this policy) is not judged again."""
    rules = all_rules()
    team = policy_of(manifest.project.policy)
    if judged is not None and (judged.judge.rules != rules or judged.judge.policy != team.policy):
        judged = None
    subjects = plan_subjects(manifest, live, plan)
    before, after = subjects.before, subjects.after
    if options.targets:
        roots = {target.root for target in options.targets}
        before = [s for s in before if s.server in roots]
        after = [s for s in after if s.server in roots]
    found_before = judged.evaluate(before) if judged is not None else evaluate(before, rules, team.policy)
    found_after = evaluate(after, rules, team.policy)
    found_after += [f for f in found_before if f.object_path not in subjects.changed]
    marked = compare(found_after, found_before, taken_on=lambda f: f.object_path in subjects.adopted)
    # New ones point at their field (what the change brings: a few files read again); existing and
    # resolved ones at their object: cheap with thousands live, and a resolved finding's field may
    # no longer be where the manifests have one.
    moved = locate([f for f in marked if f.status == "new"], manifest.locations)
    kept = [replace(f, location=object_location(f, manifest.locations)) for f in marked if f.status != "new"]
    return Review(tuple(ordered([*moved, *kept])), _ran(rules, team), fail_threshold(fail_on, team, None))
