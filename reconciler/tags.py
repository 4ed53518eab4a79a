"""The tags the reconciler keeps on live objects: ownership, protection and the rotation marker (pure).

Descope objects have no labels or annotations, only ``tags``, so the reconciler's own bookkeeping
lives there and is hidden from every diff: the ownership tag (from the Project), a protect tag
(``protect: true`` is remembered on the object, so pruning still honours it after the manifest
entry is gone), and the client's last applied rotation marker.
"""

from __future__ import annotations

from collections.abc import Iterable

PROTECT_TAG = "mcp-reconciler:protect"
ROTATION_PREFIX = "mcp-reconciler:rotation="


def is_system_tag(tag: str, *, ownership_tag: str) -> bool:
    return tag in (ownership_tag, PROTECT_TAG) or tag.startswith(ROTATION_PREFIX)


def user_tags(tags: Iterable[str], ownership_tag: str) -> list[str]:
    """The tags people manage, in their original order."""
    return [tag for tag in tags if not is_system_tag(tag, ownership_tag=ownership_tag)]


def rotation_markers(tags: Iterable[str]) -> list[str]:
    """Every rotation marker recorded on an object (normally one; more if someone edited the tags)."""
    return [tag[len(ROTATION_PREFIX) :] for tag in tags if tag.startswith(ROTATION_PREFIX)]


def rotation_marker(tags: Iterable[str]) -> str | None:
    return next(iter(rotation_markers(tags)), None)


def reserved_tag_problem(tag: str, *, ownership_tag: str) -> str | None:
    """Why a manifest may not write ``tag`` itself, or None when it may."""
    if tag == ownership_tag:
        return (
            f"'{tag}' is the ownership tag: mcp-reconciler stamps it (use adopt: true to take an object over)"
        )
    if tag == PROTECT_TAG:
        return f"'{tag}' is reserved: write protect: true instead"
    if tag.startswith(ROTATION_PREFIX):
        return f"'{tag}' is reserved: write secret.rotation instead"
    return None


def with_system_tags(
    tags: Iterable[str], ownership_tag: str, *, protect: bool, rotation: str | None = None
) -> list[str]:
    """``tags`` (user tags) followed by the system tags an owned object carries."""
    result = [*dict.fromkeys(user_tags(tags, ownership_tag)), ownership_tag]
    if protect:
        result.append(PROTECT_TAG)
    if rotation is not None:
        result.append(ROTATION_PREFIX + rotation)
    return result
