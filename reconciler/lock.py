"""One writer per Descope project: the lock that ``apply`` and ``secrets check --fix`` hold.

What is guaranteed
------------------
**On one machine**, among runs of one OS user (or of users who share ``MCP_RECONCILER_LOCK_DIR``):
at most one ``apply`` (fresh or of a saved plan) or ``secrets check --fix`` works on a project at a
time. The lock is taken before the run finishes open deliveries from the journal and before it reads
the live project, and held until the run ends, so the second run plans from what the first one left
and creates nothing twice. A second run waits up to ``--lock-timeout`` seconds (default 0, as
Terraform's ``-lock-timeout``: refuse at once) and then exits 1 naming the holder (host, pid, user,
since when, command). ``plan``, ``drift``, ``validate``, ``export`` and ``secrets check`` without
``--fix`` only read, and take no lock. A wait is said when it starts (``LockSettings.on_wait``) and then
every ``STILL_WAITING_EVERY`` seconds on the ``reconciler.wait`` logger, naming the holder and how
long of the timeout has passed, so a waiting run never looks hung.

It is an ``flock`` on ``<dir>/<project>.lock``, ``<dir>`` being ``$MCP_RECONCILER_LOCK_DIR``, else
``$XDG_STATE_HOME/mcp-reconciler/locks``, else ``~/.local/state/mcp-reconciler/locks``. The kernel
drops an ``flock`` when its holder's last descriptor closes, so a holder that dies, even by SIGKILL,
leaves no stale lock: a file left behind is only a note of who held it last. The descriptor is
close-on-exec, so a command sink's child never inherits it. The file is opened without following a
symbolic link (a link there is refused), created with mode 0600, and gets the holder's details once
locked. The holder removes it on release, while still holding it; a waiter that then gets the lock on
the removed file sees that it no longer is the file at the path and tries again, so a removed file
never lets two runs in.

The lock is named after the project id: Descope's project ids are unique, whatever host of
``descope.com`` reaches them. A base URL outside ``descope.com`` (a local emulator, a proxy) is a
project of its own, so its host and port (as written) join the name: two emulators serving the same
project id on one machine do not block each other. Keep the lock folder on a local file system
(``flock`` over NFS is not dependable).

What is not
-----------
**Across machines**, and across users with separate lock folders, this lock excludes nothing. The
sound guarantee there is the CI system's: run every writer of a project (``apply``, ``secrets check
--fix``) in ONE GitHub Actions concurrency group per project with ``cancel-in-progress: false``
(``examples/github/apply.yml`` does), which keeps at most one of them running; and do not apply to
that project from elsewhere (a laptop) while CI may.

Why not a lease recorded on the live project: the MCP management API has no compare-and-swap, no
conditional update and no unique-name guarantee (duplicate server names are accepted), so taking a
lease (say, creating a tagged server, then listing to see who else did) is not atomic: two runs can
both create one, and telling which won needs a read-after-write consistency Descope does not
promise. A crashed holder leaves its lease object in the project, shown in the console, in ``drift``
and in ``export``, until it expires; expiry needs clocks and renewals, and a holder paused past its
expiry (a stalled runner, a slow network) would go on writing after another run took over, since the
API checks no fencing token. Such a lease would look like exclusion without being it, and leave
litter behind; the CI concurrency group is exclusion.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import getpass
import hashlib
import json
import os
import re
import socket
import stat
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit

from reconciler.errors import ReconcilerError
from reconciler.throttle import seconds_text, wait_log

LOCK_DIR_VARIABLE = "MCP_RECONCILER_LOCK_DIR"
FILE_MODE = 0o600
DIR_MODE = 0o700
POLL_SECONDS = 0.1
MAX_INFO_BYTES = 4096
MAX_FIELD = 200
MAX_ATTEMPTS = 100  # of opening the file anew because its holder removed it meanwhile
DESCOPE_DOMAIN = "descope.com"
_UNSAFE = re.compile(r"[^A-Za-z0-9._@-]")


# A run waiting for the lock says so again every this many seconds (the first line is on_wait's).
STILL_WAITING_EVERY = 10.0

HOLDER_READS = 20  # x HOLDER_READ_PAUSE: how long a holder may take to write its details
HOLDER_READ_PAUSE = 0.01


class LockError(ReconcilerError):
    """The project's lock cannot be taken: its folder or file is unusable."""


class LockHeld(LockError):
    """Another run holds the project's lock, and kept it past ``--lock-timeout``."""

    def __init__(self, message: str, holder: Holder | None) -> None:
        self.holder = holder
        super().__init__(message)


