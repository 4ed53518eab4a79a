"""The canary guard (tests/canary_guard.py) can fail: it catches secrets and keys in every output it watches.

Its checking function is tested on crafted text; then a whole pytest session (a subprocess, with the
guard as its only plugin) runs tests that leak on purpose through each channel, and a few that must
pass, and the outcome of each is checked, along with the session's output, which must not show a value.
"""

from __future__ import annotations

import re

import pytest

from tests.canary_guard import (
    KEY,
    SECRET,
    describe,
    find_leaks,
    fingerprint,
    redact,
    without_mask_lines,
)
from tests.conftest import ROOT

# Never constructed as a Secret in this process: only the inner session knows them as guarded values.
VALUE = "inner-canary-s3cret-value-7a1c"
OTHER = "inner-canary-other-s3cret-51b0"
MANAGEMENT_KEY = "inner-canary-management-key-19d0"
EXEMPT = "inner-canary-exempt-fake-value-0e2d"


def test_a_secret_in_any_output_is_a_leak_named_without_its_value() -> None:
    emissions = [
        ("stdout", f"Created client s/a\nits secret is {VALUE} (oops)\n"),
        (
            "a log record of 'reconciler.api' (DEBUG)",
            f"POST server/client/create -> 200 {{'secret': '{VALUE}'}}",
        ),
        ("stderr", f"error: {OTHER}"),
        ("clean", "nothing to see here"),
    ]
    leaks = find_leaks(emissions, [VALUE, OTHER], [])
    assert sorted((leak.where, leak.kind) for leak in leaks) == [
        ("a log record of 'reconciler.api' (DEBUG)", SECRET),
        ("stderr", SECRET),
        ("stdout", SECRET),
    ]
    report = describe(leaks) + "".join(str(leak) for leak in leaks)
    assert VALUE not in report
    assert OTHER not in report
    assert fingerprint(VALUE) in report
    assert "its secret is <client secret 30 chars, sha256:" in report  # the context, redacted


def test_mask_announcements_are_the_one_place_for_a_secret_but_never_for_the_key() -> None:
    text = f"::add-mask::{VALUE}\nnext line\n::add-mask::{MANAGEMENT_KEY}\n"
    leaks = find_leaks([("stdout", text)], [VALUE], [MANAGEMENT_KEY])
    assert [(leak.kind, leak.value_id) for leak in leaks] == [(KEY, fingerprint(MANAGEMENT_KEY))]
    # Only a line that starts with the announcement: not one that merely contains it.
    quoted = f"echo ::add-mask::{VALUE}\n  ::add-mask::{VALUE}\n"
    assert len(find_leaks([("stdout", quoted)], [VALUE], [])) == 1
    assert without_mask_lines(f"a\n::add-mask::{VALUE}\nb") == "a\nb"


def test_short_values_are_not_guarded_and_redaction_hides_every_value() -> None:
    assert find_leaks([("stdout", "abc1234 is shown")], ["abc1234"], ["abc1234"]) == []
    redacted = redact(f"{VALUE} {MANAGEMENT_KEY} {VALUE}x", [VALUE], [MANAGEMENT_KEY])
    assert VALUE not in redacted
    assert MANAGEMENT_KEY not in redacted
    assert redacted.count("<client secret ") == 2
    assert "<management key " in redacted


