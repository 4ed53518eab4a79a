"""What a saved plan was made from, so ``apply plan.json`` can prove it is applying those (pure).

A saved plan is data, never configuration: apply reads the sinks (and everything else that decides
what runs or where secrets go) from the manifests, and the plan records only how to find them (the
paths and var files given to ``plan``), the options that shaped it, and a digest of each manifest
object. Apply reloads the manifests, recomputes the digests and refuses, naming each object that
differs, when they are not the ones the plan was made from.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any

from reconciler.models import Manifest
from reconciler.plan import Provenance, canonical_json
from reconciler.planner import PlanOptions


def made_from(
    manifest: Manifest, options: PlanOptions, *, paths: tuple[str, ...], var_files: tuple[str, ...]
) -> Provenance:
    """What a plan to be saved records about its making; only ``plan`` needs it, so only it pays for
    the digests (apply of a saved plan computes the current ones once, to compare)."""
    return Provenance(
        paths=paths,
        var_files=var_files,
        prune=options.prune,
        allow_deletes=options.allow_deletes,
        digests=manifest_digests(manifest),
    )


def manifest_digests(manifest: Manifest) -> dict[str, str]:
    """A digest of every manifest object that can change what apply does: the Project's settings,
    each sink's settings, each server (without its clients) and each client (with its secret's
    sink, key and rotation marker)."""
    project = manifest.project.mentioned()
    sinks = project.pop("sinks", {})
    digests = {"project settings": _digest(project)}
    digests.update({f'sink "{name}"': _digest(settings) for name, settings in sinks.items()})
    for server in manifest.servers:
        spec = server.mentioned()
        spec.pop("clients", None)
        digests[f'server "{server.name}"'] = _digest(spec)
        for client in server.clients:
            digests[f'client "{server.name}/{client.name}"'] = _digest(client.mentioned())
    return digests


def differences(recorded: Mapping[str, str], current: Mapping[str, str]) -> list[str]:
    """Each object that is new, gone or changed in ``current`` compared with ``recorded``."""
    found = [f"{name} was added" for name in sorted(current.keys() - recorded.keys())]
    found += [f"{name} was removed" for name in sorted(recorded.keys() - current.keys())]
    found += [
        f"{name} changed"
        for name in sorted(current.keys() & recorded.keys())
        if current[name] != recorded[name]
    ]
    return found


def unsafe_path(path: str) -> bool:
    """Whether a path recorded in a plan file could lead outside the working directory."""
    if not path or "\x00" in path:
        return True
    posix, windows = PurePosixPath(path), PureWindowsPath(path)
    return (
        posix.is_absolute()
        or windows.is_absolute()
        or bool(windows.drive)
        or ".." in posix.parts
        or ".." in windows.parts
    )


def _digest(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()[:32]