@dataclass(frozen=True)
class Holder:
    """Who holds a lock, as written into the lock file by the holder."""

    pid: int | None
    host: str
    user: str
    since: str
    command: str

    @classmethod
    def current(cls, command: str) -> Holder:
        try:
            user = getpass.getuser()
        except Exception:  # no user name in the environment nor the password database
            user = ""
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return cls(pid=os.getpid(), host=socket.gethostname(), user=user, since=since, command=command)

    @classmethod
    def parse(cls, data: bytes) -> Holder | None:
        """The holder a lock file names; None when it names none (yet) or is not ours."""
        try:
            document = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return None
        if not isinstance(document, dict):
            return None
        pid = document.get("pid")
        return cls(
            pid=pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
            host=_shown(document.get("host")),
            user=_shown(document.get("user")),
            since=_shown(document.get("since")),
            command=_shown(document.get("command")),
        )

    def to_bytes(self) -> bytes:
        fields = {"pid": self.pid, "host": self.host, "user": self.user, "since": self.since}
        return (json.dumps({**fields, "command": self.command}, ensure_ascii=False) + "\n").encode()

    def __str__(self) -> str:
        who = f"pid {self.pid if self.pid is not None else '?'} on host {self.host or '?'}"
        if self.user:
            who += f" (user {self.user})"
        if self.since:
            who += f", since {self.since}"
        return who + (f", running `{self.command}`" if self.command else "")


def _shown(value: object) -> str:
    """A field of a lock file as it may be shown: a string, one line, cut short."""
    if not isinstance(value, str):
        return ""
    return "".join(c if c.isprintable() else "?" for c in value)[:MAX_FIELD]


@dataclass(frozen=True)
class LockSettings:
    """Where the locks live, how long to wait for one, and what to say about this run."""

    directory: Path
    timeout: float = 0.0  # seconds to wait for a held lock; 0 refuses at once
    command: str = ""  # what this run is, for whoever finds the lock held
    on_wait: Callable[[Holder | None], None] | None = None  # told once, when a wait begins


def lock_directory(environ: Mapping[str, str]) -> Path:
    """``$MCP_RECONCILER_LOCK_DIR``, else ``$XDG_STATE_HOME`` (absolute, per the XDG spec) or
    ``~/.local/state``, + ``mcp-reconciler/locks``."""
    explicit = environ.get(LOCK_DIR_VARIABLE, "")
    if explicit:
        try:
            return Path(explicit).expanduser().absolute()
        except RuntimeError:  # "~user/..." for a user that does not exist
            raise LockError(f"{LOCK_DIR_VARIABLE}={explicit!r}: no such home folder") from None
    state = environ.get("XDG_STATE_HOME", "")
    if not os.path.isabs(state):
        home = environ.get("HOME", "")
        if not home:
            try:
                home = str(Path.home())
            except (RuntimeError, KeyError):
                raise LockError(
                    f"no home folder for the project locks: set {LOCK_DIR_VARIABLE} to a local folder"
                ) from None
        state = os.path.join(home, ".local", "state")
    return Path(state) / "mcp-reconciler" / "locks"


def lock_name(project_id: str, *, base_url: str) -> str:
    """The lock file's name: the project id, with the API's host and port unless it is Descope's."""
    parts = urlsplit(base_url)
    host = (parts.hostname or "").lower()
    key = project_id
    if host != DESCOPE_DOMAIN and not host.endswith("." + DESCOPE_DOMAIN):
        key += "@" + parts.netloc.rpartition("@")[2].lower()  # never a user name or password
    safe = _UNSAFE.sub("_", key)
    if not safe or safe != key or len(safe) > 100 or safe.startswith("."):
        # Distinct keys keep distinct names, whatever the substitution merged.
        safe = f"{safe[:80].lstrip('.')}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
    return f"{safe}.lock"


