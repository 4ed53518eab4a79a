"""Promises of ``load_saved_plan``: a plan of another format version is refused, and so is a document
that fails ``plan.schema.json`` even when its checksum and change-set digest are recomputed (as anyone
who can write the file can do), each with its exact message."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reconciler.errors import SavedPlanError
from reconciler.plan import (
    FORMAT_VERSION,
    Action,
    Change,
    FieldChange,
    Kind,
    Plan,
    Provenance,
    SecretTarget,
    canonical_json,
    checksum,
)
from reconciler.workflow import load_saved_plan

OWNER = "managed-by:mcp-reconciler"
PLAN = Plan(
    project_id="P2SAVED",
    ownership_tag=OWNER,
    changes=(
        Change(
            kind=Kind.SERVER,
            action=Action.CREATE,
            name="calendar",
            fields=(FieldChange("name", None, "calendar"),),
            desired={"name": "calendar", "tags": [OWNER]},
        ),
        Change(
            kind=Kind.CLIENT,
            action=Action.CREATE,
            name="agent",
            server="calendar",
            desired={"name": "agent"},
            secret=SecretTarget("local", "calendar/agent"),
        ),
    ),
    made_from=Provenance(paths=("manifests",), digests={'server "calendar"': "0" * 32}),
)


def resave(path: Path, document: dict[str, Any]) -> None:
    """Save an edited plan as a forger would: change-set digest and checksum recomputed."""
    body = {k: v for k, v in document.items() if k not in ("checksum", "changeSet")}
    change_set = {
        k: body[k] for k in ("project", "ownershipTag", "scopesFormat", "partial", "targets", "changes")
    }
    body["changeSet"] = "sha256:" + hashlib.sha256(canonical_json(change_set).encode()).hexdigest()
    body["checksum"] = checksum(body)
    path.write_text(json.dumps(body))


def refusal(path: Path) -> str:
    with pytest.raises(SavedPlanError) as caught:
        load_saved_plan(path, signing_key=None)
    return str(caught.value)


def test_a_saved_plan_and_one_merely_resaved_load_as_made(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(PLAN.to_json()))
    assert load_saved_plan(path, signing_key=None) == PLAN
    resave(path, PLAN.to_json())  # the forger's rewrite alone changes nothing
    assert json.loads(path.read_text()) == PLAN.to_json()
    assert load_saved_plan(path, signing_key=None) == PLAN


# ---- the format version --------------------------------------------------------------------------


@pytest.mark.parametrize("version", [FORMAT_VERSION - 1, FORMAT_VERSION + 1])
def test_a_plan_of_another_format_version_is_refused_by_its_version(tmp_path: Path, version: int) -> None:
    path = tmp_path / "plan.json"
    resave(path, {**PLAN.to_json(), "format_version": version})  # otherwise intact
    advice = (
        "it was made by an older mcp-reconciler; run plan --out again with this version "
        "(what changed: docs/UPGRADING.md)"
        if version < FORMAT_VERSION
        else "it was made by a newer mcp-reconciler; apply it with that version, or plan again with this one"
    )
    assert refusal(path) == (
        f"{path}: plan format version {version}; this mcp-reconciler reads {FORMAT_VERSION}: {advice}"
    )


def test_the_version_is_checked_before_the_checksum(tmp_path: Path) -> None:
    """A plan of a later version may be summed differently: it is refused for its version, not as damaged."""
    path = tmp_path / "plan.json"
    later = FORMAT_VERSION + 1
    document = {**PLAN.to_json(), "format_version": later, "checksum": "blake3:" + "1" * 64}
    path.write_text(json.dumps(document))
    assert refusal(path) == (
        f"{path}: plan format version {later}; this mcp-reconciler reads {FORMAT_VERSION}: "
        "it was made by a newer mcp-reconciler; apply it with that version, or plan again with this one"
    )


@pytest.mark.parametrize(
    ("version", "shown"),
    [
        (str(FORMAT_VERSION), f'"{FORMAT_VERSION}"'),
        (FORMAT_VERSION + 0.5, f"{FORMAT_VERSION}.5"),
        (None, "null"),
        (True, "true"),
    ],
)
def test_a_version_that_is_not_the_current_number_is_refused(
    tmp_path: Path, version: object, shown: str
) -> None:
    path = tmp_path / "plan.json"
    document = PLAN.to_json()
    if version is None:
        del document["format_version"]
    else:
        document["format_version"] = version
    resave(path, document)
    message = refusal(path)
    assert message == (
        f"{path}: plan format version {shown}; this mcp-reconciler reads {FORMAT_VERSION}: "
        "run plan --out again with this version"
    )


# ---- the schema -----------------------------------------------------------------------------------

Edit = Callable[[dict[str, Any]], None]


def _add_sinks(d: dict[str, Any]) -> None:
    d["sinks"] = {"local": {"type": "command", "command": ["sh", "-c", "env"]}}


def _drop_made_from(d: dict[str, Any]) -> None:
    del d["madeFrom"]


SCHEMA_EDITS: list[tuple[str, Edit, str]] = [
    (
        "extra-top-level-field",
        _add_sinks,
        "at the top: Additional properties are not allowed ('sinks' was unexpected)",
    ),
    (
        "extra-change-field",
        lambda d: d["changes"][0].update(command="sh"),
        "at changes/0: Additional properties are not allowed ('command' was unexpected)",
    ),
    (
        "unknown-action",
        lambda d: d["changes"][0].update(action="explode"),
        "at changes/0/action: 'explode' is not one of ['create', 'update', 'adopt', 'rotate-secret', 'delete']",
    ),
    (
        "desired-not-an-object",
        lambda d: d["changes"][0].update(desired=["x"]),
        "at changes/0/desired: ['x'] is not of type 'object'",
    ),
    (
        "bad-target",
        lambda d: d.update(targets=["bogus"]),
        "at targets/0: 'bogus' does not match '^(server:.+|client:[^/]+/.+)$'",
    ),
    (
        "negative-count",
        lambda d: d["summary"].update(create=-1),
        "at summary/create: -1 is less than the minimum of 0",
    ),
    ("empty-project", lambda d: d.update(project=""), "at project: '' should be non-empty"),
    ("no-provenance", _drop_made_from, "at the top: 'madeFrom' is a required property"),
]


@pytest.mark.parametrize(
    ("edit", "where"), [(e, w) for _, e, w in SCHEMA_EDITS], ids=[i for i, _, _ in SCHEMA_EDITS]
)
def test_a_plan_failing_its_schema_is_refused_even_with_its_sums_recomputed(
    tmp_path: Path, edit: Edit, where: str
) -> None:
    path = tmp_path / "plan.json"
    document = PLAN.to_json()
    edit(document)
    resave(path, document)
    assert refusal(path) == f"{path}: not a valid saved plan ({where})"
