"""``python -m bench.probe ARGS...``: the ``mcp-reconciler`` command exactly as its console script runs
it, counting its fsync calls and reading its I/O counters and peak memory at exit into
``$BENCH_PROBE_OUT`` (JSON).

Peak memory is the process's own ``VmHWM``: Linux keeps ``ru_maxrss`` across ``execve``, so what
``wait4`` reports for a child is at least its parent's size when it was started (a benchmark parent
that built a large seed would lend every later child its size).

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


def peak_rss_mib() -> float | None:
    """This process's own peak resident memory (``VmHWM``), in MiB; None where /proc has none."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


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
    figures: dict[str, float] = {"fsyncs": _fsyncs, "write_bytes": io.get("wchar", 0)}
    peak = peak_rss_mib()
    if peak is not None:
        figures["peak_rss_mib"] = peak
    Path(target).write_text(json.dumps(figures))


if __name__ == "__main__":
    os.fsync = _counted_fsync
    atexit.register(_report)
    from reconciler.entry import main

    main()