class ProjectLock:
    """The exclusive lock of one project, held as an async context manager (or try_acquire/release)."""

    def __init__(self, project_id: str, *, base_url: str, settings: LockSettings) -> None:
        self.project_id = project_id
        self.settings = settings
        self.name = lock_name(project_id, base_url=base_url)
        self.path = settings.directory / self.name
        self.holder: Holder | None = None  # the other holder, as last read
        self._dir: int | None = None
        self._fd: int | None = None

    async def __aenter__(self) -> ProjectLock:
        await self.acquire()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.release()

    async def acquire(self) -> None:
        """Take the lock, waiting up to the timeout; raise LockHeld naming the holder otherwise."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this lock")
        started = time.monotonic()
        waiting = False
        said = 0.0  # seconds into the wait when it was last said
        try:
            while not self.try_acquire():
                waited = time.monotonic() - started
                if waited >= self.settings.timeout:
                    raise self._held(waited)
                if not waiting and self.settings.on_wait is not None:
                    self.settings.on_wait(self.holder)
                elif waited - said >= STILL_WAITING_EVERY:
                    said = waited
                    self._still_waiting(waited)
                waiting = True
                await asyncio.sleep(min(POLL_SECONDS, self.settings.timeout - waited))
        except BaseException:
            self.release()
            raise

    def try_acquire(self) -> bool:
        """Take the lock if it is free, without waiting; when held, ``holder`` says by whom."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this lock")
        if self._dir is None:
            self._dir = self._open_folder()
        for _ in range(MAX_ATTEMPTS):
            fd = self._open_file()
            try:
                opened = os.fstat(fd)
                if not stat.S_ISREG(opened.st_mode):
                    raise LockError(f"{self.path} is not a regular file: move it away")
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    self.holder = _read_holder(fd)
                    return False
                except OSError as exc:  # e.g. a file system without flock
                    raise LockError(
                        f"cannot lock {self.path} ({exc.strerror}): set {LOCK_DIR_VARIABLE} to a folder "
                        "on a local file system"
                    ) from None
                if not self._is_at_path(opened):
                    continue  # its holder removed it as we opened it: take the file now at the path
                os.ftruncate(fd, 0)
                os.pwrite(fd, Holder.current(self.settings.command).to_bytes(), 0)
                self._fd, fd = fd, -1
                return True
            finally:
                if fd >= 0:
                    os.close(fd)
        self.holder = None  # the file kept being replaced under us: someone is taking and releasing it
        return False

    def release(self) -> None:
        """Remove the file (while still holding it, so no waiter can take it removed) and unlock."""
        try:
            if self._fd is not None and self._dir is not None and self._is_at_path(os.fstat(self._fd)):
                os.unlink(self.name, dir_fd=self._dir)
        except OSError:
            pass  # a file left behind is harmless: the lock goes with the descriptor
        finally:
            for fd in (self._fd, self._dir):
                if fd is not None:
                    os.close(fd)
            self._fd = self._dir = None

    def _open_folder(self) -> int:
        folder = self.settings.directory
        try:
            folder.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
            return os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise LockError(
                f"cannot use the lock folder {folder} ({exc.strerror}): set {LOCK_DIR_VARIABLE} "
                "to a local folder this user can write"
            ) from None

    def _open_file(self) -> int:
        # O_NONBLOCK: a FIFO planted at the path must not hang the open before fstat turns it away.
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            return os.open(self.name, flags, FILE_MODE, dir_fd=self._dir)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise LockError(
                    f"{self.path} is a symbolic link; the lock is never taken through one: remove it"
                ) from None
            raise LockError(f"cannot open the lock file {self.path} ({exc.strerror})") from None

    def _is_at_path(self, opened: os.stat_result) -> bool:
        try:
            now = os.stat(self.name, dir_fd=self._dir, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return (now.st_dev, now.st_ino) == (opened.st_dev, opened.st_ino)

    def _still_waiting(self, waited: float) -> None:
        holder = str(self.holder) if self.holder else "another run"
        wait_log.info(
            "still waiting for the lock of project %s, held by %s (%s of %s, --lock-timeout)",
            self.project_id,
            holder,
            seconds_text(waited),
            seconds_text(self.settings.timeout),
        )

    def _held(self, waited: float) -> LockHeld:
        holder = str(self.holder) if self.holder else "another run (it has not written its details yet)"
        waiting = (
            f"waited {waited:.1f} s (--lock-timeout {self.settings.timeout:g})"
            if self.settings.timeout
            else "not waiting (--lock-timeout 0)"
        )
        return LockHeld(
            f"project {self.project_id} is locked by {holder}; {waiting}. Nothing was changed: run again "
            f"once it has finished, or wait for it with --lock-timeout SECONDS (lock file: {self.path})",
            self.holder,
        )


def _read_holder(fd: int) -> Holder | None:
    """The holder's details; a holder writes them right after it locks, so an empty file is read again
    for a moment rather than reported as an unnamed holder."""
    for _ in range(HOLDER_READS):
        holder = Holder.parse(os.pread(fd, MAX_INFO_BYTES, 0))
        if holder is not None:
            return holder
        time.sleep(HOLDER_READ_PAUSE)
    return None
