"""The import contracts cover every module by default (issue 13): they are checked, not just present.

pyproject.toml's ``[tool.importlinter]`` places every module of the package in a layer (``exhaustive``,
so a new module fails until it is placed) and names the only modules that may import click, httpx,
ruamel, the web server and the secret stores' SDKs, so a module that is not named may not. These
tests run ``lint-imports`` on a copy of the package with one import injected and check that the
contracts break where they should, naming the module; the unchanged copy keeps them all.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "reconciler"
# lint-imports is import-linter's console script; calling its function works wherever the script is.
LINT_IMPORTS = [
    sys.executable,
    "-c",
    "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())",
]


def copy_project(destination: Path) -> Path:
    """The package and pyproject.toml (which holds the contracts), copied under ``destination``."""
    shutil.copytree(ROOT / PACKAGE, destination / PACKAGE, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(ROOT / "pyproject.toml", destination / "pyproject.toml")
    return destination


def lint_imports(project: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` on the copy: its package first on the path, no cache, lines wide enough not to wrap."""
    env = {**os.environ, "PYTHONPATH": str(project), "COLUMNS": "250"}
    return subprocess.run(
        [*LINT_IMPORTS, "--no-cache"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


# How lint-imports reports an import that breaks a contract, "- importer -> imported (l.3)", and a
# module that is in no layer of an exhaustive contract, "- module".
IMPORT_LINE = re.compile(r"^-\s+(\S+) -> (\S+) \(l\.")
MODULE_LINE = re.compile(r"^-\s+([\w.]+)$")


def broken_imports(result: subprocess.CompletedProcess[str]) -> set[tuple[str, str]]:
    """The (importer, imported) pairs the report names."""
    lines = (line.strip() for line in (result.stdout + result.stderr).splitlines())
    return {(m[1], m[2]) for m in map(IMPORT_LINE.match, lines) if m}


def unplaced_modules(result: subprocess.CompletedProcess[str]) -> set[str]:
    lines = (line.strip() for line in (result.stdout + result.stderr).splitlines())
    return {m[1] for m in map(MODULE_LINE.match, lines) if m}


def module_name(project: Path, path: Path) -> str:
    parts = path.relative_to(project).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_layers(project: Path, container: str = PACKAGE) -> list[str]:
    """The layers of the contract over ``container`` (the whole package by default), highest first, as
    written."""
    config: dict[str, Any] = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    contracts: list[dict[str, Any]] = config["tool"]["importlinter"]["contracts"]
    [layers] = [
        c["layers"] for c in contracts if c["type"] == "layers" and c.get("containers") == [container]
    ]
    return [str(layer) for layer in layers]


def layer_names(layer: str) -> list[str]:
    """The module tails a layer names (``a | b``, ``a : b``), without the parentheses of optional ones."""
    return [raw.strip().strip("()") for raw in layer.replace("|", ":").split(":")]


def pure_modules(project: Path) -> dict[str, Path]:
    """Every module of the pure core (the lowest layer) that exists in ``project``, by name, with its file."""
    lowest = package_layers(project)[-1]
    found: dict[str, Path] = {}
    for raw in lowest.replace("|", ":").split(":"):
        tail = raw.strip()
        optional = tail.startswith("(") and tail.endswith(")")
        tail = tail.strip("()")
        base = project / PACKAGE / Path(*tail.split("."))
        if base.is_dir():
            files = sorted(base.rglob("*.py"))
        elif base.with_suffix(".py").is_file():
            files = [base.with_suffix(".py")]
        else:
            assert optional, f"the pure core names {PACKAGE}.{tail}, which does not exist"
            files = []
        found.update((module_name(project, file), file) for file in files)
    return found


def inject(path: Path, line: str) -> None:
    """Append an import at the end, where it cannot land before a ``from __future__`` import."""
    text = path.read_text(encoding="utf-8")
    path.write_text(f"{text.rstrip()}\n{line}  # injected by tests/test_import_layers.py\n", encoding="utf-8")


# The modules of reconciler/descope/: the pure ones (in the pure core) and the client's (in the edges).
DESCOPE_PURE = ("descope.endpoints", "descope.wire", "descope.resource_wire", "descope.assumptions")
DESCOPE_IMPURE = ("descope.transport", "descope.mcp_servers", "descope.resources", "descope.client")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return copy_project(tmp_path)


def test_the_pure_core_is_read_from_the_layers(project: Path) -> None:
    """A sanity check of the helper the other tests use: the pure core is found, and only it."""
    pure = pure_modules(project)
    for name in ("stale", "plan", "planner", "models", "render.text", "render.markdown", *DESCOPE_PURE):
        assert f"{PACKAGE}.{name}" in pure
    for name in ("cli", "workflow", "journal", "files", "export", "yamlsource", "emulator", *DESCOPE_IMPURE):
        assert not any(m == f"{PACKAGE}.{name}" or m.startswith(f"{PACKAGE}.{name}.") for m in pure)
    assert f"{PACKAGE}.descope" not in pure  # the package's __init__ is under no layer of its own


def test_the_descope_package_is_placed_alike_in_both_contracts(project: Path) -> None:
    """Every module of reconciler/descope/ is in a layer of the package's own contract and of the one
    over the whole package, and the pure ones (the lowest layer of the first) are the pure core's."""
    inner = package_layers(project, f"{PACKAGE}.descope")
    inner_pure = {f"descope.{name}" for name in layer_names(inner[-1])}
    inner_rest = {f"descope.{name}" for layer in inner[:-1] for name in layer_names(layer)}
    outer = package_layers(project)
    outer_pure = {name for name in layer_names(outer[-1]) if name.startswith("descope.")}
    outer_rest = {name for layer in outer[:-1] for name in layer_names(layer) if name.startswith("descope.")}
    files = {f"descope.{path.stem}" for path in (project / PACKAGE / "descope").glob("*.py")}
    assert inner_pure == outer_pure == set(DESCOPE_PURE)
    assert inner_rest == outer_rest == set(DESCOPE_IMPURE)
    assert files - {"descope.__init__"} == inner_pure | inner_rest


def test_the_pure_core_pulls_no_http_in_at_run_time() -> None:
    """Importing a pure module of reconciler/descope/ runs the package's ``__init__`` first, which
    therefore imports nothing: the whole pure core, imported at once, loads neither httpx nor any
    module of the API client."""
    init = ast.parse((ROOT / PACKAGE / "descope" / "__init__.py").read_text(encoding="utf-8"))
    assert not [node for node in ast.walk(init) if isinstance(node, ast.Import | ast.ImportFrom)]
    probe = (
        f"import sys; import {', '.join(sorted(pure_modules(ROOT)))}; "
        f"print(sorted(m for m in sys.modules if m == 'httpx' or m.startswith('{PACKAGE}.descope.')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == repr(sorted(f"{PACKAGE}.{name}" for name in DESCOPE_PURE))


def test_the_unchanged_package_keeps_every_contract(project: Path) -> None:
    result = lint_imports(project)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_httpx_in_stale_breaks_a_contract(project: Path) -> None:
    """The issue's own example: ``import httpx`` added to the pure ``stale.py``."""
    inject(project / PACKAGE / "stale.py", "import httpx")
    result = lint_imports(project)
    assert result.returncode == 1, result.stdout + result.stderr
    assert (f"{PACKAGE}.stale", "httpx") in broken_imports(result)


def test_httpx_in_the_descope_wire_breaks_a_contract(project: Path) -> None:
    """A pure module of the Descope package is as pure as the rest of the core: ``import httpx`` added
    to ``descope/wire.py`` (beside the transport that may import it) fails lint-imports."""
    inject(project / PACKAGE / "descope" / "wire.py", "import httpx")
    result = lint_imports(project)
    assert result.returncode == 1, result.stdout + result.stderr
    assert (f"{PACKAGE}.descope.wire", "httpx") in broken_imports(result)


def test_the_descope_package_keeps_its_order(project: Path) -> None:
    """Within reconciler/descope/: the transport may not import a surface's calls, one surface may not
    import the other, a pure module may not import the transport, and the client reaches no other edge."""
    descope = project / PACKAGE / "descope"
    inject(descope / "transport.py", f"import {PACKAGE}.descope.mcp_servers")
    inject(descope / "resources.py", f"import {PACKAGE}.descope.mcp_servers")
    inject(descope / "endpoints.py", f"import {PACKAGE}.descope.transport")
    inject(descope / "mcp_servers.py", f"import {PACKAGE}.journal")
    result = lint_imports(project)
    assert result.returncode == 1, result.stdout + result.stderr
    named = broken_imports(result)
    assert {
        (f"{PACKAGE}.descope.transport", f"{PACKAGE}.descope.mcp_servers"),
        (f"{PACKAGE}.descope.resources", f"{PACKAGE}.descope.mcp_servers"),
        (f"{PACKAGE}.descope.endpoints", f"{PACKAGE}.descope.transport"),
        (f"{PACKAGE}.descope.mcp_servers", f"{PACKAGE}.journal"),
    } <= named


@pytest.mark.parametrize("library", ["httpx", "click", "ruamel.yaml"])
def test_an_io_library_in_any_pure_module_breaks_a_contract(project: Path, library: str) -> None:
    """One run with the import added to every module of the pure core at once: each is named."""
    pure = pure_modules(project)
    for path in pure.values():
        inject(path, f"import {library}")
    result = lint_imports(project)
    assert result.returncode == 1, result.stdout + result.stderr
    named = broken_imports(result)
    missed = [m for m in sorted(pure) if (m, library.partition(".")[0]) not in named]
    assert not missed, f"import {library} passed lint-imports in {missed}"


def test_a_pure_module_may_not_import_a_layer_above_it(project: Path) -> None:
    """The pure core reaches no I/O through the package either: here, the API client (and its httpx)."""
    pure = pure_modules(project)
    for path in pure.values():
        inject(path, f"import {PACKAGE}.descope.client")
    result = lint_imports(project)
    assert result.returncode == 1, result.stdout + result.stderr
    named = broken_imports(result)
    missed = [m for m in sorted(pure) if (m, f"{PACKAGE}.descope.client") not in named]
    assert not missed, f"importing {PACKAGE}.descope.client passed lint-imports in {missed}"


def test_a_new_module_is_covered_without_editing_the_contracts(project: Path) -> None:
    """New modules, nowhere in pyproject.toml: one at the top (in no layer, and speaking HTTP), one in
    the pure render package (speaking HTTP), one new sink (in no layer of the sinks' contract), one in
    the Descope package (in no layer of its contract, and speaking HTTP beside the transport)."""
    (project / PACKAGE / "newthing.py").write_text("import httpx\n", encoding="utf-8")
    (project / PACKAGE / "render" / "newthing.py").write_text("import httpx\n", encoding="utf-8")
    (project / PACKAGE / "sinks" / "newsink.py").write_text(
        f"from {PACKAGE}.sinks.base import SinkError\n", encoding="utf-8"
    )
    (project / PACKAGE / "descope" / "newsurface.py").write_text("import httpx\n", encoding="utf-8")
    result = lint_imports(project)
    assert result.returncode == 1, result.stdout + result.stderr
    assert {
        f"{PACKAGE}.newthing",
        f"{PACKAGE}.sinks.newsink",
        f"{PACKAGE}.descope.newsurface",
    } <= unplaced_modules(result)
    named = broken_imports(result)
    assert (f"{PACKAGE}.newthing", "httpx") in named
    assert (f"{PACKAGE}.render.newthing", "httpx") in named
    assert (f"{PACKAGE}.descope.newsurface", "httpx") in named
