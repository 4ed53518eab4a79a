"""Writes a realistic manifest tree for the end-to-end benchmarks: ``write_tree(folder, servers, clients)``.

One file per server (``servers/sNNNN.yaml``) with its clients inline, and ``project.yaml``: the shapes
the examples use (description, tags, audiences, 2 to 4 approved scopes of which one is a connection
scope, callback URLs, session settings; clients with scopes, tags, a secret key and, every other one,
callback URLs), varied by index so that no two objects are the same. The Project's file sink writes
under ``${BENCH_SINK_DIR}`` (``.secrets`` when unset); like every variable, a manifest reads it from
the environment only as ``MCP_VAR_BENCH_SINK_DIR``.
Run as ``python -m bench.manifest_tree FOLDER SERVERS CLIENTS``.
"""

from __future__ import annotations

import sys
from pathlib import Path

PROJECT = """\
kind: Project
projectId: P2BENCH
ownershipTag: managed-by:mcp-reconciler
prune: true
maxDeletes: 25%
scopesFormat: categorized
defaultSink: local
sinks:
  local:
    type: file
    path: ${BENCH_SINK_DIR:-.secrets}/bench-secrets.json
"""

TEAMS = ("productivity", "sales", "support", "platform", "finance", "research")
PERMISSIONS = ("read", "write", "admin", "export")


def server_document(index: int, clients: int) -> str:
    """One MCPServer with ``clients`` clients inline, as a person would write it."""
    name = f"s{index:04}"
    team = TEAMS[index % len(TEAMS)]
    scopes = [f"{name}:{p}" for p in PERMISSIONS[: 1 + index % 3]]  # 1 to 3 permissions ...
    connection = f"{name}.connections"  # ... and a connection scope: 2 to 4 in all
    lines = [
        "# yaml-language-server: $schema=../../schemas/server.schema.json",
        "kind: MCPServer",
        f"name: {name}",
        f"description: Tools of service {index} for the {team} team's agents (read, search, update)",
        f"tags: [team:{team}, tier:{('gold', 'silver', 'bronze')[index % 3]}]",
        "audienceWhitelist:",
        f"  - https://{name}.mcp.example.com/mcp",
        "approvedScopes:",
    ]
    for position, scope in enumerate(scopes):
        lines.append(f"  - name: {scope}")
        lines.append(f"    description: {scope.split(':')[1].capitalize()} access to service {index}")
        if position:
            lines.append("    optional: true")
    lines += [
        f"  - name: {connection}",
        f"    description: Connections that service {index} may use",
        "    category: connections",
        f"    values: [google-calendar, https://api.{team}.example.com/{name}]",
        "approvedCallbackUrls:",
        f"  - https://agents.example.com/oauth/{name}/callback",
        "  - http://localhost:8976/callback",
        "dynamicRegistration:",
        "  enabled: true",
        "sessionSettings:",
        "  enabled: true",
        f"  sessionTokenExpiration: {5 + index % 25}",
        "  sessionTokenExpirationUnit: minutes",
        "clients:",
    ]
    for number in range(clients):
        client = f"agent-{number:02}"
        granted = [scopes[number % len(scopes)], scopes[0]] if number % len(scopes) else [scopes[0]]
        if number % 4 == 0:
            granted.append(connection)
        lines += [f"  - name: {client}", f"    scopes: [{', '.join(granted)}]"]
        if number % 2:
            lines.append(f"    approvedCallbackUrls: ['https://agents.example.com/{name}/{client}/callback']")
        lines += [
            f"    tags: [owner:{TEAMS[(index + number) % len(TEAMS)]}]",
            f"    secret: {{key: {name}/{client}}}",
        ]
    return "\n".join(lines) + "\n"


def write_tree(folder: Path, servers: int, clients: int) -> None:
    """``folder``/project.yaml and ``folder``/servers/sNNNN.yaml for ``servers`` servers of ``clients``
    clients each (the folder is created; existing files of the same names are overwritten)."""
    (folder / "servers").mkdir(parents=True, exist_ok=True)
    (folder / "project.yaml").write_text(PROJECT, encoding="utf-8")
    for index in range(servers):
        (folder / "servers" / f"s{index:04}.yaml").write_text(
            server_document(index, clients), encoding="utf-8"
        )


if __name__ == "__main__":
    write_tree(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
