"""JSON documents of what validate, apply, secrets check and export did, for CI (pure; see schemas/)."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict, deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from reconciler.errors import ExitCode, Problem
from reconciler.kinds import Kind
from reconciler.models import Manifest
from reconciler.plan import Action, ApplyResult, Change, Plan
from reconciler.textsafe import json_visible

# The version of the four documents below (validate, apply, secrets check, export); the stability
# contract, as plan's and drift's format_version: any change to a shape comes with a new version.
RESULTS_VERSION = 1
# secrets check's document: 2 counts the secrets that are verified and those in sinks that cannot be
# read back (``unreadable``) apart, and a secret's ``ok`` is true only when it is verified.
SECRETS_CHECK_VERSION = 2

CANCELLED = "the apply was cancelled; nothing was changed"
NOT_ATTEMPTED = "not attempted"

# ``server "calendar"`` / ``client "calendar/agent"``: how the workflow names an object for people.
_ADDRESS = re.compile(rf"(?:{'|'.join(re.escape(kind.value) for kind in Kind)}) \"(.*)\"", re.S)


def as_json(document: Mapping[str, Any]) -> str:
    """The document as indented JSON, with every character a terminal acts on escaped."""
    return json_visible(json.dumps(document, indent=2, ensure_ascii=False)) + "\n"


def object_path(address: str) -> str:
    """``calendar/agent`` for ``client "calendar/agent"``: the object's path; other text as it is."""
    match = _ADDRESS.fullmatch(address)
    return match[1] if match else address


# ---- validate --------------------------------------------------------------------------------------


def validate_valid(manifest: Manifest, warnings: Sequence[str]) -> dict[str, Any]:
    """validate's document for manifests that are valid (``schemas/validate.schema.json``)."""
    return {
        "format_version": RESULTS_VERSION,
        "valid": True,
        "project": manifest.project.projectId,
        "servers": len(manifest.servers),
        "clients": sum(len(server.clients) for server in manifest.servers),
        "warnings": list(warnings),
    }


def validate_invalid(problems: Iterable[Problem]) -> dict[str, Any]:
    """validate's document for manifests with problems, every one located."""
    return {
        "format_version": RESULTS_VERSION,
        "valid": False,
        "problems": [
            {
                "file": problem.file,
                "line": problem.line,
                "column": problem.column,
                "path": problem.path,
                "message": problem.message,
            }
            for problem in problems
        ],
    }


# ---- apply -----------------------------------------------------------------------------------------


def apply_exit_code(result: ApplyResult) -> ExitCode:
    """What apply exits with: 1 when a change failed or was skipped (over 3), 3 when a secret was not
    delivered, else 0."""
    if result.failed or result.skipped:
        return ExitCode.ERROR
    if result.undelivered:
        return ExitCode.SECRET_UNDELIVERED
    return ExitCode.OK


def apply_document(plan: Plan, result: ApplyResult, *, cancelled: bool = False) -> dict[str, Any]:
    """apply's document (``schemas/apply.schema.json``): each planned change and what became of it.

    Built from the plan and the result alone, neither of which holds a secret value."""
    outcome = {change_key(c): deque[tuple[str, str | None]]() for c in plan.changes}
    entries: list[tuple[Change, str, str | None]] = [
        *((change, "done", None) for change in result.done),
        *((change, "failed", reason) for change, reason in result.failed),
        *((change, "skipped", reason) for change, reason in result.skipped),
    ]
    for change, status, reason in entries:
        outcome.setdefault(change_key(change), deque()).append((status, reason))
    changes = []
    for change in plan.changes:
        queue = outcome[change_key(change)]
        status, reason = queue.popleft() if queue else ("skipped", CANCELLED if cancelled else NOT_ATTEMPTED)
        entry: dict[str, Any] = {
            "kind": change.kind.value,
            "action": change.action.value,
            "address": change.path_text,
            "status": status,
        }
        if reason is not None:
            entry["reason"] = reason
        changes.append(entry)
    paths = {change.address: change.path_text for change in plan.changes}  # escaped → as data
    code = ExitCode.ERROR if cancelled else apply_exit_code(result)
    return {
        "format_version": RESULTS_VERSION,
        "project": plan.project_id,
        "changeSet": plan.change_set,
        "ok": result.ok and not cancelled,
        "exitCode": int(code),
        "outcome": "cancelled" if cancelled else _OUTCOMES[code],
        "seconds": round(result.seconds, 3),
        "counts": apply_counts(result),
        "changes": changes,
        "undelivered": [
            {"address": paths.get(address, object_path(address)), "reason": reason}
            for address, reason in result.undelivered
        ],
        "notices": list(result.notices),
    }


_OUTCOMES = {
    ExitCode.OK: "applied",
    ExitCode.ERROR: "failed",
    ExitCode.SECRET_UNDELIVERED: "undelivered",
}


