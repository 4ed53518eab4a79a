"""``python -m bench.probe ARGS...``: the ``mcp-reconciler`` command exactly as its console script runs
it, counting its fsync calls and reading its I/O counters at exit into ``$BENCH_PROBE_OUT`` (JSON).

The console script is ``reconciler.entry:main``; this calls the same function, so the figures are
those of the command a user runs, with two counters added."""

from __future__ import annotations

import atexit
import json
import os
from pathlib import Path
from typing import Any

_fsyncs = 0
_real_fsync = os.fsync


def _counted_fsync(fd: Any) -> None:
    global _fsyncs  # noqa: PLW0603 - one process, one counter
    _fsyncs += 1
    _real_fsync(fd)


def _report() -> None:
    target = os.environ.get("BENCH_PROBE_OUT")
    if not target:
        return
    io: dict[str, int] = {}
    try:
        for line in Path("/proc/self/io").read_text().splitlines():
            name, _, value = line.partition(":")
            io[name.strip()] = int(value)
    except OSError:  # not Linux: only the fsync count
        pass
    Path(target).write_text(json.dumps({"fsyncs": _fsyncs, "write_bytes": io.get("wchar", 0)}))


if __name__ == "__main__":
    os.fsync = _counted_fsync
    atexit.register(_report)
    from reconciler.entry import main

    main()
