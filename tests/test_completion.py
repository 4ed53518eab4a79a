"""Shell completion: click's, through the lazy command group, from the installed console script.

The README tells bash, zsh and fish users to load ``_MCP_RECONCILER_COMPLETE=<shell>_source
mcp-reconciler``; the script it prints asks the command again (``<shell>_complete``) for each completion.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(sys.executable).parent / "mcp-reconciler"


def complete(words: str, *, dialect: str = "bash", cword: int | None = None) -> list[str]:
    """What the console script answers the shell's completion function for the command line ``words``
    (the last word being completed; a trailing space starts a new, empty one)."""
    parts = words.split(" ")
    env = {
        **os.environ,
        "_MCP_RECONCILER_COMPLETE": f"{dialect}_complete",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(parts) - 1 if cword is None else cword),
    }
    done = subprocess.run([SCRIPT], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return done.stdout.splitlines()


@pytest.mark.parametrize(
    ("shell", "expected"),
    [
        ("bash", "complete -o nosort -F _mcp_reconciler_completion mcp-reconciler"),
        ("zsh", "#compdef mcp-reconciler"),
        ("fish", "complete --no-files --command mcp-reconciler"),
    ],
)
def test_the_console_script_prints_a_completion_script_for_each_shell(shell: str, expected: str) -> None:
    assert SCRIPT.exists()
    env = {**os.environ, "_MCP_RECONCILER_COMPLETE": f"{shell}_source"}
    done = subprocess.run([SCRIPT], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert expected in done.stdout
    assert "_MCP_RECONCILER_COMPLETE" in done.stdout  # the script asks the command for each completion


def test_a_command_name_is_completed() -> None:
    assert complete("mcp-reconciler pl") == ["plain,plan"]
    assert complete("mcp-reconciler e") == ["plain,emulator", "plain,emulator-console", "plain,export"]


def test_every_command_is_offered_for_an_empty_word() -> None:
    from reconciler.cli.main import COMMANDS  # noqa: PLC0415

    assert complete("mcp-reconciler ") == [f"plain,{name}" for name in sorted(COMMANDS)]


def test_subcommands_options_and_choices_are_completed() -> None:
    assert complete("mcp-reconciler secrets ") == ["plain,check"]
    assert complete("mcp-reconciler emulator-console s") == ["plain,set", "plain,show"]
    assert "plain,--detailed-exitcode" in complete("mcp-reconciler plan --d")
    assert complete("mcp-reconciler plan --format ") == ["plain,text", "plain,json", "plain,markdown"]
    assert complete("mcp-reconciler plan ") == ["file,"]  # PATHS: the shell completes file names


def test_zsh_gets_each_command_with_its_help() -> None:
    kind, name, shown = complete("mcp-reconciler dr", dialect="zsh")
    assert (kind, name) == ("plain", "drift")
    assert shown.startswith("Compare the live project with the")  # click shortens it
