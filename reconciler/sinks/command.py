"""The command sink: runs a program (no shell) that reads the secret on standard input.

The secret goes only to the program's stdin, followed by a newline; its argv and environment carry the
metadata alone (``MCP_SERVER``, ``MCP_CLIENT_NAME``, ``MCP_CLIENT_ID``, ``MCP_SECRET_KEY``), since both
can be read by other users through ``/proc`` or ``ps``. The program's output is discarded, never shown
or put in an error: a script may echo what it was given. To debug a script, run it by hand.

The program does not inherit mcp-reconciler's environment, which holds ``DESCOPE_MANAGEMENT_KEY``,
``MCP_RECONCILER_PLAN_KEY`` and the other sinks' tokens. It gets only ``PATH``, ``HOME``, ``LANG``,
every ``LC_*`` and ``TMPDIR`` (those that are set), the metadata above, and the variables the sink
names in ``env`` (a name that is not set is left out). A bare program name is looked up on the same
``PATH`` the program gets.

It cannot remove a secret (it is not a ``RemovingSink``): its program only ever receives one, and
there is no documented way to ask it to forget one. ``validate`` refuses Project ``pruneSecrets``
when it is the default sink.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from reconciler.models import CommandSinkSpec
from reconciler.secret import Secret
from reconciler.sinks.base import SecretRecord, SinkError, Verification, parse_settings

log = logging.getLogger("reconciler.sinks.command")

KILL_WAIT_S = 5.0

PASSED_THROUGH = ("PATH", "HOME", "LANG", "TMPDIR")  # and every LC_* variable


class CommandSink:
    """A program that stores the secret it reads on stdin; cannot be read back."""

    def __init__(
        self,
        name: str,
        *,
        argv: Sequence[str],
        timeout: float = 30.0,
        environ: Mapping[str, str],
        env: Sequence[str] = (),
    ) -> None:
        if not argv:
            raise SinkError(f"sink {name!r} (command): the command is empty")
        self.name = name
        self.argv = tuple(argv)
        self.timeout = timeout
        self.environ = _minimal_environment(environ, env)  # all the program ever sees of ours

    @classmethod
    def from_settings(cls, name: str, settings: Mapping[str, Any], environ: Mapping[str, str]) -> CommandSink:
        spec = parse_settings(CommandSinkSpec, name, settings)
        return cls(name, argv=spec.command, timeout=spec.timeoutSeconds, environ=environ, env=spec.env)

    def check(self) -> None:
        self._program()

    def deliver(self, record: SecretRecord, secret: Secret) -> None:
        program = self._program()
        try:
            process = subprocess.Popen(
                self.argv,
                executable=program,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=self._environment(record),
                start_new_session=True,  # its own process group, so a timeout kills its children too
                close_fds=True,
            )
        except OSError as exc:
            raise self._error(f"cannot run {self.argv[0]}: {exc.strerror}") from None
        with process:
            self._feed(process, (secret.reveal() + "\n").encode())
        if process.returncode != 0:
            raise self._error(self._failure(process.returncode))
        log.debug("sink %r: %s took the secret of %s", self.name, self.argv[0], record.key)

    def verify(self, record: SecretRecord, secret: Secret) -> Verification:  # noqa: ARG002 - protocol
        """A command cannot be asked what it stored."""
        return Verification.UNREADABLE

    def close(self) -> None:
        """Nothing stays open between calls."""

    def _feed(self, process: subprocess.Popen[bytes], data: bytes) -> None:
        try:
            process.communicate(data, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            raise self._error(
                f"{self.argv[0]} did not finish within {self.timeout:g} seconds and was killed: "
                "make it faster or raise timeoutSeconds"
            ) from None

    def _program(self) -> str:
        """The program to run: a path as given (relative to the working directory), or found on PATH.

        PATH is the one the program gets (mcp-reconciler's own), or the system default when unset.
        """
        program = self.argv[0]
        if os.sep in program:
            path = Path(program)
            if not path.is_file():
                raise self._error(f"the program {program} does not exist: fix command[0]")
            if not os.access(path, os.X_OK):
                raise self._error(f"the program {program} is not executable: chmod +x it")
            return program  # as given: str(Path("./x")) would be "x", a bare name looked up on PATH
        found = shutil.which(program, path=self.environ.get("PATH", os.defpath))
        if found is None:
            raise self._error(f"the program {program!r} was not found on PATH: install it or give its path")
        return found

    def _environment(self, record: SecretRecord) -> dict[str, str]:
        return {
            **self.environ,
            "MCP_SERVER": record.server,
            "MCP_CLIENT_NAME": record.client,
            "MCP_CLIENT_ID": record.client_id,
            "MCP_SECRET_KEY": record.key,
        }

    def _failure(self, code: int) -> str:
        if code < 0:
            return f"{self.argv[0]} was killed by {signal.Signals(-code).name} (its output is not shown)"
        return f"{self.argv[0]} exited with code {code} (its output is not shown: it may hold the secret)"

    def _error(self, message: str) -> SinkError:
        return SinkError(f"sink {self.name!r} (command): {message}")


def _minimal_environment(environ: Mapping[str, str], listed: Sequence[str]) -> dict[str, str]:
    """The part of ``environ`` a program may see: the basics it needs to run, and what the sink lists."""
    wanted = set(PASSED_THROUGH) | set(listed)
    return {name: value for name, value in environ.items() if name in wanted or name.startswith("LC_")}


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):  # it ended on its own meanwhile
        os.killpg(process.pid, signal.SIGKILL)
    try:
        process.wait(KILL_WAIT_S)
    except subprocess.TimeoutExpired:
        log.warning("%s did not end after SIGKILL", process.args)
