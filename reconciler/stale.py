"""Is a saved plan still true? Each change is checked against the live object it was planned on, and
the whole plan against the one planning gives now (pure)."""

from __future__ import annotations

from reconciler.descope.wire import LiveState
from reconciler.kinds import KINDS
from reconciler.plan import Action, Change, Plan, fingerprint


def moved_since(plan: Plan, live: LiveState) -> list[str]:
    """What changed in the project since ``plan`` was made; empty when the plan still holds."""
    moved = [reason for change in plan.changes if (reason := _moved(change, live))]
    return sorted(set(moved))


def _moved(change: Change, live: LiveState) -> str | None:
    if change.action is Action.CREATE:
        return _exists_now(change, live)
    around = KINDS[change.kind].live_under(live, change.server_id)
    current = next((obj.fields for obj in around if obj.id == change.id), None)
    if current is None:
        return f"{change.address} ({change.id}) no longer exists"
    if fingerprint(current) != change.fingerprint:
        return f"{change.address} ({change.id}) was changed since the plan was made"
    return None


def _exists_now(change: Change, live: LiveState) -> str | None:
    around = KINDS[change.kind].live_under(live, change.server_id)
    # On its own surface only: the copy a move leaves on the other one is planned for, not in the way.
    found = [obj.id for obj in around if obj.name == change.name and change.surface in (None, obj.surface)]
    if found:
        return f"{change.address} now exists ({', '.join(found)}); the plan would create another"
    return None


def plan_differences(saved: Plan, now: Plan) -> list[str]:
    """How the changes of ``saved`` differ from those planning gives ``now``, one line each."""
    before = {(c.kind, c.path, c.action): c for c in saved.changes}
    after = {(c.kind, c.path, c.action): c for c in now.changes}
    found = [
        f"{c.action.value} {c.address}: in the saved plan, not planned now"
        for k, c in before.items()
        if k not in after
    ]
    found += [
        f"{c.action.value} {c.address}: planned now, not in the saved plan"
        for k, c in after.items()
        if k not in before
    ]
    found += [
        f"{c.action.value} {c.address}: differs from what is planned now"
        for k, c in before.items()
        if k in after and c.to_json() != after[k].to_json()
    ]
    return found or [
        "the plan's project settings or the order of its changes differ from what is planned now"
    ]
