"""The emulator-console command: a change made by hand on a running emulator, as in Descope's console.

It exists to rehearse drift: change a field of a server or a client, make an object nobody manages,
delete one, then see what ``drift`` and ``plan`` say. It reaches the emulator's admin surface
(``POST /emulator/console``, see ``reconciler.emulator.console``) at ``DESCOPE_BASE_URL``, with
``DESCOPE_PROJECT_ID`` and ``DESCOPE_MANAGEMENT_KEY`` as every other command; Descope itself has no
such endpoint, so it cannot change a real project.

An edit is written as httpie writes a field: ``field=text`` sets a string, ``field:=JSON`` any value
(``:=null`` removes the field), ``field+=text`` adds an item to a list and ``field-=text`` removes one
(``+:=`` and ``-:=`` for a JSON item). A field may be a dotted path into objects
(``dynamicRegistration.enabled:=false``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import click

from reconciler.errors import ExitCode, ReconcilerError, UsageError
from reconciler.textsafe import json_visible, visible

# The emulator command's default project: a console pointed at a default emulator needs no setting.
DEFAULT_PROJECT = "P2MCPRECONCILERDEMO"
_EDIT = re.compile(r"([A-Za-z_][A-Za-z0-9_.]*)(\+:=|-:=|:=|\+=|-=|=)(.*)", re.S)
# The operator of an edit: what it does, and whether its value is JSON.
_OPERATORS = {
    "=": ("set", False),
    ":=": ("set", True),
    "+=": ("add", False),
    "+:=": ("add", True),
    "-=": ("remove", False),
    "-:=": ("remove", True),
}
EDITS_HELP = (
    "EDIT is field=text, field:=JSON (:=null removes it), field+=item or field-=item for a list "
    "(+:= and -:= for a JSON item); a field may be a dotted path such as dynamicRegistration.enabled."
)


def parse_edit(text: str) -> dict[str, Any]:
    """``description=Hi`` → ``{"path": "description", "set": "Hi"}``, as the console route takes it."""
    match = _EDIT.fullmatch(text)
    if match is None:
        raise UsageError(
            f"{text!r} is not an edit: write field=text, field:=JSON, field+=item or field-=item"
        )
    path, operator, raw = match.groups()
    operation, is_json = _OPERATORS[operator]
    if not is_json:
        return {"path": path, operation: raw}
    try:
        value = json.loads(raw)
    except ValueError:
        plain = operator.replace(":", "")
        raise UsageError(
            f"{text!r}: {raw!r} is not JSON (for text, write {path}{plain}{raw}; quote JSON strings)"
        ) from None
    return {"path": path, operation: value}


def target(text: str) -> dict[str, str]:
    """``calendar`` → the server; ``calendar/agent`` → a client of it (names or ids)."""
    server, slash, client = text.partition("/")
    if not server or (slash and not client):
        raise UsageError(f"{text!r}: name a server (NAME) or a client (SERVER/CLIENT)")
    return {"server": server, "client": client} if slash else {"server": server}


def send(body: dict[str, Any], environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """One console request to the emulator at ``DESCOPE_BASE_URL``; an error a person can act on."""
    from reconciler.emulator.remote import AdminError, console  # noqa: PLC0415 - httpx only when sending

    environ = os.environ if environ is None else environ
    base_url = environ.get("DESCOPE_BASE_URL", "")
    key = environ.get("DESCOPE_MANAGEMENT_KEY", "")
    if not base_url or not key:
        raise UsageError(
            "set DESCOPE_BASE_URL to the emulator's address (mcp-reconciler emulator prints it) and "
            "DESCOPE_MANAGEMENT_KEY to the key it accepts"
        )
    project = environ.get("DESCOPE_PROJECT_ID") or DEFAULT_PROJECT
    try:
        return console(base_url, project_id=project, management_key=key, body=body)
    except AdminError as exc:
        raise ReconcilerError(str(exc)) from None


def describe(answer: Mapping[str, Any]) -> str:
    """``server "calendar" (MS…)`` or ``client "calendar/agent" (MSC…)``, safe to print."""
    if answer.get("kind") == "client":
        return visible(f'client "{answer.get("server")}/{answer.get("name")}" ({answer.get("id")})')
    return visible(f'server "{answer.get("name")}" ({answer.get("id")}, {answer.get("surface")})')


@click.group("emulator-console")
def console_group() -> None:
    """Change a running emulator by hand, as someone would in Descope's console, to rehearse drift.

    It talks to the emulator at DESCOPE_BASE_URL with DESCOPE_MANAGEMENT_KEY and DESCOPE_PROJECT_ID
    (default P2MCPRECONCILERDEMO), through the emulator's admin surface: it cannot change a real
    Descope project. Name a server (NAME or its id) or one of its clients (SERVER/CLIENT).
    """


@console_group.command("show")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="The emulator's answer as JSON.")
def show(name: str | None, *, as_json: bool) -> int:
    """List the servers and clients, or show one object's fields (never a secret).

    NAME is a server or SERVER/CLIENT; its fields are shown as JSON, as the console would edit them.
    """
    answer = send({"action": "show", **target(name)} if name else {"action": "list"})
    if as_json or name:
        click.echo(json_visible(json.dumps(answer, indent=2, ensure_ascii=False)))
        return ExitCode.OK
    servers = answer.get("servers") or []
    if not servers:
        click.echo("The emulator holds no server.")
    for server in servers:
        tags = f"  tags: {', '.join(server['tags'])}" if server.get("tags") else ""
        click.echo(visible(f'server "{server["name"]}" ({server["id"]}, {server["surface"]}){tags}'))
        for client in server.get("clients") or []:
            kind = client.get("registrationType")
            extra = f", {kind}" if kind and kind != "preRegistered" else ""
            tags = f"  tags: {', '.join(client['tags'])}" if client.get("tags") else ""
            click.echo(visible(f'  client "{client["name"]}" ({client["id"]}{extra}){tags}'))
    return ExitCode.OK


@console_group.command("set", epilog=EDITS_HELP)
@click.argument("name")
@click.argument("edits", nargs=-1, required=True, metavar="EDIT...")
def set_fields(name: str, edits: Sequence[str]) -> int:
    """Change fields of a server (NAME) or a client (SERVER/CLIENT).

    \b
    mcp-reconciler emulator-console set calendar description="Edited by hand" tags+=hotfix
    mcp-reconciler emulator-console set calendar/reporting-job scopes-=calendar:read
    """
    click.echo(change(name, edits))
    return ExitCode.OK


def change(name: str, edits: Sequence[str], environ: Mapping[str, str] | None = None) -> str:
    """Make ``edits`` to the server or client ``name``; what was changed, for people (the demo's
    hand-made change goes through here too)."""
    answer = send({"action": "update", **target(name), "edits": [parse_edit(e) for e in edits]}, environ)
    return f"Changed {describe(answer)}: {len(edits)} edit{'' if len(edits) == 1 else 's'}."


@console_group.command("create", epilog=EDITS_HELP)
@click.argument("name")
@click.argument("edits", nargs=-1, metavar="[EDIT...]")
@click.option(
    "--surface",
    type=click.Choice(["mcp-servers", "resources"]),
    default="mcp-servers",
    show_default=True,
    help="For a server: made through the MCP Server API, or as a Resource (give it a uri=...).",
)
def create(name: str, edits: Sequence[str], surface: str) -> int:
    """Make a server (NAME) or a client (SERVER/CLIENT) that no manifest manages, with its fields.

    \b
    mcp-reconciler emulator-console create sandbox description="Someone's experiment"
    mcp-reconciler emulator-console create calendar/console-bot scopes:='["calendar:read"]'
    """
    body = {"action": "create", **target(name), "edits": [parse_edit(e) for e in edits]}
    if "client" not in body:
        body["surface"] = surface
    click.echo(f"Created {describe(send(body))}; no manifest manages it.")
    return ExitCode.OK


@console_group.command("delete")
@click.argument("name")
def delete(name: str) -> int:
    """Delete a server (with its clients) or a client (SERVER/CLIENT)."""
    answer = send({"action": "delete", **target(name)})
    gone = answer.get("clients") or []
    extra = f", with its {len(gone)} client{'' if len(gone) == 1 else 's'}" if gone else ""
    click.echo(f"Deleted {describe(answer)}{extra}.")
    return ExitCode.OK
