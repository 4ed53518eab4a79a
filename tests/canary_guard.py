"""The canary guard: fails any test in which a client secret or the management key reaches output.

A pytest plugin (loaded by ``tests/conftest.py``) that watches every test of the suite:

Guarded values (at least ``MIN_LENGTH`` characters; shorter ones could match ordinary text):

- client secrets: every value a ``reconciler.secret.Secret`` is constructed with during the test, and
  every secret the in-process emulator holds or issues (created, seeded, restored, rotated), so that a
  secret printed by a subprocess CLI and echoed by the test is caught too;
- management keys, for the whole session: ``DESCOPE_MANAGEMENT_KEY`` of the environment (when the
  session starts, when each test starts and at each check), the keys of every ``EmulatorConfig``, and
  ``DESCOPE_MANAGEMENT_KEY`` in the ``env`` given to ``CliRunner.invoke`` or to a subprocess.

Output, the places where a value must never appear:

- every log record that reaches the logging handlers (its message, exception and stack text): records
  are taken at ``Logger.callHandlers``, so loggers that do not propagate to the root are seen too;
- the test's captured stdout and stderr (and captured log), i.e. pytest's report sections, plus what
  the test read itself with ``capsys``/``capfd``/``capsysbinary``/``capfdbinary`` ``.readouterr()``
  (that text never reaches the report sections);
- everything a ``click.testing.CliRunner.invoke`` printed (stdout and stderr);
- the message of every warning issued (shown in pytest's warnings summary).

A line starting with ``::add-mask::`` (GitHub's masking announcement) is the one place a client secret
may appear; the management key may not appear even there. Secrets a test keeps in its own variables,
reads from sink files or receives in the emulator's HTTP answers are not output and are not checked.

A test with a leak fails (a leak during setup or teardown is an error of that phase), with a message
that names each guarded value by kind, length and a short SHA-256 prefix, and where it was seen, never
the value itself. The report sections and failure text of a flagged test are redacted before pytest
shows them, so the guard's own report never prints what it found.

A test that puts fake secrets into output on purpose (to test scrubbing, say) opts out with
``@pytest.mark.canary_exempt("why")``; the reason is required.

Limits: with ``-s`` (capture off) raw writes to stdout/stderr are not captured, so only log records,
``CliRunner`` output and warnings are checked; secrets are matched as written (not base64 or
otherwise encoded).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import logging
import os
import subprocess
import threading
import warnings
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import click.testing
import pytest

from reconciler.emulator import store as emulator_store
from reconciler.emulator.app import EmulatorConfig
from reconciler.secret import Secret

MIN_LENGTH = 8
MASK_PREFIX = "::add-mask::"
KEY_VARIABLE = "DESCOPE_MANAGEMENT_KEY"
MARKER = "canary_exempt"
SECRET = "client secret"
KEY = "management key"
MAX_LISTED = 20
CONTEXT_CHARS = 160


# ---- finding and describing leaks (pure; tested directly) --------------------------------------------


def fingerprint(value: str) -> str:
    """How a guarded value is named in reports: its length and a SHA-256 prefix, never the value."""
    return f"{len(value)} chars, sha256:{hashlib.sha256(value.encode()).hexdigest()[:12]}"


def placeholder(kind: str, value: str) -> str:
    return f"<{kind} {fingerprint(value)}>"


def guarded(values: Iterable[str | None]) -> list[str]:
    """The values worth guarding: strings of at least MIN_LENGTH characters, longest first."""
    kept = {v for v in values if isinstance(v, str) and len(v) >= MIN_LENGTH}
    return sorted(kept, key=lambda v: (-len(v), v))


def without_mask_lines(text: str) -> str:
    """``text`` without the lines that start with ``::add-mask::``."""
    if MASK_PREFIX not in text:
        return text
    return "\n".join(line for line in text.splitlines() if not line.startswith(MASK_PREFIX))


def redact(text: str, secrets: Iterable[str], keys: Iterable[str]) -> str:
    """``text`` with every guarded value replaced by its placeholder (mask lines included)."""
    key_values = set(guarded(keys))
    named = [(v, placeholder(KEY, v)) for v in key_values]
    named += [(v, placeholder(SECRET, v)) for v in guarded(secrets) if v not in key_values]
    for value, name in sorted(named, key=lambda pair: -len(pair[0])):
        if value in text:
            text = text.replace(value, name)
        if "..." in text:
            text = _redact_shortened(text, value, name)
    return text


def _redact_shortened(text: str, value: str, name: str) -> str:
    """Also replace ``value`` shortened as pytest's saferepr shortens it: ``start...end``."""
    out, at = [], 0
    while (dots := text.find("...", at)) >= 0:
        before = next((k for k in range(len(value) - 1, 3, -1) if text.endswith(value[:k], at, dots)), 0)
        after = next((m for m in range(len(value) - 1, 3, -1) if text.startswith(value[-m:], dots + 3)), 0)
        if before and after:
            out += [text[at : dots - before], name]
            at = dots + 3 + after
        else:
            out.append(text[at : dots + 3])
            at = dots + 3
    return "".join(out) + text[at:]


