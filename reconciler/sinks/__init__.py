"""The sink registry (type -> factory) and ``build_sinks``, which makes every configured sink.

The file and command sinks need nothing beyond the standard library. The Vault, AWS and GitHub sinks
need optional libraries (the ``vault``, ``aws`` and ``github`` extras), so their modules are imported
only when a sink of that type is built: a project without such a sink never needs them.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError

from reconciler.models import SinkSpec
from reconciler.sinks.base import SecretSink, SinkError, SinkFactory, invalid_settings
from reconciler.sinks.command import CommandSink
from reconciler.sinks.file import FileSink


@dataclass(frozen=True)
class OptionalSink:
    """A factory whose module needs an optional library; imported when the first such sink is built."""

    type: str
    module: str
    attribute: str
    package: str  # the distribution to name in the message
    extra: str  # mcp-reconciler's extra that installs it
    imports: tuple[str, ...]  # top-level modules of the library: a missing one means "not installed"

    def __call__(self, name: str, settings: Mapping[str, Any], environ: Mapping[str, str]) -> SecretSink:
        try:
            module = importlib.import_module(self.module)
        except ModuleNotFoundError as exc:
            if (exc.name or "").partition(".")[0] not in self.imports:
                raise
            raise SinkError(
                f"sink {name!r} ({self.type}) needs the {self.package} package: "
                f"pip install 'mcp-reconciler[{self.extra}]'"
            ) from None
        factory: SinkFactory = getattr(module, self.attribute).from_settings
        return factory(name, settings, environ)


SINKS: dict[str, SinkFactory] = {
    "file": FileSink.from_settings,
    "command": CommandSink.from_settings,
    "vault": OptionalSink("vault", "reconciler.sinks.vault", "VaultSink", "hvac", "vault", ("hvac",)),
    "aws-secrets-manager": OptionalSink(
        "aws-secrets-manager", "reconciler.sinks.aws", "AwsSink", "boto3", "aws", ("boto3", "botocore")
    ),
    "github": OptionalSink("github", "reconciler.sinks.github", "GithubSink", "pynacl", "github", ("nacl",)),
}

_SPEC: TypeAdapter[SinkSpec] = TypeAdapter(SinkSpec)


def build_sinks(
    settings: Mapping[str, Mapping[str, Any]], environ: Mapping[str, str]
) -> dict[str, SecretSink]:
    """Every sink of ``settings`` (sink name -> its manifest settings). Nothing is contacted yet."""
    built: dict[str, SecretSink] = {}
    try:
        for name, raw in settings.items():
            built[name] = build_sink(name, raw, environ)
    except BaseException:
        close_sinks(built)
        raise
    return built


def build_sink(name: str, raw: Mapping[str, Any], environ: Mapping[str, str]) -> SecretSink:
    """One sink, its settings validated and completed with their defaults."""
    kind = raw.get("type") if isinstance(raw, Mapping) else None
    if not isinstance(kind, str) or kind not in SINKS:
        known = ", ".join(SINKS)
        raise SinkError(f"sink {name!r}: unknown type {kind!r}: use one of {known}")
    try:
        spec = _SPEC.validate_python(dict(raw))
    except ValidationError as exc:
        raise invalid_settings(name, exc, tagged=True) from None
    return SINKS[kind](name, spec.model_dump(), environ)


def close_sinks(sinks: Mapping[str, SecretSink]) -> None:
    """Close every sink, even when one fails to close."""
    for sink in sinks.values():
        with contextlib.suppress(Exception):
            sink.close()


__all__ = ["SINKS", "OptionalSink", "SecretSink", "SinkError", "build_sink", "build_sinks", "close_sinks"]
