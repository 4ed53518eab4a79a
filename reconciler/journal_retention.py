"""Journal retention: after an apply, the journal is cut back to what readers still need.

The bound. For each project in the journal, the events of its last ``KEEP_RUNS`` runs (a run is
one ``run`` id: one apply, or one ``secrets check --fix``; ``MCP_RECONCILER_JOURNAL_KEEP_RUNS``,
default 50, ``0`` keeps everything), plus, whatever run wrote them, the events of every delivery
still open. Nothing else reads the journal back: the lock, ``drift`` and ``plan`` never do, and
``secrets check`` and the next apply read only the open deliveries (``journal.open_deliveries``:
creates, rotations and adoptions whose secret may not be in its sink, and rotations whose marker is
not recorded yet). So the journal holds at most ``KEEP_RUNS`` runs per project, plus one episode
per open delivery (its events since it last closed), and a torn line (a crash mid-write) is dropped.

When. ``workflow`` calls :func:`compact` once an apply has closed its journal, still holding the
project's lock, and only when the journal holds more than ``KEEP_RUNS`` runs of some project.

Crash safety. The new journal is written with ``files.write_atomically`` (temp file, fsync,
rename, folder fsync): a crash (SIGKILL included) leaves the old journal or the new one, never a
mix; a temp file left by a killed compaction is removed by the next. Before anything is replaced, the
open deliveries of every project are computed from the old events and from the kept ones
(``journal.open_among``): when they differ (a reader's rules changed and these rules did not follow),
the journal is left as it is.

Concurrent writers. The project lock excludes another apply of the same project, but a journal may be
shared by several projects (and a lock folder by only some users). So every ``Journal`` holds a
shared ``flock`` on the file while it is open, and a compaction takes an exclusive one without
waiting: while any run has the journal open it is skipped (that run compacts when it ends). A
writer that opened the file while a compaction held it finds, once it gets its shared lock, that
the file was replaced, and opens the new one (``journal._open_shared``): no event is ever appended
to a file being replaced.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler.errors import UsageError
from reconciler.files import write_atomically
from reconciler.journal import CLOSING, OPENING, open_among

log = logging.getLogger("reconciler.journal_retention")

KEEP_RUNS_VARIABLE = "MCP_RECONCILER_JOURNAL_KEEP_RUNS"
DEFAULT_KEEP_RUNS = 50
MAX_KEEP_RUNS = 1_000_000
FILE_MODE = 0o600

Line = tuple[str, dict[str, Any] | None]  # the line as written, and its event (None: a torn line)


@dataclass(frozen=True)
class Compacted:
    """What a compaction kept and dropped, in lines."""

    kept: int
    dropped: int


def keep_runs(environ: Mapping[str, str]) -> int:
    """The runs per project to keep (0: keep everything), from ``MCP_RECONCILER_JOURNAL_KEEP_RUNS``."""
    text = environ.get(KEEP_RUNS_VARIABLE, "").strip()
    if not text:
        return DEFAULT_KEEP_RUNS
    if not text.isdigit() or int(text) > MAX_KEEP_RUNS:
        shown = text if len(text) <= 40 else text[:39] + "…"
        raise UsageError(
            f"{KEEP_RUNS_VARIABLE}={shown!r} is not a number of runs: give a whole number from 1 to "
            f"{MAX_KEEP_RUNS:,} (the default is {DEFAULT_KEEP_RUNS}), or 0 to keep the whole journal"
        )
    return int(text)


def compact_quietly(path: Path, *, keep: int) -> Compacted | None:
    """:func:`compact`, for the end of a run that succeeded: a failure is logged, never raised."""
    try:
        return compact(path, keep=keep)
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        log.warning("the journal %s was not compacted (%s); it is left whole", path, reason)
        return None


def compact(path: Path, *, keep: int) -> Compacted | None:
    """Cut the journal at ``path`` back to the bound (module docstring); None when it is within it,
    absent, or open in another run. Raises OSError when it cannot be read or replaced."""
    if keep <= 0:
        return None
    with _exclusive(path) as lines:
        if lines is None:
            return None
        kept = retained(lines, keep=keep)
        if len(kept) == len(lines):
            return None
        if not _same_open_deliveries(lines, kept):
            log.warning("the journal %s was not compacted: its open deliveries would differ", path)
            return None
        _remove_leftovers(path)
        write_atomically(path, "".join(text for text, _ in kept), mode=FILE_MODE, folder_sync_required=True)
    log.info("compacted the journal %s: kept %d lines, dropped %d", path, len(kept), len(lines) - len(kept))
    return Compacted(kept=len(kept), dropped=len(lines) - len(kept))


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[list[Line] | None]:
    """The journal's lines, read under an exclusive ``flock`` held until the block ends; None when
    the journal is absent or another process holds it (a run appending to it)."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        yield None
        return
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            yield None  # a run has it open; that run compacts when it ends
            return
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode) or not os.path.samestat(
            status, os.stat(path, follow_symlinks=False)
        ):
            yield None  # replaced since we opened it: by another compaction, which did the work
            return
        with os.fdopen(descriptor, "rb", closefd=False) as stream:
            data = stream.read()
        yield [_parsed(line) for line in data.decode("utf-8", errors="replace").splitlines(keepends=True)]
    finally:
        os.close(descriptor)  # releases the lock, after the new journal is in place


