"""Manifest + LiveState → Plan: matching, ownership, pruning, budgets and ordering (pure).

Servers match by name, clients by name within their server. Only objects carrying the Project's
ownership tag are ever updated or deleted; a live object of a manifest entry's name without it is
a conflict unless the entry says ``adopt: true``. Deletes happen only with pruning, never to
protected objects or to dynamically registered clients (nor to a server that still has clients the
reconciler does not own), and a plan with more deletes than the budget is refused as a whole.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from functools import partial

from reconciler.descope.wire import LiveState, Surface
from reconciler.diff import field_changes
from reconciler.errors import DeleteBudgetError, PlanError, UsageError
from reconciler.ignore import Scope
from reconciler.kinds import (
    KINDS,
    Desired,
    KindDescriptor,
    LiveObject,
    children,
    depends_on,
    depth,
    desired_objects,
    desired_paths,
    level,
    lineage,
    live_objects,
    registered_elsewhere,
    roots,
)
from reconciler.models import Manifest, secret_key
from reconciler.plan import (
    Action,
    Cascaded,
    Change,
    FieldChange,
    JsonValue,
    Kind,
    Plan,
    SecretRemoval,
    SecretTarget,
    Withheld,
    fingerprint,
)
from reconciler.tags import PROTECT_TAG, rotation_markers, user_tags, with_system_tags


@dataclass(frozen=True)
class Target:
    """``server:NAME`` or ``client:SERVER/NAME`` from ``--target``: an object and all below it."""

    kind: Kind
    path: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> Target:
        noun, _, rest = text.partition(":")
        kind = next((k for k in KINDS if k.value == noun), None)
        if kind is not None and rest:
            parts = tuple(rest.split("/", depth(kind)))
            if len(parts) == depth(kind) + 1 and all(parts):
                return cls(kind, parts)
        forms = " or ".join(_target_form(k) for k in KINDS)
        raise UsageError(f"invalid target {text!r}: expected {forms}")

    @property
    def root(self) -> str:
        return self.path[0]

    def __str__(self) -> str:
        return f"{self.kind.value}:{'/'.join(self.path)}"

    def covers(self, change: Change) -> bool:
        return depends_on(change.path, change.kind, on_path=self.path, on_kind=self.kind)


@dataclass(frozen=True)
class PlanOptions:
    prune: bool | None = None  # None: the Project's setting
    allow_deletes: int | None = None
    targets: tuple[Target, ...] = ()
    # For drift: every difference is a finding, so conflicts are skipped rather than fatal and
    # the delete budget does not apply.
    lenient: bool = False


def build_plan(
    manifest: Manifest,
    live: LiveState,
    options: PlanOptions | None = None,
    *,
    desired: Sequence[Desired] | None = None,
) -> Plan:
    """The changes that make ``live`` match ``manifest``; raises PlanError listing every problem.
    ``desired`` is ``desired_objects(manifest)`` when the caller made it already (while it waited)."""
    wanted = tuple(desired) if desired is not None else desired_objects(manifest)
    planner = _Planner(manifest, live, options or PlanOptions())
    planner.start(wanted)
    return planner.finish()


class PlanWhileReading:
    """A plan made while the live project is still being read: ``live`` holds every server and fills
    with clients as they arrive (its ``clients`` a view of a mapping still being filled), ``reading``
    names the servers whose clients are yet to come, and :meth:`read` says one's have. What needs a
    server's clients waits for them; what planning finds keeps the place it has in :func:`build_plan`,
    so :meth:`plan` is exactly the plan that :func:`build_plan` makes of the whole live state."""

    def __init__(
        self,
        manifest: Manifest,
        live: LiveState,
        options: PlanOptions,
        desired: Sequence[Desired],
        reading: Collection[str],
    ) -> None:
        self._planner = _Planner(manifest, live, options, reading=reading)
        self._planner.start(tuple(desired))

    def read(self, server_id: str) -> None:
        """The clients of ``server_id`` are in ``live`` now: plan what waited for them."""
        self._planner.read(server_id)

    @property
    def waiting(self) -> bool:
        """Whether some server's clients are yet to be read."""
        return bool(self._planner.reading)

    def plan(self) -> Plan:
        """The plan (raises as :func:`build_plan` does), once every server's clients are read."""
        if self.waiting:
            raise ValueError("the plan is not made yet: some servers' clients are still being read")
        return self._planner.finish()