@dataclass(frozen=True)
class Leak:
    """A guarded value seen in output: which (by fingerprint only), where, and the redacted context."""

    kind: str
    value_id: str
    where: str
    context: str

    def __str__(self) -> str:
        return f"{self.kind} ({self.value_id}) in {self.where}: {self.context!r}"


def find_leaks(
    emissions: Iterable[tuple[str, str]], secrets: Iterable[str], keys: Iterable[str]
) -> list[Leak]:
    """Every (value, place) where a guarded value occurs in ``emissions`` (pairs of place and text).

    Client secrets are allowed on ``::add-mask::`` lines; the management key nowhere.
    """
    keys = guarded(keys)
    key_set = set(keys)
    secrets = [s for s in guarded(secrets) if s not in key_set]
    items = [(where, text, without_mask_lines(text)) for where, text in emissions if text]
    if not items or not (keys or secrets):
        return []
    separator = "\n\x00\n"
    # One search per value over everything first: most values appear nowhere.
    whole = separator.join(text for _, text, _ in items)
    visible = separator.join(shown for _, _, shown in items)
    found = [(KEY, v) for v in keys if v in whole] + [(SECRET, v) for v in secrets if v in visible]
    leaks: list[Leak] = []
    for kind, value in found:
        for where, text, shown in items:
            haystack = text if kind == KEY else shown
            if value in haystack:
                leaks.append(Leak(kind, fingerprint(value), where, _context(haystack, value, secrets, keys)))
    return leaks