INNER = f'''
import logging
import os
import sys
import warnings

import click
import pytest
from click.testing import CliRunner

from reconciler.emulator import EmulatorConfig
from reconciler.emulator import store
from reconciler.secret import Secret

VALUE = "{VALUE}"
KEY = "{MANAGEMENT_KEY}"
EXEMPT = "{EXEMPT}"


def test_leak_click_echo():
    click.echo("created; secret " + Secret(VALUE).reveal())


def test_leak_print_to_stderr():
    print(Secret(VALUE).reveal(), file=sys.stderr)


def test_leak_logging():
    logging.getLogger("reconciler.test").warning("delivering %s", Secret(VALUE).reveal())


def test_leak_logging_through_a_logger_that_does_not_propagate():
    logger = logging.getLogger("isolated")
    logger.propagate = False
    logger.addHandler(logging.NullHandler())
    logger.error("oops", exc_info=ValueError("bad secret " + Secret(VALUE).reveal()))


def test_leak_logging_below_every_level_is_no_leak():
    Secret(VALUE)
    logging.getLogger("reconciler.quiet").debug("%s", VALUE)  # reaches no handler: root is at WARNING


def test_leak_read_back_with_capsys(capsys):
    print(Secret(VALUE).reveal())
    assert VALUE in capsys.readouterr().out


def test_leak_cli_runner():
    @click.command()
    def command():
        click.echo(Secret(VALUE).reveal(), err=True)

    assert CliRunner().invoke(command).exit_code == 0


def test_leak_cli_runner_env_key():
    @click.command()
    def command():
        click.echo("key: " + os.environ["DESCOPE_MANAGEMENT_KEY"])

    assert CliRunner().invoke(command, env={{"DESCOPE_MANAGEMENT_KEY": KEY}}).exit_code == 0


def test_leak_warning():
    warnings.warn("cannot store " + Secret(VALUE).reveal(), stacklevel=1)


def test_leak_key_from_the_environment(monkeypatch):
    monkeypatch.setenv("DESCOPE_MANAGEMENT_KEY", KEY)
    logging.getLogger("reconciler.api").error("Authorization: Bearer P2:%s", KEY)


def test_leak_key_of_an_emulator():
    EmulatorConfig(project_id="P2", management_key=KEY)
    print("started with", KEY)


def test_leak_key_in_a_mask_line(monkeypatch):
    monkeypatch.setenv("DESCOPE_MANAGEMENT_KEY", KEY)
    click.echo("::add-mask::" + KEY)


def test_leak_secret_the_emulator_issued():
    print("issued", store.new_secret())


def test_leak_in_a_failing_test_is_redacted():
    secret = Secret(VALUE)
    print("held", secret.reveal())
    assert secret.reveal() == "something else"


@pytest.fixture
def leaks_at_teardown():
    yield
    logging.getLogger("reconciler.teardown").warning("closing %s", Secret(VALUE).reveal())


def test_leak_at_teardown(leaks_at_teardown):
    pass


def test_pass_mask_announcement():
    click.echo("::add-mask::" + Secret(VALUE).reveal())
    click.echo("Applied 1 change")


def test_pass_secret_kept_in_a_variable(tmp_path):
    secret = Secret(VALUE)
    (tmp_path / "sink.json").write_text(secret.reveal())
    assert (tmp_path / "sink.json").read_text() == VALUE
    print(secret, repr(secret), f"{{secret}}")  # all "(sensitive)"


def test_pass_short_secret():
    print(Secret("abc1234").reveal())


@pytest.mark.canary_exempt("prints a fake secret on purpose")
def test_pass_exempt():
    print(Secret(EXEMPT).reveal())
    logging.getLogger("x").error(EXEMPT)


@pytest.mark.canary_exempt
def test_error_exempt_without_a_reason():
    pass
'''

EXPECTED = {
    "test_leak_click_echo": "FAILED",
    "test_leak_print_to_stderr": "FAILED",
    "test_leak_logging": "FAILED",
    "test_leak_logging_through_a_logger_that_does_not_propagate": "FAILED",
    "test_leak_logging_below_every_level_is_no_leak": "PASSED",
    "test_leak_read_back_with_capsys": "FAILED",
    "test_leak_cli_runner": "FAILED",
    "test_leak_cli_runner_env_key": "FAILED",
    "test_leak_warning": "FAILED",
    "test_leak_key_from_the_environment": "FAILED",
    "test_leak_key_of_an_emulator": "FAILED",
    "test_leak_key_in_a_mask_line": "FAILED",
    "test_leak_secret_the_emulator_issued": "FAILED",
    "test_leak_in_a_failing_test_is_redacted": "FAILED",
    "test_leak_at_teardown": "PASSED ERROR",
    "test_pass_mask_announcement": "PASSED",
    "test_pass_secret_kept_in_a_variable": "PASSED",
    "test_pass_short_secret": "PASSED",
    "test_pass_exempt": "PASSED",
    "test_error_exempt_without_a_reason": "ERROR",
}