_Found = list["Change | Withheld | str | _Found"]  # a problem is a str; a list is a place kept for later


@dataclass(frozen=True)
class _Parent:
    """Where objects are planned: under the root, a live object, or one the plan creates."""

    path: tuple[str, ...] = ()
    id: str | None = None
    exists: bool = True  # False for one the plan creates: nothing lives under it yet


class _Planner:
    def __init__(
        self, manifest: Manifest, live: LiveState, options: PlanOptions, *, reading: Collection[str] = ()
    ) -> None:
        self.manifest = manifest
        self.live = live
        self.options = options
        self.owner = manifest.project.ownershipTag
        self.scope = Scope.of(manifest.project)  # what is someone else's: never planned, never pruned
        self.prune = manifest.project.prune if options.prune is None else options.prune
        # The shape scopes are written in: the one the project's API answers in, else the setting.
        self.scopes_format = live.scopes_shape or manifest.project.scopesFormat
        # What planning finds, in the order it finds it: a step that waits for a server's clients
        # (see PlanWhileReading) fills a place kept for it, so the order never depends on arrivals.
        self.found: _Found = []
        self.reading = set(reading)  # the servers whose clients are yet to be read
        self.waiting: dict[str, list[tuple[_Found, Callable[[], None]]]] = {}
        self.moved_from: dict[tuple[Kind, tuple[str, ...]], LiveObject] = {}  # → its copy on another surface

    def start(self, desired: tuple[Desired, ...]) -> None:
        for kind in roots():
            self._plan_under(kind, [d for d in desired if d.kind is kind.kind], _Parent())

    def read(self, server_id: str) -> None:
        """The clients of ``server_id`` have arrived: run the steps that waited, each in its place."""
        self.reading.discard(server_id)
        for place, step in self.waiting.pop(server_id, []):
            outer, self.found = self.found, place
            try:
                step()
            finally:
                self.found = outer

    def _once_read(self, live_id: str, step: Callable[[], None]) -> None:
        """Run ``step`` now, or once the objects under ``live_id`` are read, keeping its place."""
        if live_id not in self.reading:
            step()
            return
        place: _Found = []
        self.found.append(place)
        self.waiting.setdefault(live_id, []).append((place, step))

    def finish(self) -> Plan:
        changes: list[Change] = []
        withheld: list[Withheld] = []
        problems: list[str] = []
        _flatten(self.found, changes, withheld, problems)
        changes = self._targeted(changes, problems)
        if problems and not self.options.lenient:
            raise PlanError(problems)
        project = self.manifest.project
        plan = Plan(
            project_id=project.projectId,
            ownership_tag=self.owner,
            changes=tuple(sorted(changes, key=_order)),
            scopes_format=self.scopes_format,
            partial=bool(self.options.targets),
            targets=tuple(str(t) for t in self.options.targets),
            withheld=tuple(w for w in withheld if self._in_scope(w.server)),
        )
        refusal = None if self.options.lenient else self._over_budget(plan)
        if refusal is not None:
            # Refused whole, but shown whole first: the plan is what a reviewer needs to decide.
            raise DeleteBudgetError(refusal, plan=replace(plan, refused=refusal))
        return plan

    def _plan_under(self, kind: KindDescriptor, wanted: Sequence[Desired], parent: _Parent) -> None:
        """Plan the objects of ``kind`` under ``parent``: match by name, then prune the rest. Objects
        an ignore rule names are neither matched nor pruned; another reconciler's are never pruned,
        and matched only when no other object has the name (see ``reconciler.ignore``)."""
        live = kind.live_under(self.live, parent.id) if parent.exists else ()
        candidates = self.scope.candidates(live, under=parent.path)
        by_name = candidates.ours
        for desired in wanted:
            matches = candidates.matches(desired.name)
            hidden = [] if matches else candidates.ignored.get(desired.name, [])
            if hidden:  # creating it would make a second object of the name
                obj, rule = hidden[0]
                self.found.append(
                    f"{_address(kind.kind, desired.path)} exists in Descope ({obj.id}) but the Project "
                    f"ignores it ({rule}); rename the manifest entry or change the rule"
                )
                continue
            if kind.surfaces:
                here = self._on_its_surface(kind, desired, matches)
                if here is None:
                    continue
                matches = here
            if len(matches) > 1:
                ids = ", ".join(m.id for m in matches)
                self.found.append(
                    f"{_address(kind.kind, desired.path)} matches {len(matches)} live {kind.plural} ({ids}); "
                    "rename or delete all but one"
                )
            elif not matches:
                self._create(kind, desired, parent)
            elif (other := self.scope.other_owner(matches[0].tags)) is not None and not desired.adopt:
                self.found.append(
                    f"{_address(kind.kind, desired.path)} exists in Descope ({matches[0].id}) but is not "
                    f'managed by mcp-reconciler: another reconciler owns it (ownership tag "{other}"); '
                    "set adopt: true to take it over, or choose another name"
                )
            else:
                self._plan_existing(kind, desired, live=matches[0], parent=parent)
        names = {desired.name for desired in wanted}
        for name, objects in sorted(by_name.items()):
            if name not in names:
                for obj in objects:
                    self._prune(kind, obj, parent)

    def _on_its_surface(
        self, kind: KindDescriptor, desired: Desired, matches: list[LiveObject]
    ) -> list[LiveObject] | None:
        """The live objects of ``desired``'s name on the surface it lives on (None: a problem was
        reported). A copy on the other surface is what moving it leaves behind: deleted with pruning
        when it is ours, a conflict naming it when it is not."""
        surfaces = {obj.surface for obj in matches}
        address = _address(kind.kind, desired.path)
        if desired.surface is None:
            if len(surfaces) > 1:
                where = ", ".join(f"{obj.id} on {obj.surface}" for obj in matches)
                self.found.append(
                    f"{address} exists on both surfaces ({where}): say which one it lives on with surface:"
                )
                return None
            return matches
        here = [obj for obj in matches if obj.surface == desired.surface]
        for copy in (obj for obj in matches if obj.surface != desired.surface):
            if self.owner not in copy.tags:
                self.found.append(
                    f"{address} is to live on {desired.surface}, but {copy.surface} holds one of its name "
                    f"({copy.id}) that mcp-reconciler does not manage: adopt it there first (surface: "
                    f"{copy.surface}, adopt: true), or rename or delete it"
                )
                return None
            self.moved_from[(kind.kind, desired.path)] = copy
            self._prune(kind, copy, _Parent(), moved_to=desired.surface)
        return here

    def _plan_children(self, desired: Desired, parent: _Parent) -> None:
        for kind in children(desired.kind):
            self._plan_under(kind, [d for d in desired.children if d.kind is kind.kind], parent)

    def _create(self, kind: KindDescriptor, desired: Desired, parent: _Parent) -> None:
        surface = (desired.surface or self.manifest.project.surface) if kind.surfaces else None
        shape = kind.surface_scopes.get(surface, self.scopes_format) if surface else self.scopes_format
        desired = replace(desired, fields=kind.settle(desired.fields, None, shape))
        target = self._secret_target(kind, desired)
        rotation = target.rotation if target else None
        tags = with_system_tags(
            _text_list(desired.fields.get("tags")), self.owner, protect=desired.protect, rotation=rotation
        )
        fields = [FieldChange(key, None, value) for key, value in sorted(desired.fields.items())]
        self.found.append(
            Change(
                kind.kind,
                Action.CREATE,
                desired.name,
                server=_parent_name(parent),
                server_id=parent.id,
                fields=tuple(fields),
                desired={**desired.fields, "tags": _json_list(tags)},
                secret=target,
                surface=surface,
                notes=self._move_notes(kind, desired),
            )
        )
        self._plan_children(desired, _Parent(desired.path, exists=False))

    def _move_notes(self, kind: KindDescriptor, desired: Desired) -> tuple[str, ...]:
        copy = self.moved_from.get((kind.kind, desired.path))
        if copy is None:
            return ()
        below = " and ".join(k.plural for k in children(kind.kind)) or "objects below it"
        return (
            f"moves it from {copy.surface} ({copy.id}): its {below} are created anew here, with new "
            "secrets delivered to their sinks",
        )

    def _plan_existing(
        self, kind: KindDescriptor, desired: Desired, *, live: LiveObject, parent: _Parent
    ) -> None:
        owned = self.owner in live.tags
        shape = (
            kind.surface_scopes.get(live.surface, self.scopes_format) if live.surface else self.scopes_format
        )
        desired = replace(desired, fields=kind.settle(desired.fields, live.fields, shape))
        if not owned and not desired.adopt:
            self.found.append(_conflict(_address(kind.kind, desired.path), live_id=live.id))
            return
        target = self._secret_target(kind, desired)
        rotation: str | None = None
        marker: str | None = None
        if target is not None:
            markers = rotation_markers(live.tags)
            # Tags edited by hand may hold several markers: the wanted one among them counts as done.
            marker = target.rotation if target.rotation in markers else next(iter(markers), None)
            # Adopting records the marker as it is: the adopted object's current secret is delivered.
            rotation = target.rotation if not owned else marker
        change = self._update(kind.kind, desired, live=live, owned=owned, rotation=rotation)
        if change:
            self.found.append(
                replace(
                    change,
                    server=_parent_name(parent),
                    server_id=parent.id,
                    secret=target,
                    surface=live.surface,
                )
            )
        if owned and target is not None and target.rotation is not None and target.rotation != marker:
            self.found.append(
                Change(
                    kind.kind,
                    Action.ROTATE_SECRET,
                    desired.name,
                    server=_parent_name(parent),
                    id=live.id,
                    server_id=parent.id,
                    fingerprint=fingerprint(live.fields),
                    fields=(FieldChange("secret.rotation", marker, target.rotation),),
                    secret=target,
                )
            )
        self._once_read(live.id, partial(self._plan_children, desired, _Parent(desired.path, live.id)))

    def _prune(
        self, kind: KindDescriptor, obj: LiveObject, parent: _Parent, *, moved_to: Surface | None = None
    ) -> None:
        """Delete an object we own that no manifest wants (or the copy a move leaves) when pruning."""
        if children(kind.kind) and obj.id in self.reading:  # what is below it decides
            self._once_read(obj.id, partial(self._prune, kind, obj, parent, moved_to=moved_to))
            return
        path = (*parent.path, obj.name)
        address = _address(kind.kind, path)
        root = path[0]
        moved = f"the copy on {obj.surface} that moving it to {moved_to} leaves" if moved_to else ""
        if self.owner not in obj.tags:
            return
        if not self.prune:  # shown, so that an object that left the manifests is never silently kept
            reason = (
                f"{moved}: pruning is off" if moved else "in no manifest; not deleted, since pruning is off"
            )
            self.found.append(Withheld(address, root, reason))
            return
        if PROTECT_TAG in obj.tags:
            self.found.append(Withheld(address, root, "protected (protect: true when last applied)"))
            return
        registration = registered_elsewhere(obj)
        if registration is not None:
            self.found.append(Withheld(address, root, f"registered dynamically ({registration})"))
            return
        cascade: tuple[Cascaded, ...] = ()
        if children(kind.kind):
            below = [(k, o) for k in children(kind.kind) for o in k.live_under(self.live, obj.id)]
            foreign = [o for _k, o in below if self.owner not in o.tags or registered_elsewhere(o)]
            if foreign or not self.live.complete:
                plural = " and ".join(k.plural for k in children(kind.kind))
                reason = (
                    f"it has {len(foreign)} {plural} that mcp-reconciler does not manage, "
                    "and deleting it would delete them"
                    if foreign
                    else f"its {plural} were not fetched"
                )
                self.found.append(Withheld(address, root, reason))
                return
            if kind.delete_cascades:  # listed under it, and counted by the summary and the budget alike
                cascade = tuple(Cascaded(k.kind, o.name, o.id) for k, o in sorted(below, key=_by_kind_name))
            for below_kind, below_obj in below if not kind.delete_cascades else ():
                self._prune(below_kind, below_obj, _Parent(path, obj.id))
        self.found.append(
            Change(
                kind.kind,
                Action.DELETE,
                obj.name,
                server=_parent_name(parent),
                id=obj.id,
                server_id=parent.id,
                fingerprint=fingerprint(obj.fields),
                notes=(moved,) if moved else (),
                surface=obj.surface,
                cascade=cascade,
                removes_secrets=self._secret_removals(kind, obj, path, cascade),
            )
        )

    def _secret_removals(
        self, kind: KindDescriptor, obj: LiveObject, path: tuple[str, ...], cascade: tuple[Cascaded, ...]
    ) -> tuple[SecretRemoval, ...]:
        """With ``pruneSecrets``: the secrets of the clients a delete removes, at their default place
        (``defaultSink``, ``<server>/<client>``), unless a client in the manifests uses that place."""
        sink = self.manifest.project.defaultSink
        if not self.manifest.project.pruneSecrets or not sink:
            return ()
        gone = [(obj, path)] if kind.holds_secret else []
        below = {(item.kind, item.id) for item in cascade if KINDS[item.kind].holds_secret}
        for below_kind in children(kind.kind) if below else ():
            gone += [
                (o, (*path, o.name))
                for o in below_kind.live_under(self.live, obj.id)
                if (below_kind.kind, o.id) in below
            ]
        used = {
            (client.secret.sink or sink, secret_key(server.name, client))
            for server in self.manifest.servers
            for client in server.clients
        }
        return tuple(
            SecretRemoval(where[-1], str(o.fields.get("clientId") or ""), sink, "/".join(where))
            for o, where in gone
            if (sink, "/".join(where)) not in used
        )

    def _secret_target(self, kind: KindDescriptor, desired: Desired) -> SecretTarget | None:
        if not kind.holds_secret:
            return None
        ref = desired.secret
        sink = (ref.sink if ref else None) or self.manifest.project.defaultSink or ""
        rotation = None if ref is None or ref.rotation is None else str(ref.rotation)
        key = (ref.key if ref else None) or "/".join(desired.path)
        return SecretTarget(sink, key, rotation)

    # ---- shared --------------------------------------------------------------------------------

    def _update(
        self, kind: Kind, desired: Desired, *, live: LiveObject, owned: bool, rotation: str | None
    ) -> Change | None:
        """An update (or adoption) when anything differs; desired tags keep the system tags."""
        live_tags = list(live.tags)
        visible = {**live.fields, "tags": user_tags(live_tags, self.owner)}
        fields = list(field_changes(visible, desired.fields, KINDS[kind].shapes))
        was_protected = PROTECT_TAG in live_tags
        if owned and desired.protect != was_protected:
            fields.append(FieldChange("protect", was_protected, desired.protect))
        if owned and not fields:
            return None
        base_tags = (
            _text_list(desired.fields["tags"])
            if "tags" in desired.fields
            else user_tags(live_tags, self.owner)
        )
        tags = with_system_tags(base_tags, self.owner, protect=desired.protect, rotation=rotation)
        action = Action.UPDATE if owned else Action.ADOPT
        notes = () if owned else ("takes over the live object: stamps the ownership tag",)
        return Change(
            kind,
            action,
            desired.name,
            id=live.id,
            fingerprint=fingerprint(live.fields),
            fields=tuple(fields),
            desired={**desired.fields, "tags": _json_list(tags)},
            notes=notes,
        )

    def _targeted(self, changes: list[Change], problems: list[str]) -> list[Change]:
        if not self.options.targets:
            return changes
        chosen = [c for c in changes if any(t.covers(c) for t in self.options.targets)]
        created = {(c.kind, c.path) for c in chosen if c.action is Action.CREATE}
        for change in chosen:
            parent_kind = KINDS[change.kind].parent
            if parent_kind is None or change.server_id is not None:
                continue
            if (parent_kind, change.path[:-1]) not in created:
                problems.append(
                    f"{change.address} needs its {parent_kind} created first: "
                    f"add --target {parent_kind}:{'/'.join(change.path[:-1])}"
                )
        return chosen

    def _in_scope(self, root: str) -> bool:
        return not self.options.targets or any(t.root == root for t in self.options.targets)

    def _over_budget(self, plan: Plan) -> str | None:
        """Why ``plan`` deletes more than the budget allows, with the option that accepts it; else None."""
        deletes = plan.deletes
        if not deletes:
            return None
        allowed = self._delete_budget()
        override = self.options.allow_deletes
        if deletes <= allowed or (override is not None and deletes <= override):
            return None
        setting = self.manifest.project.maxDeletes
        given = f" and --allow-deletes {override}" if override is not None else ""
        return (
            f"the plan deletes {deletes} object{'s' if deletes != 1 else ''} ({_deleted_kinds(plan)}), "
            f"more than maxDeletes allows ({setting}: {allowed}){given}; review the deletes in the plan, "
            f"then accept them with --allow-deletes {deletes}"
        )

    def _delete_budget(self) -> int:
        setting = self.manifest.project.maxDeletes
        if isinstance(setting, int):
            return setting
        managed = sum(1 for _kind, _path, obj in live_objects(self.live) if self.owner in obj.tags)
        return math.floor(managed * int(setting.rstrip("%")) / 100)


