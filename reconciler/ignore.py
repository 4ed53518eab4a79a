"""Which live objects are someone else's: another reconciler's, or named by the Project's ignore rules (pure).

Several teams may share one Descope project, each with its own ``ownershipTag``. A live object is
someone else's when it carries another reconciler's ownership tag (a tag that starts with
``managed-by:``, the convention of the default tag, or one that an ``ownershipTag`` rule names), or
when a ``tag`` or ``name`` rule matches it; a client under such a server is someone else's with it.
An object that carries this Project's ownership tag is never ignored, whatever the rules say.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from reconciler.descope.wire import LiveState
from reconciler.kinds import Kind, KindDescriptor, LiveObject, children, roots
from reconciler.models import IgnoreRule, ProjectSpec

OWNER_PREFIX = "managed-by:"  # the convention of the default ownership tag, managed-by:mcp-reconciler


@dataclass(frozen=True)
class Scope:
    """What this Project manages and what it leaves to others: its ownership tag and ignore rules."""

    owner: str
    rules: tuple[IgnoreRule, ...] = ()

    @classmethod
    def of(cls, project: ProjectSpec) -> Scope:
        return cls(project.ownershipTag, project.ignore)

    def other_owner(self, tags: Iterable[str]) -> str | None:
        """Another reconciler's ownership tag among ``tags``; None when they hold ours, or no other."""
        tags = tuple(tags)
        if self.owner in tags:
            return None
        named = {rule.ownershipTag for rule in self.rules if rule.ownershipTag is not None}
        return next((tag for tag in tags if tag in named or tag.startswith(OWNER_PREFIX)), None)

    def rule_for(self, path: tuple[str, ...], obj: LiveObject) -> str | None:
        """The first ``tag`` or ``name`` rule that matches ``obj`` at ``path`` (its names from the
        root), as messages name it; ``ownershipTag`` rules name other owners (:meth:`other_owner`)."""
        return self._first_rule(path, obj, owners=False)

    def why_ignored(self, path: tuple[str, ...], obj: LiveObject) -> str | None:
        """Why ``obj`` at ``path`` is someone else's by itself (its parent aside), or None: the first
        rule that matches it (``ignore rule 2 (tag "legacy")``), else another reconciler's tag."""
        rule = self._first_rule(path, obj, owners=True)
        if rule is not None:
            return rule
        other = self.other_owner(obj.tags)
        return f'another reconciler\'s (ownership tag "{other}")' if other is not None else None

    def ignored(self, live: LiveState, *, claimed: Collection[str] = ()) -> dict[tuple[Kind, str], str]:
        """Every live object that is someone else's, by kind and id, with why; the objects below an
        ignored one are ignored with it. ``claimed`` are ids of objects a manifest entry names, which
        plan matches (to adopt them, or to refuse the entry): neither they nor, through them, the
        objects below them are ignored."""
        found: dict[tuple[Kind, str], str] = {}

        def walk(
            kinds: Sequence[KindDescriptor], parent: LiveObject | None, path: tuple[str, ...], why: str | None
        ) -> None:
            for kind in kinds:
                for obj in kind.live_under(live, parent.id if parent else None):
                    here = (*path, obj.name)
                    reason = None if obj.id in claimed else why or self.why_ignored(here, obj)
                    if reason is not None:
                        found[(kind.kind, obj.id)] = reason
                    below = f'its {kind.kind} "{"/".join(here)}" is ignored: {reason}' if reason else None
                    walk(children(kind.kind), obj, here, why or below)

        walk(roots(), None, (), None)
        return found

    def candidates(self, objects: Iterable[LiveObject], *, under: tuple[str, ...]) -> Candidates:
        """The live objects of one kind under one parent (at path ``under``), sorted out for matching
        by name: ours and unowned ones, another reconciler's, and those a rule ignores."""
        found = Candidates({}, {}, {})
        for obj in objects:
            rule = self.rule_for((*under, obj.name), obj)
            if rule is not None:
                found.ignored.setdefault(obj.name, []).append((obj, rule))
            elif self.other_owner(obj.tags) is not None:
                found.others.setdefault(obj.name, []).append(obj)
            else:
                found.ours.setdefault(obj.name, []).append(obj)
        return found

    def _first_rule(self, path: tuple[str, ...], obj: LiveObject, *, owners: bool) -> str | None:
        if self.owner in obj.tags:
            return None
        for number, rule in enumerate(self.rules, start=1):
            if (
                (owners and rule.ownershipTag is not None and rule.ownershipTag in obj.tags)
                or (rule.tag is not None and rule.tag in obj.tags)
                or (rule.name is not None and name_matches(rule.name, path))
            ):
                return describe(number, rule)
        return None


@dataclass(frozen=True)
class Candidates:
    """Live objects of one kind under one parent, by name, as plan matches manifest entries to them."""

    ours: dict[str, list[LiveObject]]  # ours, and unowned ones: matched, and pruned when ours
    others: dict[str, list[LiveObject]]  # another reconciler's: matched only when no object of ours is
    ignored: dict[str, list[tuple[LiveObject, str]]]  # matched by a tag or name rule (why): never matched

    def matches(self, name: str) -> list[LiveObject]:
        """The objects a manifest entry of ``name`` is matched to: ours (or unowned), else another
        reconciler's (a conflict unless the entry adopts it); never those a rule ignores."""
        return self.ours.get(name) or self.others.get(name, [])


def describe(number: int, rule: IgnoreRule) -> str:
    """``ignore rule 2 (tag "legacy")``: a rule as messages name it, numbered from 1."""
    return f'ignore rule {number} ({rule.key} "{rule.value}")'


def name_matches(pattern: str, path: Sequence[str]) -> bool:
    """Whether a ``name`` rule's pattern matches a path of names written as ``server/client``
    (fnmatch, case-sensitive), one ``/``-separated part at a time: ``*`` never crosses a ``/``, so
    "legacy-*" names servers and "*/ci-*" clients."""
    parts, names = pattern.split("/"), "/".join(path).split("/")
    return len(parts) == len(names) and all(
        fnmatchcase(name, part) for name, part in zip(names, parts, strict=True)
    )
