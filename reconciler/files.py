"""Writing a file so that a reader sees the old content or the new, never half of either."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from pathlib import Path

TEMP_MODE = 0o600  # a temp file is created readable by its owner alone, then given its ``mode``


def write_atomically(path: Path, text: str, *, mode: int, folder_sync_required: bool = False) -> None:
    """Temp file in the same folder, chmod, write, fsync, rename over ``path``, then fsync the folder.

    A crash leaves the old content or the whole new one: the temp file is synced, holding all of
    ``text``, before it is renamed over ``path``, and the folder is synced after the rename, which makes
    the rename itself durable. The temp file (``.NAME.RANDOM.tmp``, removed on failure) is created
    exclusively and never through a link (a name planted there is an error, never followed), and is
    given ``mode`` before it holds anything, whatever the umask.

    Only ever replaces a regular file: a rename over a device (``--out /dev/null``), a FIFO or a link
    would replace that node itself. Raises OSError (the caller reports it) when the folder cannot be
    used. A folder that cannot be synced is an error only with ``folder_sync_required`` (for a caller
    that records the write as done once this returns); otherwise the rename stands unsynced.
    """
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise IsADirectoryError(errno.EISDIR, "not a regular file: refusing to replace it", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    # O_EXCL fails on any existing name, a planted symlink included, which is then left alone.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    descriptor = os.open(temp, flags, TEMP_MODE)
    try:
        with os.fdopen(descriptor, "wb") as stream:
            os.fchmod(stream.fileno(), mode)
            stream.write(text.encode("utf-8"))
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, path)  # renames over a link planted since the check, never through it
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    # The rename itself is durable only once the folder is synced.
    try:
        fsync_folder(path.parent)
    except OSError:
        if folder_sync_required:
            raise


def fsync_folder(folder: Path) -> None:
    """Make a name created, renamed or removed in ``folder`` durable."""
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class NotRegularFile(OSError):
    """The path names a FIFO, a device, a socket or a folder where a regular file belongs."""


def open_append(path: str | Path, mode: int, *, follow_links: bool = True) -> int:
    """A descriptor to append to ``path`` (created with ``mode``), only if it is a regular file.

    O_NONBLOCK: a FIFO planted at the path must not hang the open before fstat turns it away; the
    descriptor is made blocking again before it is returned.
    """
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC
    descriptor = os.open(path, flags if follow_links else flags | os.O_NOFOLLOW, mode)
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise NotRegularFile(errno.EINVAL, "not a regular file", str(path))
        os.set_blocking(descriptor, True)
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor
