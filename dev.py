"""Set-up and everyday tasks with nothing but python3: ``python3 dev.py demo`` and ``python3 dev.py test``.

Each task first makes sure ``.venv`` exists and holds this package with what the task needs; the
install is skipped when pyproject.toml has not changed since the last one, so repeated runs are fast.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")


def ensure_environment(extras: str) -> None:
    """Create .venv and install the package (with ``extras``) unless that exact install is done."""
    stamp = VENV / f".installed-{extras or 'base'}"
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    # A dev install includes the base one, so it satisfies a task that needs only the base.
    done = [stamp] if extras else [stamp, VENV / ".installed-dev"]
    if any(s.is_file() and s.read_text() == wanted for s in done):
        return
    if not (BIN / "python").exists():
        print("Creating .venv ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    target = f".[{extras}]" if extras else "."
    print(f"Installing mcp-reconciler{f'[{extras}]' if extras else ''} into .venv ...", flush=True)
    pip = [str(BIN / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    run([*pip, "install", "--upgrade", "pip"])
    run([*pip, "install", "-e", target])
    stamp.write_text(wanted)


def run(command: list[str]) -> None:
    print("$ " + " ".join(command), flush=True)
    result = subprocess.run(command, cwd=ROOT, check=False)
    if result.returncode != 0:
        sys.exit(result.returncode)


def demo() -> None:
    """Set up, then run the whole workflow on the embedded Descope emulator."""
    ensure_environment("")
    run([str(BIN / "mcp-reconciler"), "demo", "manifests"])


# The suite runs on every core (pytest-xdist), each worker taking the next test as it finishes one, so
# a long test does not hold up a queue. Arguments given after ``test`` come later and win: ``-n 0``
# runs it in one process.
PARALLEL = ["-n", "auto", "--dist", "worksteal"]


def test() -> None:
    """Set up with the development tools, then lint, type-check and run the whole test suite."""
    ensure_environment("dev")
    run([str(BIN / "ruff"), "check", "."])
    run([str(BIN / "ruff"), "format", "--check", "."])
    run([str(BIN / "mypy"), "--strict", "reconciler", "tests", "bench", "dev.py"])
    run([str(BIN / "lint-imports")])
    run([str(BIN / "python"), "-m", "pytest", *PARALLEL, *sys.argv[2:]])


TASKS = {"demo": demo, "test": test}

if __name__ == "__main__":
    task = sys.argv[1] if len(sys.argv) > 1 else ""
    if task not in TASKS:
        print(f"usage: python3 dev.py {{{'|'.join(TASKS)}}} [pytest arguments for test]", file=sys.stderr)
        sys.exit(1)
    TASKS[task]()