def apply_counts(result: ApplyResult) -> dict[str, int]:
    """The counts of apply's summary line: ``deleted`` counts objects, cascades included."""
    done = Counter(change.action for change in result.done)
    return {
        "created": done[Action.CREATE],
        "updated": done[Action.UPDATE],
        "adopted": done[Action.ADOPT],
        "deleted": sum(change.removes for change in result.done),
        "rotated": done[Action.ROTATE_SECRET],
        "failed": len(result.failed),
        "skipped": len(result.skipped),
        "delivered": result.delivered,
        "undelivered": len(result.undelivered),
    }


def change_key(change: Change) -> tuple[str, str, tuple[str, ...], str | None]:
    """What tells one change of a plan from the others: kind, action, path and surface."""
    return (change.kind.value, change.action.value, change.path, change.surface)


# ---- secrets check ---------------------------------------------------------------------------------


class SecretState(Protocol):
    """One client's secret as secrets check found it (``reconciler.workflow.SecretStatus``)."""

    @property
    def address(self) -> str: ...
    @property
    def sink(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def detail(self) -> str: ...
    @property
    def ok(self) -> bool: ...


# States that are no problem although the secret is not verified in its sink: the sink cannot give a
# value back (command, GitHub), or the client is not issued yet. Every other state that is not ``ok``
# (missing, different, undelivered, error) is a problem: exit 3.
UNVERIFIED = "unreadable"
NOT_ISSUED = "absent"


def secrets_problems(statuses: Iterable[SecretState]) -> list[SecretState]:
    """The secrets that are not where they belong. A secret in a sink that cannot be read back
    ("unreadable") is not verified, and a client not issued yet ("absent") has none: neither is a problem."""
    return [status for status in statuses if not status.ok and status.state not in (UNVERIFIED, NOT_ISSUED)]


def secrets_summary(statuses: Sequence[SecretState], sink_types: Mapping[str, str]) -> str:
    """secrets check's last line, which counts verified secrets apart from those in sinks that cannot
    be read back (named with their type, from ``sink_types``), those not issued yet and the problems."""
    verified = sum(status.ok for status in statuses)
    unverified = [status for status in statuses if status.state == UNVERIFIED]
    absent = sum(status.state == NOT_ISSUED for status in statuses)
    failed = sum(status.state == "error" for status in statuses)
    missing = len(secrets_problems(statuses)) - failed  # missing, different or undelivered
    parts = [f"{verified} of {len(statuses)} secrets are in their sinks"]
    if unverified:
        sinks = ", ".join(
            f'{sink_types.get(name, "")} sink "{name}"'.lstrip()
            for name in dict.fromkeys(status.sink for status in unverified)
        )
        parts.append(f"{len(unverified)} in sinks that cannot be read back ({sinks}): not verified")
    if absent:
        parts.append(f"{absent} not issued yet")
    if missing or (len(parts) > 1 and not failed):
        parts.append(f"{missing} not in their sinks" if missing else "none missing")
    if failed:
        parts.append(f"{failed} could not be checked")
    return "; ".join(parts) + "."


def secrets_document(project: str, statuses: Sequence[SecretState], *, fix: bool) -> dict[str, Any]:
    """secrets check's document (``schemas/secrets-check.schema.json``); it names sinks and states,
    never a secret."""
    bad = secrets_problems(statuses)
    by_state: dict[str, int] = defaultdict(int)
    for status in statuses:
        by_state[status.state] += 1
    counts = {
        "total": len(statuses),
        "verified": sum(status.ok for status in statuses),
        "unverified": by_state.get(UNVERIFIED, 0),
        "problems": len(bad),
        "states": dict(sorted(by_state.items())),
    }
    return {
        "format_version": SECRETS_CHECK_VERSION,
        "project": project,
        "fix": fix,
        "ok": not bad,
        "exitCode": int(ExitCode.SECRET_UNDELIVERED if bad else ExitCode.OK),
        "counts": counts,
        "secrets": [
            {
                "address": object_path(status.address),
                "sink": status.sink,
                "state": status.state,
                "detail": status.detail,
                "ok": status.ok,
            }
            for status in statuses
        ],
    }


# ---- export ----------------------------------------------------------------------------------------


def export_document(
    manifest: Manifest,
    *,
    out: str,
    files: Iterable[str],
    server_files: Mapping[str, str],
    sink: str,
    sink_path: str,
    adopt: bool,
    unowned: int,
    warnings: Sequence[str],
) -> dict[str, Any]:
    """export's document (``schemas/export.schema.json``): the files written and the objects in them,
    read back from the written manifests (which hold no secret: a client's ``secret:`` names a sink)."""
    return {
        "format_version": RESULTS_VERSION,
        "project": manifest.project.projectId,
        "out": out,
        "files": sorted(files),
        "servers": [
            {
                "name": server.name,
                "file": server_files.get(server.name, ""),
                "clients": [client.name for client in server.clients],
            }
            for server in manifest.servers
        ],
        "counts": {
            "servers": len(manifest.servers),
            "clients": sum(len(server.clients) for server in manifest.servers),
            "unowned": unowned,
        },
        "adopt": adopt,
        "sink": {"name": sink, "path": sink_path},
        "warnings": list(warnings),
    }
