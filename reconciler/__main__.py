"""``python -m reconciler``: the same as the ``mcp-reconciler`` command."""

from reconciler.entry import main

main()
