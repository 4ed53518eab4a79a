"""The error tree of mcp-reconciler and the exit code each error maps to.

::

    ReconcilerError            exit 1
    ├── UsageError             bad command line or option values
    ├── ManifestError          one or more manifest problems (file, line, column, path, message)
    ├── ApiError               method, path, status, errorCode; raised from the httpx error
    │   ├── BadRequest         400: the request was refused as invalid
    │   ├── Unauthorized       401/403: wrong, missing or foreign management key
    │   ├── NotFound           404: no such server or client
    │   ├── RateLimited        429 after every retry (retry_after seconds)
    │   ├── ServerError        5xx after every retry that was safe
    │   ├── ApiUnavailable     no usable answer: connection refused, reset, timed out
    │   └── AmbiguousObject    a lookup after an unknown outcome found more than one candidate
    ├── PlanError              the manifests cannot be planned against live state (all reasons)
    │   └── DeleteBudgetError  the plan deletes more than the budget: carries the plan, to be shown
    ├── StalePlanError         a saved plan no longer matches live state
    ├── SavedPlanError         a saved plan is unreadable, edited, unsigned, or not from these manifests
    ├── ApplyError             which changes failed and why
    ├── SecretDeliveryError    a secret was issued but not delivered to its sink: exit 3
    ├── SinkError              a secret sink is unusable (settings, library, reach, permission) or
    │                          refused a secret; never holds the secret (also reconciler.sinks.base)
    ├── JournalError           the apply journal cannot be opened, written or read (a symlink, a
    │                          folder, not writable)
    └── LockError              the project's lock cannot be taken (reconciler.lock)
        └── LockHeld           another run holds it: names the holder (host, pid, since, command)

Library code raises these; only ``reconciler.cli`` turns them into output and an exit code.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reconciler.descope.endpoints import Endpoint
    from reconciler.plan import Plan


class ExitCode(IntEnum):
    """Process exit codes, shared by every command."""

    OK = 0
    ERROR = 1
    CHANGES = 2
    SECRET_UNDELIVERED = 3
    POLICY = 4  # a security finding at or above --fail-on (lint; plan: a new one)
    INTERRUPTED = 130


class ReconcilerError(Exception):
    """Base of every error the tool reports to a person."""

    exit_code: ExitCode = ExitCode.ERROR

    def __reduce__(self) -> tuple[Any, ...]:
        # Copied whole, whatever the subclass's __init__ takes: a fetch made in another process
        # (reconciler.prefetch) raises its error here as if it had been made in this one.
        return (_restored, (type(self), self.args, dict(self.__dict__)))


def _restored(cls: type[ReconcilerError], args: tuple[Any, ...], state: dict[str, Any]) -> ReconcilerError:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


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
        text = f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"
        # One problem, one line: text from a manifest must not start a line of its own (a forged problem).
        return "".join(
            c if c.isprintable() else f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}" for c in text
        )


class ManifestError(ReconcilerError):
    """The manifests are invalid; carries every problem found, not just the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems)
        count = len(self.problems)
        super().__init__(f"{count} problem{'s' if count != 1 else ''} found in the manifests")


class StalePlanError(ReconcilerError):
    """The saved plan no longer matches the live project; lists what moved."""

    def __init__(self, moved: list[str]) -> None:
        self.moved = moved
        super().__init__(
            f"the saved plan is stale: {len(moved)} object{'s' if len(moved) != 1 else ''} changed since it "
            "was made; run plan again, review it, and apply the new plan"
        )


class SavedPlanError(ReconcilerError):
    """A saved plan cannot be used: unreadable, truncated, edited, unsigned or badly signed, of another
    format version, or not made from the manifests at hand; ``details`` names each difference."""

    def __init__(self, message: str, details: list[str] | None = None) -> None:
        self.details = details or []
        super().__init__(message)


class ApplyError(ReconcilerError):
    """Some changes failed or were skipped; the summary says which."""


class SecretDeliveryError(ReconcilerError):
    """Apply finished, but at least one secret did not reach its sink."""

    exit_code = ExitCode.SECRET_UNDELIVERED


class SinkError(ReconcilerError):
    """A sink could not be reached, refused, or failed to store a secret. Never contains the secret.

    Raised by ``reconciler.sinks`` (and importable from ``reconciler.sinks.base``); the applier and
    ``secrets check`` turn it into a skipped change or a failed delivery, and anything that escapes
    them ends as a clean ``error:`` line with exit 1."""


class JournalError(ReconcilerError):
    """The apply journal cannot be used: its path is a symbolic link, a folder or not a regular file,
    or it cannot be created, written or read. Raised before anything changes when it is opened."""


class ApiError(ReconcilerError):
    """A Management API call failed. Never carries the management key or a secret.

    The message names the call by method and path: ``POST /v1/mgmt/mcp/server/create failed: 400
    E011003 ...`` (the status and errorCode when there was an answer)."""

    def __init__(
        self,
        message: str,
        *,
        endpoint: Endpoint,
        status: int | None = None,
        error_code: str | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.status = status
        self.error_code = error_code
        code = f" {status}" if status is not None else ""
        code += f" {error_code}" if error_code else ""
        super().__init__(f"{endpoint.method} {endpoint.path} failed:{code} {message}".replace(":  ", ": "))


class BadRequest(ApiError):
    """400: the API refused the request as invalid."""


class Unauthorized(ApiError):
    """401 or 403: check DESCOPE_PROJECT_ID and DESCOPE_MANAGEMENT_KEY."""


class NotFound(ApiError):
    """404: the server or client does not exist (any more)."""


class RateLimited(ApiError):
    """429 that outlasted every retry."""

    def __init__(
        self, message: str, *, endpoint: Endpoint, retry_after: float, error_code: str | None = None
    ) -> None:
        self.retry_after = retry_after
        super().__init__(message, endpoint=endpoint, status=429, error_code=error_code)


class ServerError(ApiError):
    """5xx that outlasted every retry that was safe to make."""


class ApiUnavailable(ApiError):
    """No usable answer: the connection failed, was reset, or timed out."""


class AmbiguousObject(ApiError):
    """After a create whose outcome was unknown, more than one live object could be the new one."""


class PlanError(ReconcilerError):
    """Planning found problems that need a person: ambiguous matches, conflicts, a delete budget."""

    def __init__(self, reasons: list[str]) -> None:
        self.reasons = reasons
        count = len(reasons)
        super().__init__(f"cannot plan: {count} problem{'s' if count != 1 else ''}")


class DeleteBudgetError(PlanError):
    """The plan deletes more objects than maxDeletes (and --allow-deletes) allow. It carries the whole
    plan, marked refused, so the command shows what it refuses before it says so."""

    def __init__(self, reason: str, *, plan: Plan) -> None:
        super().__init__([reason])
        self.plan = plan
