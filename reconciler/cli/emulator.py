"""The emulator command: the local Descope stand-in, in the foreground.

The port is bound before anything is printed, so a port in use (or a host that is not this machine's)
ends with one ``error:`` line and exit 1, with no banner and no web-server traceback; uvicorn then
serves on that very socket, so it cannot fail to bind it later.
"""

from __future__ import annotations

import errno
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from reconciler.errors import (
    ExitCode,
    ReconcilerError,
    UsageError,
)
from reconciler.throttle import parse_rate

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from reconciler.emulator import EmulatorConfig


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", default=8765, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on."
)
@click.option(
    "--project-id",
    envvar="DESCOPE_PROJECT_ID",
    default="P2MCPRECONCILERDEMO",
    show_default=True,
    help="The project ID it answers for [env: DESCOPE_PROJECT_ID].",
)
@click.option(
    "--management-key",
    envvar="DESCOPE_MANAGEMENT_KEY",
    help="The management key it accepts; prefer the environment variable [env: DESCOPE_MANAGEMENT_KEY].",
)
@click.option(
    "--state-file", type=click.Path(dir_okay=False, path_type=Path), help="Keep state in this JSON file."
)
@click.option("--latency-ms", default=0.0, type=click.FloatRange(min=0), help="Delay before every answer.")
@click.option("--rate-limit", metavar="N/SECONDS", help="Answer 429 past N requests in any SECONDS.")
@click.option(
    "--fault-rate", default=0.0, type=click.FloatRange(0, 1), help="Chance of a 5xx before handling."
)
@click.option(
    "--fault-after-commit-rate",
    default=0.0,
    type=click.FloatRange(0, 1),
    help="Chance that a mutation happens and then fails (5xx or a dropped connection).",
)
@click.option("--slow-rate", default=0.0, type=click.FloatRange(0, 1), help="Chance of a late answer.")
@click.option("--slow-ms", default=0.0, type=click.FloatRange(min=0), help="How late a late answer comes.")
@click.option("--seed", type=int, help="Seed for repeatable faults.")
@click.option(
    "--scopes-format",
    type=click.Choice(["categorized", "list"]),
    default="categorized",
    show_default=True,
    help="Shape of approvedScopes in answers: the categorized object of Descope's API reference and Go SDK, "
    "or the guide's flat list. Both shapes are accepted in requests.",
)
@click.option(
    "--strict/--no-strict",
    default=None,
    help="Refuse (400) a write that carries a field Descope assigns, as Descope's Go SDK never sends one: "
    "a client's clientId, registrationType, status or cleartext, a new server's id. --no-strict ignores "
    "them. [default: strict when MCP_RECONCILER_EMULATOR_STRICT=1]",
)
@click.option(
    "--resource-surface",
    type=click.Choice(["isolated", "projected"]),
    default="isolated",
    show_default=True,
    help="Whether the MCP server endpoints see Resources (/v1/mgmt/resource*): isolated, neither surface "
    "sees the other's objects; projected, servers/all and server/load also answer each Resource of type "
    "mcp as an MCP server. Clients of a Resource work through the client endpoints either way.",
)
@click.option(
    "--access-log/--no-access-log",
    default=True,
    show_default=True,
    help="Print a line for every request it answers (--no-access-log: a long benchmark or a busy CI log).",
)
def emulator(**options: Any) -> int:
    """Run the local Descope emulator (MCP server and Resource management API) until interrupted.

    Point mcp-reconciler at it with DESCOPE_BASE_URL=http://HOST:PORT and the same
    DESCOPE_PROJECT_ID and DESCOPE_MANAGEMENT_KEY.
    """
    # Load the server stack only here.
    import uvicorn  # noqa: PLC0415

    from reconciler.emulator import EmulatorConfig  # noqa: PLC0415
    from reconciler.emulator.app import strict_by_default  # noqa: PLC0415
    from reconciler.emulator.server import uvicorn_config  # noqa: PLC0415

    if not options["management_key"]:
        raise UsageError("set DESCOPE_MANAGEMENT_KEY (or --management-key): the key the emulator will accept")
    try:
        rate = parse_rate(options["rate_limit"]) if options["rate_limit"] else None
        config = EmulatorConfig(
            project_id=options["project_id"],
            management_key=options["management_key"],
            state_file=options["state_file"],
            latency_ms=options["latency_ms"],
            rate_limit=rate,
            fault_rate=options["fault_rate"],
            fault_after_commit_rate=options["fault_after_commit_rate"],
            slow_rate=options["slow_rate"],
            slow_ms=options["slow_ms"],
            seed=options["seed"],
            scopes_format=options["scopes_format"],
            strict=strict_by_default() if options["strict"] is None else options["strict"],
            resource_surface=options["resource_surface"],
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    app = _app(config)
    host = options["host"]
    listener = _listen(host, options["port"])
    port = listener.getsockname()[1]  # the port given, or the one the system chose for --port 0
    netloc = _netloc(host, port)
    click.echo(
        f"Descope emulator for project {config.project_id} on http://{netloc}"
        + (f", state in {config.state_file}" if config.state_file else ", state in memory only"),
        err=True,
    )
    if config.strict:
        click.echo("Strict: a write that carries a field Descope assigns is refused.", err=True)
    if config.resource_surface == "projected":
        click.echo("Projected: MCP server endpoints also answer Resources of type mcp.", err=True)
    click.echo(f"Use it with: export DESCOPE_BASE_URL=http://{netloc}", err=True)
    logged = options["access_log"]
    server = uvicorn.Server(uvicorn_config(app, host=host, port=port, quiet=False, access_log=logged))
    try:
        server.run(sockets=[listener])
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl+C once it has shut down cleanly
        click.echo("Emulator stopped.", err=True)
        return ExitCode.INTERRUPTED
    except SystemExit:  # uvicorn exits (with its own code) when it cannot start; it logged why
        if server.started:
            raise
        raise ReconcilerError(f"the emulator could not start on {netloc} (see above)") from None
    finally:
        listener.close()
    return ExitCode.OK


def _app(config: EmulatorConfig) -> ASGIApp:
    """The emulator's app, its state file loaded: a clean error when that file cannot be used."""
    from reconciler.emulator import create_app  # noqa: PLC0415

    path = config.state_file
    try:
        return create_app(config)
    except (OSError, ValueError) as exc:
        if path is None:
            raise
        if isinstance(exc, OSError):
            reason = exc.strerror or type(exc).__name__
        else:
            reason = str(exc).removeprefix(f"state file {path} cannot be read: ")
        raise UsageError(f"the state file {path} cannot be used: {reason}") from None


def _listen(host: str, port: int) -> socket.socket:
    """A socket bound to HOST:PORT and listening, or a clean error (the port in use, an unknown host)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return _tcp_listener(family, (host, port))
    except (OSError, ValueError) as exc:
        raise ReconcilerError(f"cannot listen on {_netloc(host, port)}: {_listen_problem(exc)}") from None


# Why a socket cannot listen, in words that say what to do.
_LISTEN_PROBLEMS = {
    errno.EADDRINUSE: "it is already in use; pick another with --port (--port 0: any free one)",
    errno.EADDRNOTAVAIL: "that address is not one of this machine's; pick another with --host",
    errno.EACCES: "permission denied (a port below 1024 needs privileges); pick another with --port",
}


def _listen_problem(exc: OSError | ValueError) -> str:
    if isinstance(exc, socket.gaierror):
        return "no such host; pick another with --host"
    if isinstance(exc, OSError) and exc.errno in _LISTEN_PROBLEMS:
        return _LISTEN_PROBLEMS[exc.errno]
    return (exc.strerror if isinstance(exc, OSError) else None) or str(exc)


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _tcp_listener(family: socket.AddressFamily, address: tuple[str, int]) -> socket.socket:
    """A listening TCP socket made with an explicit IPPROTO_TCP: asyncio turns Nagle's algorithm off
    only on connections accepted from such a socket, and with it on, each answer (headers, then
    body) waits some 40 ms for the client's delayed ACK (``socket.create_server`` leaves it 0)."""
    listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
        listener.listen()
    except BaseException:
        listener.close()
        raise
    return listener
