"""mcp-reconciler: declarative GitOps for Descope MCP servers and their OAuth clients."""

import os as _os
import signal as _signal


def _quiet_interrupt(_signum: int, _frame: object) -> None:
    # Until the command line takes over (reconciler.entry), a Ctrl+C ends start-up at once and
    # silently, with the status a shell shows for it, instead of a traceback from the middle of an import.
    _os._exit(130)


if _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler:
    _signal.signal(_signal.SIGINT, _quiet_interrupt)