def _flatten(found: _Found, changes: list[Change], withheld: list[Withheld], problems: list[str]) -> None:
    for item in found:
        if isinstance(item, list):
            _flatten(item, changes, withheld, problems)
        elif isinstance(item, Change):
            changes.append(item)
        elif isinstance(item, Withheld):
            withheld.append(item)
        else:
            problems.append(item)


def check_targets(manifest: Manifest, live: LiveState, targets: Iterable[Target]) -> None:
    """Each target names an object that exists in the manifests or live: a typo is an error, not a
    silently empty plan."""
    targets = list(targets)
    if not targets:
        return  # nothing to look up: spare a large project the walk of both trees
    known = set(desired_paths(desired_objects(manifest)))
    known.update((kind, path) for kind, path, _obj in live_objects(live))
    for target in targets:
        chain = lineage(target.kind)
        for n, kind in enumerate(chain, start=1):
            path = target.path[:n]
            if (kind.kind, path) not in known:
                where = f"in {chain[n - 2].kind} {path[-2]!r}" if n > 1 else "in the manifests or live"
                raise UsageError(f"--target {target}: no {kind.kind} named {path[-1]!r} {where}")


def _target_form(kind: Kind) -> str:
    """``client:SERVER/NAME``: how a target of ``kind`` is written."""
    return f"{kind}:" + "/".join([*(d.kind.value.upper() for d in lineage(kind)[:-1]), "NAME"])


