"""The error tree of mcp-reconciler and the exit code each error maps to.

::

    ReconcilerError            exit 1
    ├── UsageError             bad command line or option values
    ├── ManifestError          one or more manifest problems (file, line, column, path, message)
    ├── ApiError               method, path, status, errorCode (added with the API client)
    ├── StalePlanError         a saved plan no longer matches live state
    ├── ApplyError             which changes failed and why
    └── SecretDeliveryError    a secret was issued but not delivered to its sink: exit 3

Library code raises these; only ``reconciler.cli`` turns them into output and an exit code.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes, shared by every command."""

    OK = 0
    ERROR = 1
    CHANGES = 2
    SECRET_UNDELIVERED = 3
    INTERRUPTED = 130


class ReconcilerError(Exception):
    """Base of every error the tool reports to a person."""

    exit_code: ExitCode = ExitCode.ERROR


class UsageError(ReconcilerError):
    """The command line or an option value is wrong."""


@dataclass(frozen=True, order=True)
class Problem:
    """One manifest problem, located as precisely as the source allows."""

    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}" if self.line else self.file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ManifestError(ReconcilerError):
    """The manifests are invalid; carries every problem found, not just the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems)
        count = len(self.problems)
        super().__init__(f"{count} problem{'s' if count != 1 else ''} found in the manifests")
