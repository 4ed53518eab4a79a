"""Runs every benchmark and prints the tables for BENCHMARKS.md: ``python -m bench [--smoke]``.

First the command as a user runs it (``bench.command``: ``mcp-reconciler`` in a subprocess on
generated manifest trees, beside floors measured in the same run), then the in-process breakdown.
Each scenario gets its own emulator process (with the latency and rate limit it asks for) and its
own measuring process, so neither's CPU time or memory is counted as the other's.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench import command
from bench.scenarios import PROJECT, seed_body
from reconciler.throttle import DEFAULT_CONCURRENCY

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Emulator:
    base_url: str
    key: str

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {PROJECT}:{self.key}"}
        response = httpx.request(
            method, f"{self.base_url}/emulator/{path}", json=body, headers=headers, timeout=600
        )
        response.raise_for_status()
        return response.json()


@contextmanager
def emulator(*, latency_ms: float, rate: str | None = None) -> Iterator[Emulator]:
    key = secrets.token_urlsafe(16)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "reconciler", "emulator", "--port", str(port), "--project-id", PROJECT]
    command += ["--no-access-log"]  # its stdout is thrown away: formatting 1,000s of lines is not the API
    command += ["--latency-ms", str(latency_ms)] + (["--rate-limit", rate] if rate else [])
    env = {**os.environ, "DESCOPE_MANAGEMENT_KEY": key}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    handle = Emulator(f"http://127.0.0.1:{port}", key)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                handle.admin("GET", "stats")
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield handle
    finally:
        process.terminate()
        process.wait(timeout=30)


def measure(kind: str, args: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run(  # arguments on stdin: a 20,000-client id list does not fit in argv
        [sys.executable, "-m", "bench.scenarios", kind],
        input=json.dumps(args),
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=3600,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def plan_rows(
    sizes: list[tuple[int, int]], latency_ms: float, concurrency: int, baseline_sample: int
) -> list[dict[str, Any]]:
    rows = []
    for servers, clients in sizes:
        with emulator(latency_ms=latency_ms) as emu:
            seeded = emu.admin("POST", "seed", seed_body(servers, clients))
            client_ids = {s["id"]: [c["id"] for c in s["clients"]] for s in seeded["servers"]}
            base = {"base_url": emu.base_url, "key": emu.key, "servers": servers, "clients": clients}
            for label, extra in (
                ("this tool", {"concurrency": concurrency}),
                ("this tool, --concurrency 1", {"concurrency": 1}),
            ):
                emu.admin("POST", "reset", {"countersOnly": True})
                figures = measure("plan", {**base, **extra})
                figures["calls"] = emu.admin("GET", "stats")["total"]
                rows.append({"size": f"{servers}x{clients}", "who": label, **figures})
            total_calls = 1 + servers + servers * clients
            limit = min(total_calls, baseline_sample)
            emu.admin("POST", "reset", {"countersOnly": True})
            figures = measure("baseline", {**base, "client_ids": client_ids, "call_limit": limit})
            measured = emu.admin("GET", "stats")["total"]
            if measured < total_calls:  # extrapolate the rest from the measured mean per call
                figures["wall_s"] = figures["wall_s"] * total_calls / measured
                figures["cpu_s"] = figures["cpu_s"] * total_calls / measured
                figures["extrapolated_from"] = measured
            figures["calls"] = total_calls
            rows.append({"size": f"{servers}x{clients}", "who": "per-object baseline", **figures})
            # servers/all, then resources/load (the second surface), then the searches, 8 at a time
            ideal = (2 + math.ceil(servers / concurrency)) * latency_ms / 1000
            rows[-3]["ideal_s"] = ideal
    return rows


def apply_row(creates: int, rate: tuple[int, float], latency_ms: float, concurrency: int) -> dict[str, Any]:
    servers = max(1, creates // 100)
    with emulator(latency_ms=latency_ms, rate=f"{rate[0]}/{rate[1]:g}") as emu:
        emu.admin("POST", "seed", seed_body(servers, 0))
        emu.admin("POST", "reset", {"countersOnly": True})
        args = {
            "base_url": emu.base_url,
            "key": emu.key,
            "servers": servers,
            "clients": creates // servers,
            "concurrency": concurrency,
            "rate": list(rate),
        }
        figures = measure("apply", args)
        stats = emu.admin("GET", "stats")
    allowed = rate[0] / rate[1]
    achieved = stats["total"] / figures["wall_s"]
    return {
        **figures,
        "requests": stats["total"],
        "rate_limited": stats["rateLimited"],
        "achieved_per_s": achieved,
        "allowed_per_s": allowed,
        "fraction": achieved / allowed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to prove the script runs (CI)")
    parser.add_argument(
        "--out",
        type=Path,
        help="where the figures go (default: bench/results.json; with --smoke, a file in the temporary "
        "folder, so that a smoke run never rewrites the tracked figures)",
    )
    parser.add_argument("--command-only", action="store_true", help="only the end-to-end scenarios")
    options = parser.parse_args()
    if options.out is None:
        options.out = (
            Path(tempfile.gettempdir()) / "mcp-reconciler-bench-smoke.json"
            if options.smoke
            else ROOT / "bench" / "results.json"
        )
    if options.smoke:
        e2e = {"sizes": [2], "clients": 2, "apply_sizes": [2], "latency_ms": 1.0, "times": 1}
    else:
        e2e = {
            "sizes": [10, 100, 1000],
            "clients": 20,
            "apply_sizes": [10, 100],
            "latency_ms": 20.0,
            "times": 5,
        }
    started = time.monotonic()
    end_to_end = command.scenarios(**e2e)  # type: ignore[arg-type]
    print(command.render(end_to_end), flush=True)
    if options.command_only:
        options.out.write_text(json.dumps({"command": end_to_end}, indent=2) + "\n")
        return
    if options.smoke:
        sizes, latency, creates, rate, diff_size, sample = [(3, 2)], 1.0, 12, (40, 1.0), (20, 5), 50
    else:
        sizes, latency, creates, rate, diff_size, sample = (
            [(10, 5), (200, 10), (1000, 20)],
            20.0,
            500,
            (100, 10.0),
            (1000, 20),
            3000,
        )
    concurrency = DEFAULT_CONCURRENCY  # the tool's default, as a user runs it
    results: dict[str, Any] = {
        "command": end_to_end,
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "settings": {
            "latency_ms": latency,
            "concurrency": concurrency,
            "apply_rate": rate,
            "smoke": options.smoke,
        },
        "plan": plan_rows(sizes, latency, concurrency, sample),
        "apply": apply_row(creates, rate, latency, concurrency),
        "diff": measure("diff", {"servers": diff_size[0], "clients": diff_size[1]}),
        "profile": measure("diff", {"servers": diff_size[0], "clients": diff_size[1], "profile": True})[
            "profile"
        ],
    }
    results["seconds"] = time.monotonic() - started
    options.out.write_text(json.dumps(results, indent=2) + "\n")
    print(render(results))


def render(results: dict[str, Any]) -> str:
    lines = [
        "| size | who | calls | wall s | CPU s | peak RSS MiB | ideal s |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in results["plan"]:
        note = f" (extrapolated from {row['extrapolated_from']})" if "extrapolated_from" in row else ""
        ideal = f"{row['ideal_s']:.2f}" if "ideal_s" in row else ""
        cells = [row["size"], row["who"] + note, row["calls"], f"{row['wall_s']:.2f}", f"{row['cpu_s']:.2f}"]
        cells += [f"{row['peak_rss_mib']:.0f}", ideal]
        lines.append("| " + " | ".join(str(cell) for cell in cells) + " |")
    a = results["apply"]
    rate = f"{a['achieved_per_s']:.2f}/s of {a['allowed_per_s']:.2f}/s allowed ({a['fraction']:.0%})"
    lines += [
        "",
        f"apply: {a['done']} changes, {a['failed']} failed, {a['requests']} requests in {a['wall_s']:.1f} s: "
        f"{rate}, {a['rate_limited']} 429s",
        f"diff: {results['diff']['changes']} changed objects planned in {results['diff']['cpu_s']:.2f} s CPU "
        f"({results['diff']['wall_s']:.2f} s wall), peak RSS {results['diff']['peak_rss_mib']:.0f} MiB",
        f"(benchmark run took {results['seconds']:.0f} s)",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
