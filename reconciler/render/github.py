"""GitHub Actions workflow commands: annotations, escaped as the runner expects, within its limits."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from reconciler.errors import Problem

MAX_ERROR_ANNOTATIONS = 10  # GitHub shows at most 10 error annotations per step


def in_github_actions(environ: Mapping[str, str]) -> bool:
    return environ.get("GITHUB_ACTIONS") == "true"


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def error_annotations(problems: Iterable[Problem]) -> list[str]:
    """``::error`` lines for the first problems; one more line says how many were left out."""
    problems = list(problems)
    shown = problems[: MAX_ERROR_ANNOTATIONS - 1] if len(problems) > MAX_ERROR_ANNOTATIONS else problems
    lines = []
    for problem in shown:
        props = f"file={_escape_property(problem.file)}"
        if problem.line:
            props += f",line={problem.line},col={problem.column}"
        message = f"{problem.path}: {problem.message}" if problem.path else problem.message
        lines.append(f"::error {props}::{_escape_data(message)}")
    if len(shown) < len(problems):
        rest = len(problems) - len(shown)
        lines.append(f"::error::{rest} more manifest problems are listed in the log")
    return lines
