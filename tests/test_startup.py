"""Start-up loads only what the command uses: ``--help`` none of the commands, ``validate`` no network.

The command group imports a command's module when that command runs (``reconciler.cli.main.LazyGroup``),
and the command list of ``--help`` comes from ``COMMANDS`` without importing any. These checks are
structural (which modules a fresh interpreter imported, from ``python -X importtime``), not timed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from reconciler.cli import cli, run
from reconciler.cli.main import COMMANDS
from tests.conftest import EXAMPLES

# Nothing that only reaches the API, serves the emulator, compares objects or speaks to a secret store.
NEVER_FOR_OFFLINE_COMMANDS = {
    "httpx",
    "starlette",
    "uvicorn",
    "deepdiff",
    "boto3",
    "botocore",
    "hvac",
    "nacl",
    "reconciler.emulator",
    "reconciler.workflow",
    "reconciler.descope.transport",
    "reconciler.sinks.aws",
    "reconciler.sinks.github",
    "reconciler.sinks.vault",
}
COMMAND_MODULES = {spec.partition(":")[0] for spec, _help in COMMANDS.values()}
# --help also loads no command, and none of the manifest machinery (pydantic, jsonschema, YAML).
NEVER_FOR_HELP = {
    *NEVER_FOR_OFFLINE_COMMANDS,
    *COMMAND_MODULES,
    "reconciler.cli.common",
    "reconciler.manifest",
    "pydantic",
    "jsonschema",
    "ruamel.yaml",
    "asyncio",
}


def imported_modules(*arguments: str, cwd: Path) -> tuple[set[str], subprocess.CompletedProcess[str]]:
    """The modules ``python -X importtime -m reconciler ARGUMENTS`` imported, and how it ended."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DESCOPE_", "MCP_VAR_"))}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "reconciler", *arguments],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # Lines "import time: SELF | CUMULATIVE | NAME", NAME indented by nesting; the first is a header.
    names = {
        line.rsplit("|", 1)[1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:") and line.count("|") == 2
    }
    assert "reconciler.cli.main" in names, done.stderr[-2000:]  # the parse found the imports
    return names, done


def test_help_imports_no_command_and_nothing_heavy(tmp_path: Path) -> None:
    names, done = imported_modules("--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Commands:" in done.stdout
    assert sorted(names & NEVER_FOR_HELP) == []


def test_validate_imports_neither_the_api_client_nor_the_emulator(tmp_path: Path) -> None:
    names, done = imported_modules("validate", str(EXAMPLES), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("Manifests are valid:")
    assert sorted(names & NEVER_FOR_OFFLINE_COMMANDS) == []
    assert {"reconciler.cli.validate", "reconciler.manifest"} <= names  # what it does use
    assert sorted(names & (COMMAND_MODULES - {"reconciler.cli.validate"})) == []


def test_validate_help_imports_nothing_validate_does_not(tmp_path: Path) -> None:
    names, done = imported_modules("validate", "--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("Usage: mcp-reconciler validate")
    assert sorted(names & NEVER_FOR_OFFLINE_COMMANDS) == []


@pytest.mark.parametrize(
    ("argv", "loaded"),
    [
        (["-vv", "validate", "manifests"], {"reconciler.cli.validate"}),
        (["secrets", "check"], {"reconciler.cli.apply"}),
        (["--help"], set()),
        (["no-such-command"], set()),
    ],
)
def test_the_entry_point_preloads_the_commands_module_only(argv: list[str], loaded: set[str]) -> None:
    """reconciler.entry imports the command's module before Ctrl+C turns into KeyboardInterrupt."""
    code = (
        "import json, sys; from reconciler.cli.main import preload; preload(sys.argv[1:]); "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('reconciler.cli.'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120, check=True
    )
    modules = set(json.loads(done.stdout))
    assert modules & COMMAND_MODULES == loaded


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_listed_command_is_the_one_it_names_with_the_help_it_quotes(name: str) -> None:
    spec, quoted = COMMANDS[name]
    command = cli.get_command(click.Context(cli), name)
    assert command is not None, spec
    assert command.name == name
    first_paragraph = " ".join((command.help or "").partition("\n\n")[0].split())
    assert quoted == first_paragraph
    for limit in (20, 45, 70, 1000):  # shortened alike, whatever the terminal's width
        assert click.Command(name, help=quoted).get_short_help_str(limit) == command.get_short_help_str(limit)


def test_the_command_list_is_what_click_shows_for_the_loaded_commands(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run(["--help"]) == 0
    lazy = capsys.readouterr().out
    eager = click.Group(
        "mcp-reconciler",
        params=cli.params,
        help=cli.help,
        context_settings=cli.context_settings,
        commands=[c for n in sorted(COMMANDS) if (c := cli.get_command(click.Context(cli), n)) is not None],
    )
    with click.Context(eager, info_name="mcp-reconciler", **cli.context_settings) as ctx:
        assert lazy == ctx.get_help() + "\n"
    assert cli.list_commands(click.Context(cli)) == sorted(COMMANDS)


@pytest.mark.parametrize(
    ("typed", "hint"),
    [("plna", "Did you mean 'plan'?"), ("vaildate", "Did you mean 'validate'?"), ("zzz", "")],
)
def test_a_mistyped_command_is_refused_with_the_close_names(
    typed: str, hint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run([typed]) == 1
    err = capsys.readouterr().err
    assert f"Error: No such command {typed!r}.{' ' + hint if hint else ''}\n" in err
    assert "Try 'mcp-reconciler --help' for help." in err