WHERE = {
    "test_leak_click_echo": "client secret (30 chars, sha256:{v}) in Captured stdout call: 'created; secret <client secret",
    "test_leak_print_to_stderr": "in Captured stderr call",
    "test_leak_logging": "in a log record of 'reconciler.test' (WARNING): 'delivering <client secret",
    "test_leak_logging_through_a_logger_that_does_not_propagate": "in a log record of 'isolated' (ERROR)",
    "test_leak_read_back_with_capsys": "in stdout read by the test (SysCapture readouterr)",
    "test_leak_cli_runner": "in stderr of CliRunner.invoke",
    "test_leak_cli_runner_env_key": "management key (32 chars, sha256:{k}) in stdout of CliRunner.invoke",
    "test_leak_warning": "in a warning (UserWarning)",
    "test_leak_key_from_the_environment": "management key (32 chars, sha256:{k}) in a log record of 'reconciler.api'",
    "test_leak_key_of_an_emulator": "management key (32 chars, sha256:{k}) in Captured stdout call",
    "test_leak_key_in_a_mask_line": "'::add-mask::<management key 32 chars",
    "test_leak_secret_the_emulator_issued": "client secret (43 chars, sha256:",
    "test_leak_at_teardown": "in a log record of 'reconciler.teardown' (WARNING)",
}


def test_the_guard_fails_each_leaking_test_and_passes_the_others(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.delenv("DESCOPE_MANAGEMENT_KEY", raising=False)
    pytester.makepyfile(test_inner=INNER)
    plugins = ("-p", "tests.canary_guard", "-p", "no:cacheprovider", "-p", "no:asyncio")
    result = pytester.runpytest_subprocess(*plugins, "-rA", "-W", "default", timeout=120)
    output = result.stdout.str() + result.stderr.str()
    # The guard reports without showing: not a value anywhere, not even in the failing test's assertion.
    assert VALUE not in output
    assert MANAGEMENT_KEY not in output
    outcomes: dict[str, list[str]] = {}
    for match in re.finditer(r"^(PASSED|FAILED|ERROR) test_inner\.py::(\w+)", output, re.MULTILINE):
        outcomes.setdefault(match[2], []).append(match[1])
    assert {name: " ".join(sorted(found, reverse=True)) for name, found in outcomes.items()} == EXPECTED
    for name, where in WHERE.items():
        section = _failure_section(output, name)
        expected = where.format(v=fingerprint(VALUE)[-12:], k=fingerprint(MANAGEMENT_KEY)[-12:])
        assert expected in section, (name, section)
    assert "assert '<client secret 30 chars, sha256:" in _failure_section(
        output, "test_leak_in_a_failing_test_is_redacted"
    )
    assert 'canary_exempt("why") needs a reason' in output
    assert "UserWarning: cannot store <client secret 30 chars" in output  # the warnings summary, redacted
    assert f"Captured stdout call -----------------------------\n{EXEMPT}\n" in output  # exempt: as printed


def _failure_section(output: str, name: str) -> str:
    """The part of pytest's report about one test: from its ``____ name ____`` header to the next."""
    found = re.search(
        rf"_{{3,}} (?:ERROR at teardown of )?{name} _{{3,}}\n(.*?)(?=\n_{{3,}} |\n={{3,}} )", output, re.S
    )
    return found[1] if found else ""