def _context(text: str, value: str, secrets: list[str], keys: list[str]) -> str:
    """The line around the first occurrence of ``value``, shortened, with every guarded value redacted."""
    start = text.rfind("\n", 0, text.index(value)) + 1
    end = text.find("\n", start)
    line = text[start : None if end < 0 else end]
    line = redact(line, secrets, keys)
    if len(line) > CONTEXT_CHARS:
        at = max(0, line.find("<") - CONTEXT_CHARS // 4)
        line = ("..." if at else "") + line[at : at + CONTEXT_CHARS] + "..."
    return line


def describe(leaks: list[Leak]) -> str:
    lines = [
        f"canary guard: {len(leaks)} leak{'s' if len(leaks) != 1 else ''} of a client secret or the "
        "management key into output (values shown only by length and SHA-256 prefix):"
    ]
    lines += [f"  - {leak}" for leak in leaks[:MAX_LISTED]]
    if len(leaks) > MAX_LISTED:
        lines.append(f"  ... and {len(leaks) - MAX_LISTED} more")
    lines.append(f'A test that prints fake secrets on purpose may opt out with @pytest.mark.{MARKER}("why").')
    return "\n".join(lines)


# ---- what one test registered and emitted -------------------------------------------------------------


class Guard:
    """The values to guard and the output of the running test. Thread-safe: the emulator runs in a thread."""

    def __init__(self) -> None:
        self._lock = threading.RLock()  # re-entrant: a signal handler may log while the lock is held
        self.keys: dict[str, None] = {}  # for the whole session: a key is never legitimate output
        self.secrets: dict[str, None] = {}  # for the running test
        self.emissions: list[tuple[str, str]] = []
        self.reported: set[tuple[str, str, str]] = set()
        self.active = False

    def add_secret(self, value: object) -> None:
        if isinstance(value, str) and len(value) >= MIN_LENGTH:
            with self._lock:
                self.secrets[value] = None

    def add_key(self, value: object) -> None:
        if isinstance(value, str) and len(value) >= MIN_LENGTH:
            with self._lock:
                self.keys[value] = None

    def add_keys_from(self, env: object) -> None:
        if isinstance(env, Mapping):
            self.add_key(env.get(KEY_VARIABLE))

    def emit(self, where: str, text: str | bytes | None) -> None:
        if not self.active or not text:
            return
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        with self._lock:
            self.emissions.append((where, text))

    def start(self) -> None:
        with self._lock:
            self.secrets = {}
            self.emissions = []
            self.reported = set()
            self.active = True
        self.add_key(os.environ.get(KEY_VARIABLE))

    def stop(self) -> None:
        """Stop watching; the test's values stay known until the next test, for its warnings."""
        with self._lock:
            self.active = False
            self.emissions = []

    def values(self) -> tuple[list[str], list[str]]:
        self.add_key(os.environ.get(KEY_VARIABLE))
        with self._lock:
            return list(self.secrets), list(self.keys)

    def check(self, sections: list[tuple[str, str]]) -> list[Leak]:
        """New leaks in everything emitted so far and in ``sections``; each leak is reported once."""
        secrets, keys = self.values()
        with self._lock:
            emitted = list(self.emissions)
        leaks = []
        for leak in find_leaks([*emitted, *sections], secrets, keys):
            seen = (leak.value_id, leak.where, leak.context)
            if seen not in self.reported:
                self.reported.add(seen)
                leaks.append(leak)
        return leaks


GUARD = Guard()


# ---- the taps: where values are registered and output is seen ------------------------------------------


def _record_text(record: logging.LogRecord) -> str:
    try:
        text = record.getMessage()
    except Exception:  # a malformed record: what it holds is still output
        text = f"{record.msg!s} {record.args!r}"
    if record.exc_info and record.exc_info[0] is not None:
        text += "\n" + logging.Formatter().formatException(record.exc_info)
    elif record.exc_text:
        text += "\n" + record.exc_text
    if record.stack_info:
        text += "\n" + record.stack_info
    return text


def _install() -> list[Callable[[], None]]:
    """Wrap the functions the taps hook into; returns the undo callbacks."""
    undo: list[Callable[[], None]] = []

    def wrap(owner: Any, name: str, make: Callable[[Any], Any]) -> None:
        original = vars(owner).get(name)
        if original is None:  # the code moved: say so, rather than guard less without a word
            where = getattr(owner, "__qualname__", getattr(owner, "__name__", owner))
            raise pytest.UsageError(f"canary guard: {where}.{name} is gone; update tests/canary_guard.py")
        setattr(owner, name, functools.wraps(original)(make(original)))
        undo.append(lambda: setattr(owner, name, original))

    def secret_init(original: Any) -> Any:
        def init(self: Secret, *args: Any, **kwargs: Any) -> None:
            original(self, *args, **kwargs)
            GUARD.add_secret(self.reveal())

        return init

    def client_init(original: Any) -> Any:
        def init(self: emulator_store.Client, *args: Any, **kwargs: Any) -> None:
            original(self, *args, **kwargs)
            GUARD.add_secret(self.secret)

        return init

    def new_secret(original: Any) -> Any:
        def issued() -> str:
            value: str = original()
            GUARD.add_secret(value)
            return value

        return issued

    def config_post_init(original: Any) -> Any:
        def post_init(self: EmulatorConfig) -> None:
            GUARD.add_key(self.management_key)
            original(self)

        return post_init

    def popen_init(original: Any) -> Any:
        def init(self: subprocess.Popen[Any], *args: Any, **kwargs: Any) -> None:
            GUARD.add_keys_from(kwargs.get("env"))
            original(self, *args, **kwargs)

        return init

    def call_handlers(original: Any) -> Any:
        def call(self: logging.Logger, record: logging.LogRecord) -> None:
            if GUARD.active:
                GUARD.emit(f"a log record of {record.name!r} ({record.levelname})", _record_text(record))
            original(self, record)

        return call

    def readouterr(original: Any) -> Any:
        def read(self: pytest.CaptureFixture[Any]) -> Any:
            result = original(self)
            fixture = getattr(self, "captureclass", type(self)).__name__
            GUARD.emit(f"stdout read by the test ({fixture} readouterr)", result.out)
            GUARD.emit(f"stderr read by the test ({fixture} readouterr)", result.err)
            return result

        return read

    def invoke(original: Any) -> Any:
        signature = inspect.signature(original)

        def run(self: click.testing.CliRunner, *args: Any, **kwargs: Any) -> click.testing.Result:
            GUARD.add_keys_from(self.env)
            GUARD.add_keys_from(signature.bind(self, *args, **kwargs).arguments.get("env"))
            result: click.testing.Result = original(self, *args, **kwargs)
            GUARD.emit("stdout of CliRunner.invoke", result.stdout_bytes)
            GUARD.emit("stderr of CliRunner.invoke", result.stderr_bytes)
            return result

        return run

    def warning_init(original: Any) -> Any:
        def init(
            self: warnings.WarningMessage, message: Any, category: Any, *args: Any, **kwargs: Any
        ) -> None:
            original(self, message, category, *args, **kwargs)
            GUARD.emit(f"a warning ({getattr(category, '__name__', category)})", str(message))

        return init

    wrap(Secret, "__init__", secret_init)
    wrap(emulator_store.Client, "__init__", client_init)
    wrap(emulator_store, "new_secret", new_secret)
    wrap(EmulatorConfig, "__post_init__", config_post_init)
    wrap(subprocess.Popen, "__init__", popen_init)
    wrap(logging.Logger, "callHandlers", call_handlers)
    wrap(pytest.CaptureFixture, "readouterr", readouterr)
    wrap(click.testing.CliRunner, "invoke", invoke)
    wrap(warnings.WarningMessage, "__init__", warning_init)
    return undo


_UNDO: list[Callable[[], None]] = []


# ---- pytest hooks ------------------------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(reason): the test prints fake secrets or keys on purpose; the canary guard "
        "(tests/canary_guard.py) does not check its output",
    )
    if not _UNDO:
        _UNDO.extend(_install())
    GUARD.add_key(os.environ.get(KEY_VARIABLE))


