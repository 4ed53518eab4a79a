"""The Vault sink: client secrets in HashiCorp Vault or OpenBao, KV version 2, through ``hvac``.

``remove`` (Project ``pruneSecrets``) deletes a key's metadata and all of its versions.

Writes use check-and-set (``cas`` = the version read just before), so that two writers never silently
overwrite each other and mounts with ``cas_required`` work; a conflict is re-read and retried. Each
thread gets its own hvac client, because the requests session underneath is not thread-safe. Errors
of a write name Vault's status only: its error text is shown for reads and checks alone.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import hvac
import requests
from hvac import exceptions as vault_errors

from reconciler.models import VaultSinkSpec
from reconciler.secret import Secret
from reconciler.sinks.base import (
    Removal,
    SecretRecord,
    SinkError,
    Verification,
    leaves_prefix,
    not_removed,
    other_client,
    parse_settings,
    same_secret,
    secret_fields,
    vault_path,
)

log = logging.getLogger("reconciler.sinks.vault")

CAS_ATTEMPTS = 8
CAS_JITTER_S = 0.02  # writers that collided spread out before reading again
TIMEOUT_S = 10
PROBE = "mcp-reconciler-probe"
T = TypeVar("T")

_STATUS = {
    vault_errors.InvalidRequest: "400 invalid request",
    vault_errors.Unauthorized: "401 unauthorized",
    vault_errors.Forbidden: "403 permission denied",
    vault_errors.InvalidPath: "404 not found",
    vault_errors.RateLimitExceeded: "429 rate limit exceeded",
    vault_errors.InternalServerError: "500 internal server error",
    vault_errors.VaultNotInitialized: "501 not initialized",
    vault_errors.VaultDown: "503 sealed or down",
    vault_errors.BadGateway: "502 bad gateway",
}


class VaultSink:
    """KV v2 secrets at ``{mount}/data/{pathPrefix}{key}``: client_id, client_secret, server, client."""

    def __init__(
        self,
        name: str,
        *,
        url: str,
        token: str | None,
        token_env: str = "VAULT_TOKEN",  # noqa: S107 - a variable's name
        mount: str = "secret",
        path_prefix: str = "",
        namespace: str | None = None,
    ) -> None:
        self.name = name
        self.url = url
        self.mount = mount.strip("/")
        self.path_prefix = path_prefix.lstrip("/")
        self.namespace = namespace
        self._token = token
        self._token_env = token_env
        self._local = threading.local()
        self._clients: list[hvac.Client] = []
        self._clients_lock = threading.Lock()

    @classmethod
    def from_settings(cls, name: str, settings: Mapping[str, Any], environ: Mapping[str, str]) -> VaultSink:
        spec = parse_settings(VaultSinkSpec, name, settings)
        return cls(
            name,
            url=spec.url,
            token=environ.get(spec.tokenEnv),  # a missing token is reported by check() and deliver()
            token_env=spec.tokenEnv,
            mount=spec.mount,
            path_prefix=spec.pathPrefix,
            namespace=spec.namespace,
        )

    # ---- the protocol --------------------------------------------------------------------------

    def check(self) -> None:
        try:
            self._client().adapter.get("/v1/auth/token/lookup-self")
        except vault_errors.VaultError as exc:
            raise self._error(
                f"Vault at {self.url} refused the token in {self._token_env} ({_status(exc)}): "
                "set a valid, unexpired token"
            ) from None
        except requests.RequestException as exc:
            raise self._unreachable(exc) from None
        self._check_mount()
        self._check_capabilities()

    def deliver(self, record: SecretRecord, secret: Secret) -> None:
        path = self._path(record)
        data = secret_fields(record, secret)
        for attempt in range(1, CAS_ATTEMPTS + 1):
            version = self._version(path)
            if self._write(path, data, version):
                log.debug("sink %r: wrote %s/%s (after version %d)", self.name, self.mount, path, version)
                return
            log.debug("sink %r: %s changed meanwhile (attempt %d), reading again", self.name, path, attempt)
            time.sleep(random.uniform(0, CAS_JITTER_S * attempt))  # noqa: S311 - jitter, not a secret
        raise self._error(
            f"{self.mount}/{path} kept changing during {CAS_ATTEMPTS} check-and-set writes: "
            "another writer is updating it; try again"
        )

    def verify(self, record: SecretRecord, secret: Secret) -> Verification:
        stored = self._latest(self._path(record))
        if stored is None:
            return Verification.MISSING
        return same_secret(stored.get("client_secret"), secret)

    def remove(self, record: SecretRecord) -> Removal:
        """Delete the key's metadata and every version (older versions hold older secrets of the same
        client), unless its latest version names another client id. Needs ``delete`` on
        ``{mount}/metadata/{pathPrefix}*``."""
        path = self._path(record)
        stored = self._latest(path)
        if stored is None and self._version(path) == 0:
            return Removal.ABSENT
        # None with versions left: only deleted or destroyed ones, whose metadata goes too.
        foreign = other_client((stored or {}).get("client_id"), record)
        if foreign is not None:
            raise self._error(not_removed(record, where=f"{self.mount}/{path}", stored=foreign))
        self._call(
            f"delete {self.mount}/{path}",
            lambda c: c.secrets.kv.v2.delete_metadata_and_all_versions(path=path, mount_point=self.mount),
        )
        log.debug("sink %r: deleted %s/%s", self.name, self.mount, path)
        return Removal.REMOVED

    def close(self) -> None:
        with self._clients_lock:
            clients, self._clients = self._clients, []
        for client in clients:
            client.adapter.close()

    # ---- steps ---------------------------------------------------------------------------------

    def _path(self, record: SecretRecord) -> str:
        """Where ``record`` goes below the mount; never outside pathPrefix (validate refuses such keys
        too: this is the second line of defence, for a key that reached the sink some other way)."""
        reason = leaves_prefix(self.path_prefix, key=record.key)
        if reason is not None:
            raise self._error(
                f"refusing the key {record.key!r} of {record.server}/{record.client}: {reason}, so it "
                f"would be written outside pathPrefix {self.path_prefix!r} of the mount {self.mount}/"
            )
        return vault_path(self.path_prefix, key=record.key)

    def _latest(self, path: str) -> dict[str, Any] | None:
        """The data of the latest version of ``path``; None when there is none (or it is deleted)."""
        try:
            response = self._call(
                f"read {self.mount}/{path}",
                lambda c: c.secrets.kv.v2.read_secret_version(
                    path=path, mount_point=self.mount, raise_on_deleted_version=True
                ),
                absent=vault_errors.InvalidPath,
            )
        except _Absent:
            return None
        stored = ((response or {}).get("data") or {}).get("data") or {}
        return stored if isinstance(stored, dict) else {}

    def _version(self, path: str) -> int:
        """The current version of ``path``, 0 when it does not exist yet (what ``cas`` expects)."""
        try:
            response = self._call(
                f"read the metadata of {self.mount}/{path}",
                lambda c: c.secrets.kv.v2.read_secret_metadata(path=path, mount_point=self.mount),
                absent=vault_errors.InvalidPath,
            )
        except _Absent:
            return 0
        return int(response["data"]["current_version"])

    def _write(self, path: str, data: dict[str, str], version: int) -> bool:
        """Write with ``cas=version``; False when another writer got there first."""
        try:
            self._client().secrets.kv.v2.create_or_update_secret(
                path=path, secret=data, cas=version, mount_point=self.mount
            )
        except vault_errors.InvalidRequest as exc:
            if "check-and-set" in str(exc):
                return False
            raise self._error(f"Vault refused to write {self.mount}/{path} ({_status(exc)})") from None
        except vault_errors.VaultError as exc:
            raise self._error(f"cannot write {self.mount}/{path}: {_status(exc)}{_hint(exc)}") from None
        except requests.RequestException as exc:
            raise self._unreachable(exc) from None
        return True

    def _check_mount(self) -> None:
        response = self._call(
            f"inspect the mount {self.mount}/",
            lambda c: c.adapter.get(f"/v1/sys/internal/ui/mounts/{self.mount}"),
        )
        info = (response or {}).get("data") or {}
        if info.get("type") not in ("kv", "generic"):
            raise self._error(f"the mount {self.mount}/ is a {info.get('type')!r} engine, not KV: fix mount")
        if str((info.get("options") or {}).get("version")) != "2":
            raise self._error(
                f"the mount {self.mount}/ is KV version 1; this sink needs version 2: "
                f"run `vault kv enable-versioning {self.mount}` (or `bao kv enable-versioning`)"
            )

    def _check_capabilities(self) -> None:
        data_path = f"{self.mount}/data/{self.path_prefix}{PROBE}"
        metadata_path = f"{self.mount}/metadata/{self.path_prefix}{PROBE}"
        response = self._call(
            "ask the token's capabilities",
            lambda c: c.adapter.post("/v1/sys/capabilities-self", json={"paths": [data_path, metadata_path]}),
        )
        granted = (response or {}).get("data") or response or {}
        missing = _missing(granted.get(data_path), {"create", "update", "read"})
        missing += _missing(granted.get(metadata_path), {"read"})
        if missing:
            where = f"{self.mount}/data/{self.path_prefix}*"
            raise self._error(
                f"the token in {self._token_env} lacks {', '.join(missing)} under {self.mount}/"
                f"{self.path_prefix}: grant create, update and read on {where} "
                f"and read on {self.mount}/metadata/{self.path_prefix}*"
            )

    # ---- plumbing ------------------------------------------------------------------------------

    def _client(self) -> hvac.Client:
        client: hvac.Client | None = getattr(self._local, "client", None)
        if client is None:
            if not self._token:
                raise self._error(
                    f"the environment variable {self._token_env} is not set: put a Vault token in it"
                )
            client = hvac.Client(url=self.url, token=self._token, namespace=self.namespace, timeout=TIMEOUT_S)
            self._local.client = client
            with self._clients_lock:
                self._clients.append(client)
        return client

    def _call(
        self,
        action: str,
        call: Callable[[hvac.Client], T],
        *,
        absent: type[Exception] | None = None,
    ) -> T:
        """Run ``call``, mapping hvac and requests errors to SinkError (``absent`` to _Absent)."""
        try:
            return call(self._client())
        except vault_errors.VaultError as exc:
            if absent is not None and isinstance(exc, absent):
                raise _Absent from None
            raise self._error(f"cannot {action}: {_status(exc)}: {_vault_text(exc)}{_hint(exc)}") from None
        except requests.RequestException as exc:
            raise self._unreachable(exc) from None

    def _unreachable(self, exc: requests.RequestException) -> SinkError:
        return self._error(
            f"cannot reach Vault at {self.url} ({type(exc).__name__}): check url and that Vault is up"
        )

    def _error(self, message: str) -> SinkError:
        return SinkError(f"sink {self.name!r} (vault): {message}")


class _Absent(Exception):
    """The path does not exist (or its latest version is deleted)."""


def _missing(capabilities: object, needed: set[str]) -> list[str]:
    have = set(capabilities) if isinstance(capabilities, list) else set()
    if "root" in have:
        return []
    return sorted(needed - have)


def _status(exc: vault_errors.VaultError) -> str:
    return next((text for kind, text in _STATUS.items() if isinstance(exc, kind)), type(exc).__name__)


def _vault_text(exc: vault_errors.VaultError) -> str:
    """Vault's own error text, cut short: only for requests that carried no secret."""
    errors = [exc.errors] if isinstance(exc.errors, str) else list(exc.errors or [])
    return "; ".join(str(error) for error in errors if error)[:300] or "no details"


def _hint(exc: vault_errors.VaultError) -> str:
    if isinstance(exc, vault_errors.Forbidden):
        return " (is the token valid, and do its policies allow this path?)"
    if isinstance(exc, vault_errors.VaultDown):
        return " (unseal Vault or wait for it)"
    return ""
