"""The SecretSink protocol: where a client secret goes once Descope issues it, and how that is checked.

A sink is synchronous (the applier runs it in a worker thread). ``deliver`` must be idempotent: the
applier may deliver the same secret again after a failure or a crash. A sink never writes a secret
anywhere but its destination: not in exceptions, logs, argv or the environment.

The applier hands the secrets of one step over together (:func:`deliver_many`, :func:`verify_many`).
A sink that can store several in one write (the file sink: one rewrite of its file instead of one
per secret) is a :class:`BatchingSink`; any other gets them one by one, as before.
"""

from __future__ import annotations

import contextlib
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ValidationError

from reconciler.errors import SinkError  # part of the one error tree, and importable from here
from reconciler.secret import Secret


@dataclass(frozen=True)
class SecretRecord:
    """What is delivered with a secret: whose it is and where it goes in the sink."""

    server: str  # the MCP server's name
    client: str  # the client's name
    client_id: str  # the OAuth client_id
    key: str  # the destination within the sink (file entry, Vault path, AWS name, GitHub name)


class Verification(StrEnum):
    MATCH = "match"  # the sink holds exactly this secret
    MISSING = "missing"  # the sink holds nothing under this key
    DIFFERENT = "different"  # the sink holds another value under this key
    UNREADABLE = "unreadable"  # something is stored there, but the sink cannot give values back


class SecretSink(Protocol):
    """A named destination for client secrets."""

    name: str

    def check(self) -> None:
        """Raise SinkError unless the sink is reachable and this run may write to it."""

    def deliver(self, record: SecretRecord, secret: Secret) -> None:
        """Store ``secret`` under ``record.key``, replacing what was there. Idempotent."""

    def verify(self, record: SecretRecord, secret: Secret) -> Verification:
        """Whether the sink now holds ``secret`` under ``record.key``."""

    def close(self) -> None:
        """Release connections or files."""


Delivery = tuple[SecretRecord, Secret]


class Removal(StrEnum):
    REMOVED = "removed"  # the sink held an entry under the key, and no longer does
    ABSENT = "absent"  # the sink held nothing under the key: nothing to remove


@runtime_checkable
class RemovingSink(SecretSink, Protocol):
    """A sink that can remove a secret (for Project ``pruneSecrets``: a deleted client's secret).

    The command sink cannot (its program only ever receives a secret), so ``validate`` refuses
    ``pruneSecrets`` when it is the default sink."""

    def remove(self, record: SecretRecord) -> Removal:
        """Remove what is stored under ``record.key``. Idempotent (ABSENT once gone). An entry that
        names another client id than ``record.client_id`` (where the sink stores one) is left in place:
        SinkError (see :func:`other_client`)."""


@runtime_checkable
class BatchingSink(SecretSink, Protocol):
    """A sink that stores several secrets in one write, and reads them back in one read."""

    def batch(self) -> contextlib.AbstractContextManager[None]:
        """While the block runs, ``deliver`` (in the thread that opened it) only stages a secret; when
        the block ends, every staged secret is stored in one write, all or none, and durable once the
        block is left. A failed write raises SinkError from the block's end (nothing staged is then
        stored); a block left by an exception stores nothing."""

    def verify_many(self, deliveries: Sequence[Delivery]) -> list[Verification]:
        """``verify`` of each, from one read of the sink."""


def deliver_many(sink: SecretSink, deliveries: Sequence[Delivery]) -> list[SinkError | None]:
    """Deliver each of ``deliveries`` (in one write for a BatchingSink); for each, None once it is
    stored (durably, for a sink that can say so), else why it is not."""
    errors: list[SinkError | None] = [None] * len(deliveries)
    batch = sink.batch() if isinstance(sink, BatchingSink) else contextlib.nullcontext()
    try:
        with batch:
            for index, (record, secret) in enumerate(deliveries):
                try:
                    sink.deliver(record, secret)
                except SinkError as exc:
                    errors[index] = exc
    except SinkError as exc:  # the batch's one write failed: none of the staged secrets is stored
        errors = [error or exc for error in errors]
    return errors


def verify_many(sink: SecretSink, deliveries: Sequence[Delivery]) -> list[Verification | SinkError]:
    """``verify`` of each of ``deliveries`` (one read for a BatchingSink); a SinkError where it failed."""
    if isinstance(sink, BatchingSink):
        try:
            return list(sink.verify_many(deliveries))
        except SinkError as exc:
            return [exc] * len(deliveries)
    results: list[Verification | SinkError] = []
    for record, secret in deliveries:
        try:
            results.append(sink.verify(record, secret))
        except SinkError as exc:
            results.append(exc)
    return results


class SinkFactory(Protocol):
    def __call__(self, name: str, settings: Mapping[str, Any], environ: Mapping[str, str]) -> SecretSink: ...


# ---- helpers shared by the sinks ---------------------------------------------------------------


# What a secret key becomes in each sink. ``validate`` compares destinations with these same
# functions, so that it and the sinks can never disagree about which keys collide.