def _address(kind: Kind, path: tuple[str, ...]) -> str:
    """The address as data (``Change.address`` is the escaped form for display)."""
    return f'{kind} "{"/".join(path)}"'


def _parent_name(parent: _Parent) -> str | None:
    return "/".join(parent.path) if parent.path else None


def _text_list(value: JsonValue | None) -> list[str]:
    return [str(item) for item in value] if isinstance(value, list) else []


def _json_list(items: Iterable[str]) -> list[JsonValue]:
    return list(items)


def _by_kind_name(item: tuple[KindDescriptor, LiveObject]) -> tuple[str, str]:
    return (item[0].kind.value, item[1].name)


def _deleted_kinds(plan: Plan) -> str:
    """``1 server and 2 clients``: what a plan's deletes remove, by kind, cascades included."""
    counts = plan.deletes_by_kind()
    words = [f"{n} {kind.value if n == 1 else KINDS[kind].plural}" for kind, n in counts.items() if n]
    return " and ".join(words)


def _conflict(address: str, *, live_id: str) -> str:
    return (
        f"{address} exists in Descope ({live_id}) but is not managed by mcp-reconciler: "
        "set adopt: true to take it over, or choose another name"
    )


def _order(change: Change) -> tuple[int, str, str]:
    return (level(change.kind, change.action), change.server or change.name, change.name)
