"""The ``mcp-reconciler`` command line: the only package that prints or exits.

``main`` groups the commands; the group imports each command's module when that command is run
(``reconciler.cli.main.COMMANDS`` lists them), so start-up loads only what the command uses.
"""

from __future__ import annotations

from reconciler.cli.main import cli, main, run

__all__ = ["cli", "main", "run"]