def env_name(key: str) -> str:
    """``key`` as an environment-variable name: upper case, only [A-Z0-9_], not starting with a digit."""
    name = re.sub(r"[^A-Z0-9_]", "_", key.upper())
    return f"_{name}" if not name or name[0].isdigit() else name


def secret_name(key: str) -> str:
    """A GitHub secret name for ``key``: [A-Z0-9_], not starting with a digit or ``GITHUB_``."""
    name = re.sub(r"[^A-Z0-9_]", "_", key.upper())
    return f"MCP_{name}" if not name or name[0].isdigit() or name.startswith("GITHUB_") else name


def vault_path(path_prefix: str, *, key: str) -> str:
    """The path a Vault sink writes ``key`` to, below its mount: ``pathPrefix`` + key."""
    return path_prefix.lstrip("/") + key


def leaves_prefix(prefix: str, *, key: str) -> str | None:
    """Why ``prefix + key`` (a Vault path, an AWS secret name) would not stay inside ``prefix``; None
    when it does. A ``..`` segment is resolved by the HTTP client (``team-a/../team-b/db`` is sent as
    ``team-b/db``), and a leading ``/`` makes the key an absolute path."""
    if key.startswith("/"):
        return "it starts with '/'"
    if ".." in key.split("/"):
        return "it has a '..' segment"
    if (prefix + key).split("/").count("..") > prefix.split("/").count(".."):
        return "it makes a '..' segment with the prefix"
    return None


_AWS_NAME = re.compile(r"[A-Za-z0-9/_+=.@-]+")


def aws_name_problem(name_prefix: str, *, key: str) -> str | None:
    """Why ``namePrefix + key`` is not an AWS secret name inside ``namePrefix``; None when it is.
    Anything but AWS's name characters is refused: a ``SecretId`` with ``:`` is read as an ARN, which
    can name any secret of any account."""
    reason = leaves_prefix(name_prefix, key=key)
    if reason is None and not _AWS_NAME.fullmatch(name_prefix + key):
        reason = "AWS secret names allow only letters, digits and /_+=.@-"
    return reason


def secret_fields(record: SecretRecord, secret: Secret) -> dict[str, str]:
    """The document a key-value store (Vault, AWS) keeps for one client."""
    return {
        "client_id": record.client_id,
        "client_secret": secret.reveal(),
        "server": record.server,
        "client": record.client,
    }


def same_secret(stored: object, secret: Secret) -> Verification:
    """MATCH or DIFFERENT, compared in constant time; anything but a string is DIFFERENT."""
    if not isinstance(stored, str):
        return Verification.DIFFERENT
    # surrogatepass: a lone surrogate (valid in JSON text) must compare, not crash the check.
    equal = hmac.compare_digest(
        stored.encode("utf-8", "surrogatepass"), secret.reveal().encode("utf-8", "surrogatepass")
    )
    return Verification.MATCH if equal else Verification.DIFFERENT


def other_client(stored: object, record: SecretRecord) -> str | None:
    """The client id an entry stored under ``record.key`` names, when that is another client's than
    ``record``'s: such an entry is not removed. None when it is the same client, or either is unknown."""
    if isinstance(stored, str) and stored and record.client_id and stored != record.client_id:
        return stored
    return None


def not_removed(record: SecretRecord, *, where: str, stored: str) -> str:
    """Why an entry naming another client id was left in place (``where``: the sink's name for it)."""
    return (
        f"{where} holds the secret of client id {stored!r}, not of the deleted client "
        f"{record.server}/{record.client} ({record.client_id!r}): left in place"
    )


SpecT = TypeVar("SpecT", bound=BaseModel)


def parse_settings(model: type[SpecT], sink: str, settings: Mapping[str, Any]) -> SpecT:
    """The sink's settings as ``model`` (defaults applied), or a SinkError naming the sink."""
    try:
        return model.model_validate(dict(settings))
    except ValidationError as exc:
        raise invalid_settings(sink, exc) from None


def invalid_settings(sink: str, exc: ValidationError, *, tagged: bool = False) -> SinkError:
    """Pydantic's errors as one message (``msg`` never repeats the input, so nothing leaks).

    ``tagged``: the errors of a discriminated union, whose locations start with the type's tag.
    """
    problems = "; ".join(
        f"{'.'.join(str(part) for part in error['loc'][1 if tagged else 0 :]) or '(top)'}: {error['msg']}"
        for error in exc.errors()
    )
    return SinkError(f"sink {sink!r}: invalid settings: {problems}")


__all__ = [
    "BatchingSink",
    "Delivery",
    "Removal",
    "RemovingSink",
    "SecretRecord",
    "SecretSink",
    "SinkError",
    "SinkFactory",
    "Verification",
    "aws_name_problem",
    "deliver_many",
    "env_name",
    "invalid_settings",
    "leaves_prefix",
    "not_removed",
    "other_client",
    "parse_settings",
    "same_secret",
    "secret_fields",
    "secret_name",
    "vault_path",
    "verify_many",
]
