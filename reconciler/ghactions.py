"""GitHub Actions files: step outputs ($GITHUB_OUTPUT) and the job summary ($GITHUB_STEP_SUMMARY).

Only used when ``GITHUB_ACTIONS=true``. The summary is capped below GitHub's 1 MiB per step; a value
with a newline is written in the runner's heredoc form with a random delimiter.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

from reconciler.errors import UsageError
from reconciler.files import NotRegularFile, open_append

SUMMARY_LIMIT = 1024 * 1024 - 4096  # GitHub refuses a step summary over 1 MiB


def write_outputs(environ: Mapping[str, str], values: Mapping[str, str | int | bool]) -> None:
    """Append ``name=value`` lines to $GITHUB_OUTPUT (no-op outside Actions)."""
    target = environ.get("GITHUB_OUTPUT")
    if not target:
        return
    lines = []
    for name, value in values.items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        if "\n" in text:
            delimiter = f"EOF_{secrets.token_hex(8)}"
            lines.append(f"{name}<<{delimiter}\n{text}\n{delimiter}")
        else:
            lines.append(f"{name}={text}")
    with _append(target, variable="GITHUB_OUTPUT") as stream:
        stream.write(("\n".join(lines) + "\n").encode("utf-8"))


def append_summary(environ: Mapping[str, str], markdown: str) -> None:
    """Append markdown to $GITHUB_STEP_SUMMARY, staying under GitHub's size limit."""
    target = environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        return
    path = Path(target)
    used = path.stat().st_size if path.is_file() else 0
    room = SUMMARY_LIMIT - used
    data = markdown.encode("utf-8")
    if len(data) > room:
        note = b"\n\n_The rest is cut: GitHub allows 1 MiB of step summary._\n"
        data = data[: max(room - len(note), 0)].decode("utf-8", errors="ignore").encode() + note
    if room > 0:
        with _append(target, variable="GITHUB_STEP_SUMMARY") as stream:
            stream.write(data)


def _append(target: str, *, variable: str) -> BinaryIO:
    """The runner's file, opened to append; a clear error when it is not a writable regular file (a
    FIFO would block the run for ever, a folder or a missing folder would end in a traceback)."""
    try:
        return os.fdopen(open_append(target, 0o644), "ab")
    except NotRegularFile:
        raise UsageError(f"{variable}={target!r} is not a regular file") from None
    except OSError as exc:
        raise UsageError(f"{variable}={target!r} cannot be written ({exc.strerror})") from None