def _parsed(line: str) -> Line:
    text = line if line.endswith("\n") else line + "\n"
    try:
        event = json.loads(line)
    except (ValueError, RecursionError):
        return text, None  # a torn line: read_events skips it too
    if not isinstance(event, dict) or not isinstance(event.get("event"), str):
        raise ValueError("a line is not a journal event")  # read_events refuses it: leave it to a person
    return text, event


def retained(lines: list[Line], *, keep: int) -> list[Line]:
    """The lines to keep: each project's last ``keep`` runs, and every open delivery's episode."""
    runs: dict[str, list[str]] = {}  # project → its run ids, in order of first appearance
    for _, event in lines:
        if event is not None:
            project_runs = runs.setdefault(str(event.get("project")), [])
            if str(event.get("run")) not in project_runs:
                project_runs.append(str(event.get("run")))
    if all(len(ids) <= keep for ids in runs.values()):
        return lines
    recent = {(project, run) for project, ids in runs.items() for run in ids[-keep:]}
    needed = open_episodes(lines)
    return [
        (text, event)
        for index, (text, event) in enumerate(lines)
        if event is not None
        and (index in needed or (str(event.get("project")), str(event.get("run"))) in recent)
    ]


def open_episodes(lines: list[Line]) -> set[int]:
    """The indices of the events of every delivery still open: for each client whose last opening
    event was never closed, every event of it since it was last closed (the rules of
    ``journal.open_among``, which :func:`compact` checks the result against)."""
    state: dict[tuple[str, str, str], dict[str, Any]] = {}  # client → its merged opening events
    episode: dict[tuple[str, str, str], list[int]] = {}
    for index, (_, event) in enumerate(lines):
        if event is None:
            continue
        key = (str(event.get("project")), str(event.get("server", "")), str(event.get("client", "")))
        name = event["event"]
        if name in OPENING:
            state[key] = {**state.get(key, {}), **event}
        elif name == "delivered" and state.get(key, {}).get("rotation") is not None:
            state[key] = {**state[key], "event": "rotate-delivered"}
        elif name == "rotation-recorded" and state.get(key, {}).get("event") == "undelivered":
            state[key] = {k: v for k, v in state[key].items() if k != "rotation"}
        elif name in CLOSING:
            state.pop(key, None)
            episode.pop(key, None)
            continue
        if key in state:
            episode.setdefault(key, []).append(index)
    return {index for key in state for index in episode.get(key, [])}


def _same_open_deliveries(before: list[Line], after: list[Line]) -> bool:
    old = [event for _, event in before if event is not None]
    new = [event for _, event in after if event is not None]
    for project in {event["project"] for event in old if isinstance(event.get("project"), str)}:
        if sorted(map(repr, open_among(old, project))) != sorted(map(repr, open_among(new, project))):
            return False
    return True


def _remove_leftovers(path: Path) -> None:
    """Temp files of a compaction killed before its rename (``write_atomically``'s names): under the
    exclusive lock, no other compaction of this journal is running."""
    for leftover in path.parent.glob(f".{path.name}.*.tmp"):
        with contextlib.suppress(OSError):
            leftover.unlink()
