"""The ``mcp-reconciler`` command line: the only package that prints or exits.

``main`` groups the commands; each module registers its commands on import.
"""

from __future__ import annotations

from reconciler.cli import apply, demo, emulator, export, plan, show  # noqa: F401 - importing registers the commands
from reconciler.cli.main import cli, main, run

__all__ = ["cli", "main", "run"]
