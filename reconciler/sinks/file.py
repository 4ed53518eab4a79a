"""The file sink: client secrets in a local JSON or dotenv file, replaced atomically, mode 0600.

Every write holds an exclusive ``flock`` on a sibling lock file (``.NAME.lock``, left in place: removing
it would race with a waiting writer), reads the current file, changes its entries and renames a fully
written and fsynced temp file over it. ``flock`` locks belong to an open file description, so threads
of one process exclude each other as firmly as separate processes do. A file that cannot be parsed is
never overwritten: nothing a person put there is lost.

The path a manifest gives is resolved against the folder of the file that declares the sink (by
``Manifest.sink_settings``, before the sink is built), never the working directory: every run finds
the same file, and every message names it absolute.

Inside ``batch()`` (the applier's one hand-off of a step's secrets), ``deliver`` only stages: the
block's end stores every staged secret in that one read-modify-write, so N secrets cost one rewrite
of the file, not N (which made a first apply of thousands of secrets quadratic in I/O). The write is
atomic, so a crash leaves all of the batch stored or none of it; either way the journal still has
the deliveries open until the block has returned, and the next run delivers them again.

dotenv values are single-quoted when that is literal in every dialect (bash, docker compose,
python-dotenv, node dotenv); otherwise double-quoted with backslash escapes. Readers that expand
``${VAR}`` (python-dotenv by default) would still expand it inside a value: such readers should be
told not to interpolate.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import stat
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from reconciler.files import write_atomically
from reconciler.models import FileSinkSpec
from reconciler.secret import Secret
from reconciler.sinks.base import (
    Delivery,
    Removal,
    SecretRecord,
    SinkError,
    Verification,
    env_name,
    not_removed,
    other_client,
    parse_settings,
    same_secret,
)

log = logging.getLogger("reconciler.sinks.file")

FILE_MODE = 0o600
DIR_MODE = 0o700
Format = Literal["json", "dotenv"]


class Foreign(ValueError):
    """The entry to remove names another client id (the exception's text)."""


class Corrupt(ValueError):
    """The existing file cannot be parsed; the message says where, never what (it may hold secrets)."""


class Codec(Protocol):
    label: str

    def get_many(self, text: str, records: Sequence[SecretRecord]) -> list[str | None]:
        """The stored value of each record (None: absent), from one parse of ``text`` (Corrupt if it
        cannot be parsed, whatever ``records`` is)."""

    def put_many(self, text: str, deliveries: Sequence[Delivery]) -> str:
        """``text`` with each secret stored under its record's key (a later one wins), in one pass."""

    def drop(self, text: str, record: SecretRecord) -> str | None:
        """``text`` without the entry of ``record.key``; None when it has none. Foreign when the entry
        names another client id."""


class FileSink:
    """Secrets in a JSON object keyed by secret key, or in ``NAME=value`` lines of a dotenv file."""

    def __init__(self, name: str, *, path: Path, format: Format = "json") -> None:
        self.name = name
        # Absolute already when built from a manifest (Manifest.sink_settings resolves a relative path
        # against the Project file's folder); a relative one given in code counts from the working directory.
        self.path = Path(os.path.abspath(path))
        self.format = format
        self._codec: Codec = JsonCodec() if format == "json" else DotenvCodec()
        # A path without a name (the root folder) is refused by check() like any folder.
        self._lock_path = self.path.with_name(f".{self.path.name}.lock") if self.path.name else self.path
        self._staging = threading.local()  # ``staged``: the open batch of this thread, if any

    @classmethod
    def from_settings(
        cls,
        name: str,
        settings: Mapping[str, Any],
        environ: Mapping[str, str],  # noqa: ARG003 - the factory protocol
    ) -> FileSink:
        spec = parse_settings(FileSinkSpec, name, settings)
        return cls(name, path=Path(spec.path), format=spec.format)

    def check(self) -> None:
        self._check_path()
        self._check_folder()
        for path in (self.path, self._lock_path):
            self._refuse_symlink(path)
        text = self._read()
        if text is not None:
            self._parse(text)

    def deliver(self, record: SecretRecord, secret: Secret) -> None:
        self._check_path()
        staged: list[Delivery] | None = getattr(self._staging, "staged", None)
        if staged is not None:
            staged.append((record, secret))  # stored when the batch ends
            return
        self._store([(record, secret)])

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Deliveries of this thread inside the block are stored together, in one atomic rewrite of
        the file, when it ends (see the module docstring). A nested block joins the outer one."""
        if getattr(self._staging, "staged", None) is not None:
            yield
            return
        staged: list[Delivery] = []
        self._staging.staged = staged
        try:
            yield
        finally:
            self._staging.staged = None
        if staged:
            self._store(staged)

    def verify(self, record: SecretRecord, secret: Secret) -> Verification:
        return self.verify_many([(record, secret)])[0]

    def verify_many(self, deliveries: Sequence[Delivery]) -> list[Verification]:
        self._check_path()
        text = self._read()  # no lock needed: the file is only ever replaced whole
        if text is None:
            return [Verification.MISSING] * len(deliveries)
        stored = self._parse(text, [record for record, _ in deliveries])
        return [
            Verification.MISSING if value is None else same_secret(value, secret)
            for value, (_, secret) in zip(stored, deliveries, strict=True)
        ]

    def remove(self, record: SecretRecord) -> Removal:
        """Remove the entry of ``record.key`` in one locked rewrite (``RemovingSink``)."""
        self._check_path()
        if self._read() is None:
            return Removal.ABSENT
        with self._locked():
            text = self._read() or ""
            self._parse(text)
            try:
                rest = self._codec.drop(text, record)
            except Foreign as exc:
                where = f"{self.path}, key {record.key!r},"
                raise self._error(not_removed(record, where=where, stored=str(exc))) from None
            if rest is None:
                return Removal.ABSENT
            self._replace(rest)
        return Removal.REMOVED

    def close(self) -> None:
        """Nothing stays open between calls."""

    # ---- reading -------------------------------------------------------------------------------

    def _read(self) -> str | None:
        """The file's text, None when absent; never through a symlink."""
        self._refuse_symlink(self.path)
        try:
            # O_NONBLOCK: a FIFO planted at the path must not hang us before fstat turns it away.
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._error(f"cannot read {self.path}: {exc.strerror}") from None
        try:
            # Checked before wrapping the descriptor: opening a folder as a file raises IsADirectoryError.
            mode = os.fstat(fd).st_mode
            if stat.S_ISDIR(mode):
                raise self._error(f"{self.path} is a folder, not a file: point path at a file inside it")
            if not stat.S_ISREG(mode):
                raise self._error(f"{self.path} is not a regular file: point path at a file")
            with os.fdopen(fd, "rb", closefd=False) as handle:
                data = handle.read()
        except OSError as exc:
            raise self._error(f"cannot read {self.path}: {exc.strerror}") from None
        finally:
            os.close(fd)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise self._corrupt(Corrupt("not UTF-8 text")) from None

    def _parse(self, text: str, records: Sequence[SecretRecord] = ()) -> list[str | None]:
        """Parse the whole file (raising on a corrupt one); the stored value of each of ``records``."""
        try:
            return self._codec.get_many(text, records)
        except Corrupt as exc:
            raise self._corrupt(exc) from None

    # ---- writing -------------------------------------------------------------------------------

    def _store(self, deliveries: Sequence[Delivery]) -> None:
        """One locked read-modify-write of the file with every secret of ``deliveries``."""
        self._make_folder()
        with self._locked():
            text = self._read() or ""
            self._parse(text)
            self._replace(self._codec.put_many(text, deliveries))
        if log.isEnabledFor(logging.DEBUG):
            keys = ", ".join(record.key for record, _ in deliveries)
            log.debug("sink %r: stored the secret(s) of %s in %s", self.name, keys, self.path)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(self._lock_path, flags, FILE_MODE)
        except OSError as exc:
            raise self._error(f"cannot open the lock file {self._lock_path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the last descriptor releases the lock

    def _replace(self, text: str) -> None:
        try:
            # Durable once this returns: the caller journals the delivery next.
            write_atomically(self.path, text, mode=FILE_MODE, folder_sync_required=True)
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename and exc.filename != str(self.path) else ""
            raise self._error(f"cannot write {self.path}: {exc.strerror}{where}") from None

    def _make_folder(self) -> None:
        try:
            self.path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        except OSError as exc:
            raise self._error(f"cannot create the folder {self.path.parent}: {exc.strerror}") from None

    # ---- checks --------------------------------------------------------------------------------

    def _check_path(self) -> None:
        if "\0" in str(self.path):  # the OS would refuse it with a ValueError, not an OSError
            raise self._error("the path contains a NUL character: fix path")

    def _check_folder(self) -> None:
        """The folder exists and is writable, or its nearest existing ancestor lets us create it."""
        existing = self.path.parent
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            raise self._error(f"{existing} is not a folder, so {self.path} cannot be written: fix path")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise self._error(f"the folder {existing} is not writable: fix its permissions or choose a path")

    def _refuse_symlink(self, path: Path) -> None:
        if path.is_symlink():
            raise self._error(
                f"{path} is a symbolic link; the file sink writes only through real files: "
                "point path at the target or remove the link"
            )

    def _corrupt(self, exc: Corrupt) -> SinkError:
        return self._error(
            f"{self.path} is not a valid {self._codec.label} file ({exc}): fix or move it; "
            "it is left untouched"
        )

    def _error(self, message: str) -> SinkError:
        return SinkError(f"sink {self.name!r} (file): {message}")


# ---- JSON ------------------------------------------------------------------------------------


class JsonCodec:
    """``{key: {"server", "client", "clientId", "clientSecret"}}``; other keys kept in their order."""

    label = "JSON"

    def get_many(self, text: str, records: Sequence[SecretRecord]) -> list[str | None]:
        document = self._load(text)
        return [self._secret_of(document.get(record.key)) for record in records]

    @staticmethod
    def _secret_of(entry: object) -> str | None:
        if entry is None:
            return None
        stored = entry.get("clientSecret") if isinstance(entry, dict) else None
        return stored if isinstance(stored, str) else ""

    def put_many(self, text: str, deliveries: Sequence[Delivery]) -> str:
        document = self._load(text)
        for record, secret in deliveries:
            document[record.key] = {
                "server": record.server,
                "client": record.client,
                "clientId": record.client_id,
                "clientSecret": secret.reveal(),
            }
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"

    def drop(self, text: str, record: SecretRecord) -> str | None:
        document = self._load(text)
        if record.key not in document:
            return None
        entry = document[record.key]
        stored = other_client(entry.get("clientId") if isinstance(entry, dict) else None, record)
        if stored is not None:
            raise Foreign(stored)
        del document[record.key]
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"

    @staticmethod
    def _load(text: str) -> dict[str, Any]:
        if not text.strip():
            return {}
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise Corrupt(f"{exc.msg} at line {exc.lineno}, column {exc.colno}") from None
        except (ValueError, RecursionError):  # nested too deep, or a number too long to read
            raise Corrupt("it cannot be parsed") from None
        if not isinstance(document, dict):
            raise Corrupt("the top level is not an object")
        return document


# ---- dotenv ----------------------------------------------------------------------------------

_ASSIGNMENT = re.compile(r"\s*(?:export\s+)?(?P<name>[A-Za-z_][A-Za-z0-9_.]*)\s*=\s*(?P<value>.*?)\s*")
_SINGLE = re.compile(r"'(?P<body>(?:\\'|[^'])*)'(?:\s+#.*)?")
_DOUBLE = re.compile(r'"(?P<body>(?:\\.|[^"\\])*)"(?:\s+#.*)?')
# What python-dotenv unescapes; single quotes know only these two.
_DOUBLE_ESCAPES = {"\\": "\\", '"': '"', "'": "'", "n": "\n", "r": "\r", "t": "\t"}
_SINGLE_ESCAPES = {"\\": "\\", "'": "'"}
_PLAIN = re.compile(r"[^'\\\x00-\x1f\x7f]*")  # literal inside single quotes in every dialect


@dataclass(frozen=True)
class _Line:
    text: str  # as in the file, with its line ending
    name: str | None  # the variable it assigns, None for blank and comment lines
    value: str | None  # the decoded value


class DotenvCodec:
    """``NAME=value`` lines; every other line is kept as it is."""

    label = "dotenv"

    def get_many(self, text: str, records: Sequence[SecretRecord]) -> list[str | None]:
        values: dict[str, str | None] = {}
        for line in _lines(text):
            if line.name is not None:
                values[line.name] = line.value  # the last assignment wins, as in the shell
        return [values.get(env_name(record.key)) for record in records]

    def put_many(self, text: str, deliveries: Sequence[Delivery]) -> str:
        new: dict[str, str] = {}  # variable name -> its new line, in the order first delivered
        for record, secret in deliveries:
            name = env_name(record.key)
            new[name] = f"{name}={quote(secret.reveal())}\n"
        kept: list[str] = []
        replaced: set[str] = set()
        for line in _lines(text):
            if line.name not in new:
                kept.append(line.text)
            elif line.name not in replaced:  # the first assignment is replaced in place, later ones dropped
                exported = line.text.lstrip().startswith("export")
                kept.append(f"export {new[line.name]}" if exported else new[line.name])
                replaced.add(line.name)
        added = [assignment for name, assignment in new.items() if name not in replaced]
        if added and kept and not kept[-1].endswith("\n"):
            kept[-1] += "\n"
        return "".join(kept + added)

    def drop(self, text: str, record: SecretRecord) -> str | None:
        name = env_name(record.key)
        lines = list(_lines(text))
        kept = [line.text for line in lines if line.name != name]
        return None if len(kept) == len(lines) else "".join(kept)


def quote(value: str) -> str:
    """``value`` as a dotenv value that reads back exactly (see the module docstring)."""
    if _PLAIN.fullmatch(value):
        return f"'{value}'"
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    escaped = escaped.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return f'"{escaped}"'


def _lines(text: str) -> Iterator[_Line]:
    for number, raw in enumerate(text.splitlines(keepends=True), start=1):
        body = raw.rstrip("\r\n")
        if not body.strip() or body.lstrip().startswith("#"):
            yield _Line(raw, None, None)
            continue
        match = _ASSIGNMENT.fullmatch(body)
        if match is None:
            raise Corrupt(f"line {number} is not NAME=value")
        yield _Line(raw, match["name"], _decode(match["value"], number))


def _decode(value: str, number: int) -> str:
    if value[:1] in ("'", '"'):
        single = value[0] == "'"
        quoted = (_SINGLE if single else _DOUBLE).fullmatch(value)
        if quoted is None:
            # Multi-line values exist in some dialects; refusing them keeps them from being mangled.
            raise Corrupt(f"line {number} has an unterminated quote")
        escapes = _SINGLE_ESCAPES if single else _DOUBLE_ESCAPES
        return re.sub(r"\\(.)", lambda m: escapes.get(m[1], m[0]), quoted["body"], flags=re.DOTALL)
    return re.split(r"\s+#", value, maxsplit=1)[0]