def pytest_unconfigure() -> None:
    while _UNDO:
        _UNDO.pop()()


def _exempt(item: pytest.Item) -> bool | None:
    """True when the test opted out with a reason, False when it did not, None for a reasonless marker."""
    marker = item.get_closest_marker(MARKER)
    if marker is None:
        return False
    reason = marker.args[0] if marker.args else marker.kwargs.get("reason")
    return True if isinstance(reason, str) and reason.strip() else None


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, object, object]:
    if not _exempt(item):
        GUARD.start()
    try:
        return (yield)
    finally:
        GUARD.stop()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report: pytest.TestReport = yield
    if _exempt(item) is None and report.when == "setup":
        report.outcome = "failed"
        report.longrepr = f'canary guard: @pytest.mark.{MARKER}("why") needs a reason'
    if GUARD.active:
        _inspect(report)
    return report


@pytest.hookimpl(tryfirst=True)
def pytest_warning_recorded(warning_message: warnings.WarningMessage) -> None:
    """Redact the warning before pytest's summary shows it (the test that issued it fails anyway)."""
    secrets, keys = GUARD.values()
    text = str(warning_message.message)
    redacted = redact(text, secrets, keys)
    if redacted != text:
        warning_message.message = redacted


def _inspect(report: pytest.TestReport) -> None:
    """Check this phase's output; fail the phase on a leak; never let a guarded value be shown."""
    suffix = f" {report.when}"
    phase = [(title, content) for title, content in report.sections if title.endswith(suffix)]
    leaks = GUARD.check(phase)
    secrets, keys = GUARD.values()
    values = guarded([*secrets, *keys])
    if any(value in content for value in values for _, content in report.sections):
        report.sections = [(title, redact(content, secrets, keys)) for title, content in report.sections]
    failure = report.longrepr
    failure_text = None if failure is None or isinstance(failure, tuple) else str(failure)
    if failure_text is not None and any(value in failure_text for value in values):
        failure_text = redact(failure_text, secrets, keys)
        report.longrepr = failure_text + "\n(canary guard: client secrets and keys redacted above)"
    if not leaks:
        return
    message = describe(leaks)
    if report.failed and failure_text is not None:
        report.longrepr = f"{failure_text}\n\n{message}"
    else:
        report.outcome = "failed"
        report.longrepr = message
        if hasattr(report, "wasxfail"):
            delattr(report, "wasxfail")
