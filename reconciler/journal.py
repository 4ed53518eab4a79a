"""The apply journal: one JSON line per event, flushed to disk before the step it announces.

It lets a person see exactly what a run did, and lets the next run finish what a crash or a failed
delivery left open: a client created (or a secret rotated) whose secret did not reach its sink. It
never holds a secret; for a rotation it holds a salted digest of the secret *before* the rotation,
which is enough to tell afterwards whether the rotation happened, and useless for anything else.

Durability, and what each fsync is for. An event is on disk (fsynced) before the call that writes
it returns, so before the step it announces is taken. ``write`` syncs one event, ``write_many``
several with one fsync (a crash during it leaves a prefix of them, the last perhaps torn, which
``read_events`` skips), and ``record``, for the applier's concurrent changes, returns once an fsync
covering its line is done, one fsync shared by every ``record`` of the same turn of the event loop
(group commit). So the N changes of one apply step cost a few fsyncs, not a few per change:

- ``create-started``, ``rotate-started``, ``adopt-started``: needed. They must be durable before the
  API call that issues (or reads) the secret: after a crash, the open ones are the only trace of a
  secret that exists in Descope and may not be in its sink; the next run reads the current secret
  and delivers it (``delivery.resume_all``).
- ``delivered``: written only after the sink's write returned, which for the file sink means the data
  and the rename are durable (``files.write_atomically``), never before: a ``delivered`` on disk with
  the secret not in the sink would lose it. Its own sync is not needed for safety (a lost
  ``delivered`` reopens a delivery that the next run repeats, idempotently, with the current
  secret), but keeps the journal true after a machine crash; the deliveries of one step share one
  sync (``delivery.Courier.hand_off_many``). The same holds for ``undelivered`` (the delivery is
  open anyway), ``rotation-recorded``, ``abandoned``, ``create-absent`` and ``rotate-absent``.
- ``started``, ``failed``, ``skipped``, ``<kind>-created``, ``apply-started``, ``apply-finished``:
  not read by any recovery (the next plan reads the live project), synced so that a person reading
  the journal after a crash sees every step the run had begun; with group commit, the changes of a
  step that announce it together share one fsync.
- ``finished`` announces nothing: ``note`` writes it without a sync of its own, and the applier
  syncs once at the end of each level (``sync``), so changes that end at different moments (updates,
  whose answers come one by one) do not cost one fsync each. A process killed before that sync
  loses nothing (the line was written to the OS); a machine crash may lose such lines, and the
  journal then shows a change begun but not ended, which the next plan, read from the live project,
  settles.
- A new journal's folder, once: the file's name is durable only then.

Where it lives: ``.mcp-reconciler/journal.jsonl`` beside the file that holds the Project document
(:func:`journal_path`), never relative to the working directory, so that ``apply`` and ``secrets
check`` started from the repository's root, from the manifests' folder or from anywhere else (and
``apply plan.json`` of a plan saved elsewhere) read and write one journal. ``--state-dir``
(``MCP_RECONCILER_STATE_DIR``) moves the folder, ``--journal`` (``MCP_RECONCILER_JOURNAL``) names the
file. A folder created for the journal gets a ``.gitignore`` of ``*``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import secrets as random_source
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler.errors import JournalError
from reconciler.files import NotRegularFile, fsync_folder, open_append
from reconciler.secret import Secret

# The state folder: beside the file that holds the Project document (never the working directory), so
# every run on those manifests, from wherever it is started, finds the same journal. Overridable as a
# folder (--state-dir) or as the journal file itself (--journal), which wins.
STATE_DIR_NAME = ".mcp-reconciler"
JOURNAL_NAME = "journal.jsonl"
STATE_DIR_VARIABLE = "MCP_RECONCILER_STATE_DIR"
JOURNAL_VARIABLE = "MCP_RECONCILER_JOURNAL"
# Written into a folder this module creates for the journal, as pytest does in its cache: the folder
# holds local state (mode 0600 files, perhaps crash logs) that never belongs in Git.
GITIGNORE_TEXT = "# Created by mcp-reconciler: its state (the journal) never belongs in Git.\n*\n"


def state_folder(manifest_folder: Path, *, state_dir: Path | None = None) -> Path:
    """The state folder, absolute: ``state_dir`` when given (relative to the working directory, as any
    command-line path), else ``.mcp-reconciler`` in ``manifest_folder`` (the Project file's folder)."""
    chosen = state_dir if state_dir is not None else manifest_folder / STATE_DIR_NAME
    return Path(os.path.abspath(chosen))


def journal_path(
    manifest_folder: Path, *, journal: Path | None = None, state_dir: Path | None = None
) -> Path:
    """The journal a run on the manifests in ``manifest_folder`` writes, absolute: ``journal`` when
    given, else ``journal.jsonl`` in the state folder (:func:`state_folder`)."""
    if journal is not None:
        return Path(os.path.abspath(journal))
    return state_folder(manifest_folder, state_dir=state_dir) / JOURNAL_NAME


# Events whose secret may not have reached its sink, and the events that close them. A rotation
# stays open after its delivery until its marker is recorded on the client: otherwise a crash in
# between would leave the old marker, and the next plan would rotate a second time.
OPENING = {"create-started", "rotate-started", "adopt-started", "undelivered"}
# "abandoned": neither the client nor its sink is in the manifests any more (nothing to deliver to).
CLOSING = {"delivered", "create-absent", "rotate-absent", "rotation-recorded", "abandoned"}


def digest(secret: Secret, salt: str) -> str:
    """A salted digest of a secret: tells two secrets apart without revealing either."""
    return hashlib.sha256((salt + secret.reveal()).encode()).hexdigest()[:32]


class Journal:
    """Appends events to a JSON-lines file (mode 0600), each durable before the call writing it returns.

    Opening it raises JournalError, before anything changes, when the path is a symbolic link, a
    folder or anything but a regular file, or cannot be created or written; so does a failed write.
    """

    def __init__(self, path: Path, *, project: str, run_id: str | None = None) -> None:
        path = Path(os.path.abspath(path))  # every message names the file wherever the run started
        self.path = path
        self.project = project
        self.run_id = run_id or time.strftime(
            "%Y%m%dT%H%M%SZ", time.gmtime()
        ) + "-" + random_source.token_hex(3)
        try:
            make_folder(path.parent)
        except OSError as exc:
            blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
            reason = f"{blocker} is a file, not a folder" if blocker is not None else _reason(exc)
            raise JournalError(
                f"cannot create the folder of the journal {path}: {reason}: fix it or choose another "
                "path with --journal"
            ) from None
        created = not path.exists()
        self._stream = os.fdopen(_open_shared(path), "a", encoding="utf-8")
        self._written = 0  # lines written (flushed to the OS)
        self._synced = 0  # of them, lines known durable
        self._pending: asyncio.Future[None] | None = None  # the fsync the next ``record`` joins
        if created:
            # Each event is fsynced, but a new file's name is durable only once its folder is.
            with contextlib.suppress(OSError):
                fsync_folder(path.parent)
        elif _ends_torn(path):
            # A crash mid-line left no newline: end that line, or this run's first event would join it
            # and be skipped with it as torn.
            self._stream.write("\n")
            self._stream.flush()

    def write(self, event: str, **fields: Any) -> None:
        """Append one event; durable when this returns."""
        self.write_many([(event, fields)])

    def write_many(self, events: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
        """Append several events (name, fields), with one fsync; all durable when this returns."""
        self._append([self._line(event, fields) for event, fields in events])
        self.sync()

    def note(self, event: str, **fields: Any) -> None:
        """Append an event that announces no step (a change's ``finished``): written at once, durable
        with the next sync (``sync``, or any later event's), which this does not wait for."""
        self._append([self._line(event, fields)])

    def sync(self) -> None:
        """Make every event written so far durable (no fsync when they already are)."""
        if self._synced == self._written:
            return
        written = self._written
        try:
            os.fsync(self._stream.fileno())
        except OSError as exc:
            raise JournalError(f"cannot write the journal {self.path}: {_reason(exc)}") from None
        self._synced = written

    async def record(self, event: str, **fields: Any) -> None:
        """Append one event; durable when this returns. For concurrent tasks: the line is written at
        once, and the fsync is shared with every other ``record`` made in the same turn of the event
        loop (it runs once they have all written), so N changes announcing a step cost one fsync."""
        self._append([self._line(event, fields)])
        if self._pending is None:
            loop = asyncio.get_running_loop()
            self._pending = loop.create_future()
            loop.call_soon(self._sync_pending)
        # shield: a waiter cancelled (Ctrl+C) must not cancel the fsync the others wait for
        await asyncio.shield(self._pending)

    def _line(self, event: str, fields: Mapping[str, Any]) -> str:
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        record = {"time": now, "run": self.run_id, "project": self.project, "event": event}
        record.update({k: v for k, v in fields.items() if v is not None})
        return json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n"

    def _append(self, lines: list[str]) -> None:
        try:
            self._stream.write("".join(lines))
            self._stream.flush()
        except OSError as exc:
            raise JournalError(f"cannot write the journal {self.path}: {_reason(exc)}") from None
        self._written += len(lines)

    def _sync_pending(self) -> None:
        pending, self._pending = self._pending, None
        if pending is None or pending.done():
            return
        try:
            self.sync()
        except JournalError as exc:
            pending.set_exception(exc)
        else:
            pending.set_result(None)

    def close(self) -> None:
        try:
            self._stream.close()
        except OSError as exc:  # a buffered line that could not be written
            raise JournalError(f"cannot write the journal {self.path}: {_reason(exc)}") from None


def make_folder(folder: Path) -> None:
    """Create ``folder`` (mode 0700, with its parents) unless it exists; a folder created here gets a
    ``.gitignore`` of ``*`` (best effort: the journal does not depend on it), so it never lands in Git."""
    if folder.is_dir():
        return
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        descriptor = os.open(
            folder / ".gitignore", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644
        )
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            stream.write(GITIGNORE_TEXT)


def _open(path: Path) -> int:
    """A descriptor to append to ``path``: a regular file (created 0600), never through a symlink."""
    if path.is_symlink():
        raise JournalError(
            f"the journal {path} is a symbolic link; refusing to write the journal through it: "
            "point --journal at a regular file"
        )
    if path.is_dir():
        raise JournalError(f"the journal {path} is a folder: point --journal at a file")
    if path.exists() and not path.is_file():
        raise JournalError(f"the journal {path} is not a regular file: point --journal at a file")
    try:
        return open_append(path, 0o600, follow_links=False)
    except NotRegularFile:
        raise JournalError(f"the journal {path} is not a regular file: point --journal at a file") from None
    except OSError as exc:
        raise JournalError(
            f"cannot open the journal {path} for writing: {_reason(exc)}: fix its permissions or "
            "choose another path with --journal"
        ) from None


def _open_shared(path: Path) -> int:
    """``_open``, holding a shared ``flock`` on the file while the descriptor is open. A compaction
    (``reconciler.journal_retention``) replaces the file only under an exclusive one, so no event is
    ever appended to a file being replaced; one replaced between our open and our lock is opened anew."""
    for _ in range(100):
        descriptor = _open(path)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_SH)
            if os.path.samestat(os.fstat(descriptor), os.stat(path, follow_symlinks=False)):
                return descriptor
        except OSError:
            pass  # gone or replaced meanwhile: open it again
        os.close(descriptor)
    raise JournalError(f"the journal {path} keeps being replaced by another process: try again")


def _ends_torn(path: Path) -> bool:
    """Whether the journal's last line has no newline (a write cut short by a crash)."""
    try:
        with path.open("rb") as stream:
            if stream.seek(0, os.SEEK_END) == 0:
                return False
            stream.seek(-1, os.SEEK_END)
            return stream.read(1) != b"\n"
    except OSError:
        return False


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


@dataclass(frozen=True)
class OpenDelivery:
    """A secret that may not be in its sink: the last opening event for one client, unclosed."""

    event: str  # the last opening event, or rotate-delivered (a rotation whose marker is not recorded)
    server: str
    client: str
    sink: str
    key: str
    client_ref: str | None = None  # the client's record id, when known
    server_id: str | None = None
    rotation: str | None = None
    before: str | None = None  # digest of the secret before a rotation
    salt: str | None = None


# The fields an opening event must carry (as strings), and those it may carry (strings when present).
REQUIRED_FIELDS = ("server", "client")
OPTIONAL_FIELDS = ("sink", "key", "id", "serverId", "rotation", "before", "salt")


def read_events(path: Path) -> Iterator[dict[str, Any]]:
    """Every event in the journal; a torn line (a crash mid-write, perhaps inside a character: JSON
    cut short) is skipped. JournalError when the journal exists but cannot be read, or when a line is
    JSON but not a journal event: skipping it could lose the record of an undelivered secret."""
    if not path.exists():
        return
    try:
        # errors="replace": a line torn inside a multi-byte character is then just not valid JSON.
        with path.open(encoding="utf-8", errors="replace") as stream:
            for number, line in enumerate(stream, start=1):
                try:
                    event = json.loads(line)
                except json.JSONDecodeError:
                    continue  # JSON cut short: a torn write
                except (ValueError, RecursionError):  # too deep, or a number too long: never torn
                    raise _malformed(path, number, "it cannot be parsed") from None
                problem = _problem(event)
                if problem:
                    raise _malformed(path, number, problem)
                yield event
    except OSError as exc:
        raise JournalError(f"cannot read the journal {path}: {_reason(exc)}") from None


def _problem(event: object) -> str:
    """What makes ``event`` something other than a journal event, or ""."""
    if not isinstance(event, dict):
        return "it is not a JSON object"
    if not isinstance(event.get("event"), str):
        return 'its "event" is missing or not a string'
    if event["event"] not in OPENING:
        return ""
    for name in REQUIRED_FIELDS:
        if not isinstance(event.get(name), str):
            return f'its "{name}" is missing or not a string'
    for name in OPTIONAL_FIELDS:
        if event.get(name) is not None and not isinstance(event[name], str):
            return f'its "{name}" is not a string'
    return ""


def _malformed(path: Path, number: int, problem: str) -> JournalError:
    return JournalError(
        f"the journal {path}: line {number} is not a journal event: {problem}; move the journal away "
        "to start afresh, after checking its open deliveries"
    )


def open_deliveries(path: Path, project: str) -> list[OpenDelivery]:
    """Clients of ``project`` whose latest opening event (create, rotate, adopt, undelivered) was
    never closed. A journal may be shared by several projects; each only sees its own."""
    return open_among(read_events(path), project)


def open_among(events: Iterable[Mapping[str, Any]], project: str) -> list[OpenDelivery]:
    """``open_deliveries`` of ``events`` (as ``read_events`` gives them)."""
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for event in events:
        if event.get("project") != project:
            continue
        client = (str(event.get("server", "")), str(event.get("client", "")))
        if event["event"] in OPENING:
            latest[client] = {**latest.get(client, {}), **event}
        elif event["event"] == "delivered" and latest.get(client, {}).get("rotation") is not None:
            latest[client] = {**latest[client], "event": "rotate-delivered"}
        elif event["event"] == "rotation-recorded" and latest.get(client, {}).get("event") == "undelivered":
            latest[client] = {k: v for k, v in latest[client].items() if k != "rotation"}  # still undelivered
        elif event["event"] in CLOSING:
            latest.pop(client, None)
    return [
        OpenDelivery(
            event=e["event"],
            server=e["server"],
            client=e["client"],
            sink=e.get("sink", ""),
            key=e.get("key", ""),
            client_ref=e.get("id"),
            server_id=e.get("serverId"),
            rotation=e.get("rotation"),
            before=e.get("before"),
            salt=e.get("salt"),
        )
        for e in latest.values()
    ]
