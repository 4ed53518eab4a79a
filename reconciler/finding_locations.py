"""Where in the manifests a finding is: the line and column of the field it is about (edge: reads files).

A Manifest keeps only where each object starts; the few files that hold findings are read again here
for the position of each finding's field, as ``validate`` reports problems. A file that changed or
vanished since it was loaded leaves its findings at their object's position. Files are named relative
to the working directory when they lie inside it, as a saved plan records manifest paths and as code
scanning expects them (relative to the repository's root).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from reconciler.findings import Finding
from reconciler.models import Location
from reconciler.yamlsource import DocPath, Document, read_documents


def locate(findings: Sequence[Finding], locations: Mapping[tuple[str, ...], Location]) -> list[Finding]:
    """``findings`` with their ``location``: the field's position when it can be found, else the
    object's (``locations`` as in :attr:`reconciler.models.Manifest.locations`), else none."""
    documents: dict[str, list[Document]] = {}
    located: list[Finding] = []
    for finding in findings:
        start = locations.get(_key(finding))
        if start is None:
            located.append(finding)
            continue
        if start.file not in documents:
            documents[start.file] = _read(start.file)
        position = _field_position(documents[start.file], start, finding) or start
        located.append(replace(finding, location=_from_here(position)))
    return located


def object_location(finding: Finding, locations: Mapping[tuple[str, ...], Location]) -> Location | None:
    """Where the finding's object starts, without reading any file."""
    start = locations.get(_key(finding))
    return _from_here(start) if start is not None else None


def _key(finding: Finding) -> tuple[str, ...]:
    """The finding's key in ``Manifest.locations``: ``("server", s)`` or ``("client", s, c)``."""
    return ("server" if finding.client is None else "client", *finding.object_path)


def _from_here(location: Location) -> Location:
    return Location(_relative(location.file, os.getcwd()), location.line, location.column)


@functools.lru_cache(maxsize=4096)  # one answer per file and folder: thousands of findings, a few files
def _relative(file: str, cwd: str) -> str:
    here = _real(cwd)
    resolved = os.path.realpath(file)
    if resolved != here and not resolved.startswith(os.path.join(here, "")):
        return file
    return os.path.relpath(resolved, here)


@functools.lru_cache(maxsize=16)
def _real(folder: str) -> str:
    return os.path.realpath(folder)


def _read(file: str) -> list[Document]:
    # Positions do not depend on variables: an unresolved ${VAR} is a problem to ignore here.
    docs, _problems = read_documents(Path(file), file, {})
    return docs


def _field_position(documents: Sequence[Document], start: Location, finding: Finding) -> Location | None:
    for doc in documents:
        base = _base_of(doc, start)
        if base is None:
            continue
        pos = doc.position((*base, *finding.path))
        return Location(start.file, pos.line, pos.column)
    return None


def _base_of(doc: Document, start: Location) -> DocPath | None:
    """The path in ``doc`` of the object that starts at ``start``: the document itself, or a client
    written inside a server (``clients[i]``)."""
    if (doc.start.line, doc.start.column) == (start.line, start.column):
        return ()
    for path, place in doc.value_positions.items():
        if len(path) == 2 and path[0] == "clients" and (place[0], place[1]) == (start.line, start.column):
            return path
    return None
