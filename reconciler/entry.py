"""The process entry point: imports the command line late, so Ctrl+C at any moment exits 130.

The console script and ``python -m reconciler`` start here. Importing the commands (click, httpx,
pydantic, ...) takes a noticeable part of a second; a Ctrl+C in that window raised KeyboardInterrupt
outside every handler and printed a traceback. This module imports nothing heavy itself.
"""

from __future__ import annotations

import gc
import signal
import sys

INTERRUPTED = 130  # reconciler.errors.ExitCode.INTERRUPTED, without importing it first


# The collector's thresholds for a run: a command builds large trees of objects (manifests, the live
# project, a plan) that live until it exits, and with Python's defaults (700, 10, 10) the collector
# walks them again every few thousand allocations: a third of a large plan's CPU (BENCHMARKS.md).
# Cycles are still collected, only less often.
GC_THRESHOLDS = (100_000, 50, 100)


def main() -> None:
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        from reconciler.cli import run  # noqa: PLC0415 - late on purpose: see the module docstring
        from reconciler.cli.main import preload  # noqa: PLC0415

        preload(sys.argv[1:])  # the command's own modules, which the command group imports on demand
        # The package's start-up handler (reconciler/__init__.py) hands over to the usual one, under
        # which the commands turn KeyboardInterrupt into exit 130 themselves.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        code = run()
    except KeyboardInterrupt:
        sys.stderr.write("Interrupted.\n")
        code = INTERRUPTED
    sys.exit(code)
