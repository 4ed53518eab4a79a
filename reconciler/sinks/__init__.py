"""The sink registry (type -> factory) and ``build_sinks``, which makes every configured sink.

The file and command sinks need nothing beyond the standard library. The Vault, AWS and GitHub sinks
need optional libraries (the ``vault``, ``aws`` and ``github`` extras), so their modules are imported
only when a sink of that type is built: a project without such a sink never needs them. When the
library is missing, the sink is still built, as an :class:`UnavailableSink` that fails ``check``,
``deliver`` and ``verify`` with a SinkError naming the package: so ``plan`` warns about it, ``apply``
skips the clients whose secrets would go there (and applies everything else), and ``secrets check``
reports those clients, all with the same message.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError

from reconciler.models import SinkSpec
from reconciler.secret import Secret
from reconciler.sinks.base import (
    SecretRecord,
    SecretSink,
    SinkError,
    SinkFactory,
    Verification,
    invalid_settings,
)
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
        except ImportError as exc:  # ModuleNotFoundError, or a library that is installed but broken
            if (exc.name or "").partition(".")[0] not in self.imports:
                raise
            return UnavailableSink(
                name,
                reason=f"sink {name!r} ({self.type}) needs the {self.package} package: "
                f"pip install 'mcp-reconciler[{self.extra}]'",
            )
        factory: SinkFactory = getattr(module, self.attribute).from_settings
        return factory(name, settings, environ)


class UnavailableSink:
    """A sink that cannot work in this installation (its library is missing): every use but ``close``
    raises a SinkError with ``reason``, which names the package to install."""

    def __init__(self, name: str, *, reason: str) -> None:
        self.name = name
        self.reason = reason

    def check(self) -> None:
        raise SinkError(self.reason)

    def deliver(self, record: SecretRecord, secret: Secret) -> None:  # noqa: ARG002 - the protocol
        raise SinkError(self.reason)

    def verify(self, record: SecretRecord, secret: Secret) -> Verification:  # noqa: ARG002 - the protocol
        raise SinkError(self.reason)

    def close(self) -> None:
        """Nothing was opened."""


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


__all__ = [
    "SINKS",
    "OptionalSink",
    "SecretSink",
    "SinkError",
    "UnavailableSink",
    "build_sink",
    "build_sinks",
    "close_sinks",
]
