"""The file sink: client secrets in a local JSON or dotenv file, replaced atomically, mode 0600.

Every write holds an exclusive ``flock`` on a sibling lock file (``.NAME.lock``, left in place: removing
it would race with a waiting writer), reads the current file, changes one entry and renames a fully
written and fsynced temp file over it. ``flock`` locks belong to an open file description, so threads
of one process exclude each other as firmly as separate processes do. A file that cannot be parsed is
never overwritten: nothing a person put there is lost.

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
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from reconciler.files import write_atomically
from reconciler.models import FileSinkSpec
from reconciler.secret import Secret
from reconciler.sinks.base import SecretRecord, SinkError, Verification, env_name, parse_settings, same_secret

log = logging.getLogger("reconciler.sinks.file")

FILE_MODE = 0o600
DIR_MODE = 0o700
Format = Literal["json", "dotenv"]


class Corrupt(ValueError):
    """The existing file cannot be parsed; the message says where, never what (it may hold secrets)."""


class Codec(Protocol):
    label: str

    def get(self, text: str, record: SecretRecord) -> str | None: ...
    def put(self, text: str, record: SecretRecord, secret: Secret) -> str: ...


class FileSink:
    """Secrets in a JSON object keyed by secret key, or in ``NAME=value`` lines of a dotenv file."""

    def __init__(self, name: str, *, path: Path, format: Format = "json") -> None:
        self.name = name
        self.path = Path(os.path.abspath(path))  # relative to the working directory at construction
        self.format = format
        self._codec: Codec = JsonCodec() if format == "json" else DotenvCodec()
        # A path without a name (the root folder) is refused by check() like any folder.
        self._lock_path = self.path.with_name(f".{self.path.name}.lock") if self.path.name else self.path

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
        self._make_folder()
        with self._locked():
            text = self._read() or ""
            self._parse(text)
            self._replace(self._codec.put(text, record, secret))
        log.debug("sink %r: stored the secret of %s in %s", self.name, record.key, self.path)

    def verify(self, record: SecretRecord, secret: Secret) -> Verification:
        self._check_path()
        text = self._read()  # no lock needed: the file is only ever replaced whole
        if text is None:
            return Verification.MISSING
        stored = self._parse(text, record)
        return Verification.MISSING if stored is None else same_secret(stored, secret)

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

    def _parse(self, text: str, record: SecretRecord | None = None) -> str | None:
        """Parse the whole file (raising on a corrupt one); the stored value of ``record`` if given."""
        probe = record or SecretRecord("", "", "", "")
        try:
            return self._codec.get(text, probe)
        except Corrupt as exc:
            raise self._corrupt(exc) from None

    # ---- writing -------------------------------------------------------------------------------

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

    def get(self, text: str, record: SecretRecord) -> str | None:
        entry = self._load(text).get(record.key)
        if entry is None:
            return None
        stored = entry.get("clientSecret") if isinstance(entry, dict) else None
        return stored if isinstance(stored, str) else ""

    def put(self, text: str, record: SecretRecord, secret: Secret) -> str:
        document = self._load(text)
        document[record.key] = {
            "server": record.server,
            "client": record.client,
            "clientId": record.client_id,
            "clientSecret": secret.reveal(),
        }
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

    def get(self, text: str, record: SecretRecord) -> str | None:
        name = env_name(record.key)
        values = [line.value for line in _lines(text) if line.name == name]
        return values[-1] if values else None  # the last assignment wins, as in the shell

    def put(self, text: str, record: SecretRecord, secret: Secret) -> str:
        name = env_name(record.key)
        new = f"{name}={quote(secret.reveal())}\n"
        kept: list[str] = []
        replaced = False
        for line in _lines(text):
            if line.name != name:
                kept.append(line.text)
            elif not replaced:  # the first assignment is replaced in place, later ones dropped
                exported = line.text.lstrip().startswith("export")
                kept.append(f"export {new}" if exported else new)
                replaced = True
        if not replaced:
            if kept and not kept[-1].endswith("\n"):
                kept[-1] += "\n"
            kept.append(new)
        return "".join(kept)


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
