"""The GitHub sink: client secrets as GitHub Actions secrets of a repository or of one environment.

The value is encrypted with the repository's (or environment's) public key in a libsodium sealed box
before it leaves the process; GitHub never returns it, so ``verify`` can only say whether a secret of
that name exists. The public key is cached and fetched again once when GitHub rejects its id (the key
was rotated). GETs and PUTs are idempotent, so 429, 5xx and connection errors are retried.
"""

from __future__ import annotations

import base64
import binascii
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx
from nacl.exceptions import CryptoError
from nacl.public import PublicKey, SealedBox

from reconciler.models import GithubSinkSpec
from reconciler.secret import Secret
from reconciler.sinks.base import (
    Removal,
    SecretRecord,
    SinkError,
    Verification,
    parse_settings,
    secret_name,
)

log = logging.getLogger("reconciler.sinks.github")

DEFAULT_API = "https://api.github.com"
ATTEMPTS = 3
RETRY_DELAY_S = 1.0
TIMEOUT_S = 15.0

__all__ = ["ATTEMPTS", "DEFAULT_API", "RETRY_DELAY_S", "TIMEOUT_S", "GithubSink", "secret_name"]


class GithubSink:
    """Actions secrets named after the secret key (see ``secret_name``)."""

    def __init__(
        self,
        name: str,
        *,
        repository: str,
        token: str | None,
        token_env: str = "GITHUB_TOKEN",  # noqa: S107 - a variable's name
        environment: str | None = None,
        api_url: str = DEFAULT_API,
        transport: httpx.BaseTransport | None = None,
        retry_delay: float = RETRY_DELAY_S,
    ) -> None:
        self.name = name
        self.repository = repository
        self.environment = environment
        self.api_url = api_url.rstrip("/")
        self._token = token
        self._token_env = token_env
        self._retry_delay = retry_delay
        headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(
            base_url=self.api_url, headers=headers, timeout=TIMEOUT_S, transport=transport
        )
        owner, _, repo = repository.partition("/")
        base = f"/repos/{quote(owner, safe='')}/{quote(repo, safe='')}"
        self._base = (
            f"{base}/environments/{quote(environment, safe='')}/secrets"
            if environment
            else f"{base}/actions/secrets"
        )
        self._key: tuple[str, PublicKey] | None = None
        self._key_lock = threading.Lock()

    @classmethod
    def from_settings(cls, name: str, settings: Mapping[str, Any], environ: Mapping[str, str]) -> GithubSink:
        spec = parse_settings(GithubSinkSpec, name, settings)
        return cls(
            name,
            repository=spec.repository,
            token=environ.get(spec.tokenEnv),  # a missing token is reported by check() and deliver()
            token_env=spec.tokenEnv,
            environment=spec.environment,
            api_url=spec.apiUrl,
        )

    # ---- the protocol --------------------------------------------------------------------------

    def check(self) -> None:
        self._public_key(refresh=True)

    def deliver(self, record: SecretRecord, secret: Secret) -> None:
        name = secret_name(record.key)
        response = self._put(name, secret, refresh=False)
        if response.status_code == 422:  # the cached key id is stale: GitHub rotated the key
            response = self._put(name, secret, refresh=True)
        if response.status_code not in (201, 204):
            raise self._refused(response, f"write the secret {name}")
        log.debug("sink %r: stored the secret of %s as %s", self.name, record.key, name)

    def verify(self, record: SecretRecord, secret: Secret) -> Verification:  # noqa: ARG002 - protocol
        name = secret_name(record.key)
        response = self._request("GET", path=f"{self._base}/{name}", action=f"read the secret {name}")
        if response.status_code == 200:
            return Verification.UNREADABLE  # GitHub never gives a value back
        if response.status_code == 404:
            return Verification.MISSING
        raise self._refused(response, f"read the secret {name}")

    def remove(self, record: SecretRecord) -> Removal:
        """Delete the Actions secret (GitHub's DELETE is idempotent: 404 once it is gone). GitHub
        never gives a value back, so whose secret it holds cannot be checked."""
        name = secret_name(record.key)
        action = f"delete the secret {name}"
        response = self._request("DELETE", path=f"{self._base}/{name}", action=action)
        if response.status_code == 404:
            return Removal.ABSENT
        if response.status_code != 204:
            raise self._refused(response, action)
        log.debug("sink %r: deleted the secret %s", self.name, name)
        return Removal.REMOVED

    def close(self) -> None:
        self._http.close()

    # ---- steps ---------------------------------------------------------------------------------

    def _put(self, name: str, secret: Secret, *, refresh: bool) -> httpx.Response:
        key_id, key = self._public_key(refresh=refresh)
        sealed = SealedBox(key).encrypt(secret.reveal().encode("utf-8"))
        body = {"encrypted_value": base64.b64encode(sealed).decode("ascii"), "key_id": key_id}
        return self._request("PUT", path=f"{self._base}/{name}", action=f"write the secret {name}", json=body)

    def _public_key(self, *, refresh: bool) -> tuple[str, PublicKey]:
        with self._key_lock:
            if self._key is None or refresh:
                self._key = self._fetch_key()
            return self._key

    def _fetch_key(self) -> tuple[str, PublicKey]:
        response = self._request("GET", path=f"{self._base}/public-key", action="read the public key")
        if response.status_code != 200:
            raise self._refused(response, "read the public key")
        try:
            document = response.json()
            return str(document["key_id"]), PublicKey(base64.b64decode(document["key"], validate=True))
        except (ValueError, KeyError, TypeError, binascii.Error, CryptoError):
            raise self._error(f"{self.api_url} answered the public key request with no usable key") from None

    def _request(self, method: str, *, path: str, action: str, **kwargs: Any) -> httpx.Response:
        """Send with retries of 429, 5xx and connection errors; other answers are returned."""
        if not self._token:
            raise self._error(
                f"the environment variable {self._token_env} is not set: put a GitHub token in it"
            )
        attempt = 1
        while True:
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                if attempt >= ATTEMPTS:
                    raise self._error(
                        f"cannot reach GitHub at {self.api_url} to {action} ({type(exc).__name__}): "
                        "check apiUrl and the network"
                    ) from None
            else:
                if not _retryable(response.status_code) or attempt >= ATTEMPTS:
                    return response
            time.sleep(self._retry_delay * attempt)
            attempt += 1

    def _refused(self, response: httpx.Response, action: str) -> SinkError:
        status = response.status_code
        where = f"{self.repository}" + (f" (environment {self.environment})" if self.environment else "")
        if status == 401:
            return self._error(f"GitHub refused the token in {self._token_env} (401): set a valid token")
        if status == 403 and response.headers.get("x-ratelimit-remaining") == "0":
            return self._error(f"GitHub's rate limit is exhausted (403) trying to {action}: try again later")
        if status == 403:
            return self._error(
                f"the token in {self._token_env} may not {action} (403): it needs the secrets: write "
                f"permission on {where} (classic tokens: the repo scope)"
            )
        if status == 404:
            return self._error(
                f"{where} was not found, or the token in {self._token_env} cannot see it (404): "
                "check repository and environment, and the token's repository access"
            )
        return self._error(f"GitHub answered {status} trying to {action}: {_message(response)}")

    def _error(self, message: str) -> SinkError:
        return SinkError(f"sink {self.name!r} (github): {message}")


def _retryable(status: int) -> bool:
    return status == 429 or status >= 500


def _message(response: httpx.Response) -> str:
    """GitHub's ``message``, cut short (it never repeats the encrypted value)."""
    try:
        document = response.json()
    except ValueError:
        return response.text[:200]
    return str(document.get("message", ""))[:200] if isinstance(document, dict) else ""
