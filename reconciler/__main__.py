"""``python -m reconciler``: the same as the ``mcp-reconciler`` command."""

from reconciler.cli import main

main()
