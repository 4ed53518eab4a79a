"""Writing a file so that a reader sees the old content or the new, never half of either."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from pathlib import Path


def write_atomically(path: Path, text: str, *, mode: int) -> None:
    """Temp file in the same folder, fsync, chmod, rename over ``path``, then fsync the folder.

    Only ever replaces a regular file: a rename over a device (``--out /dev/null``), a FIFO or a link
    would replace that node itself. Raises OSError (the CLI reports it) when the folder cannot be used.
    """
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise IsADirectoryError(errno.EISDIR, "not a regular file: refusing to replace it", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    # The rename itself is durable only once the folder is synced.
    with contextlib.suppress(OSError):
        fsync_folder(path.parent)


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
