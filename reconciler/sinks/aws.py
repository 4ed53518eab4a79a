"""The AWS sink: client secrets in AWS Secrets Manager, one secret per client, through ``boto3``.

Each ``deliver`` draws one random ``ClientRequestToken`` (a uuid4) and uses it for every request of
that delivery: botocore's own retries of throttling, 5xx and connection errors resend it, and so do
the put-then-create fallbacks. Secrets Manager ignores a repeated token with the same value, so a
retried request never adds a second version. The token is random rather than derived from the
secret, so that no function of the secret ever leaves the process in a request's metadata.

botocore logs request and response bodies at DEBUG, and here they hold the secret: its loggers are
held at INFO while this module is in use.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
)

from reconciler.models import AwsSinkSpec
from reconciler.secret import Secret
from reconciler.sinks.base import (
    Removal,
    SecretRecord,
    SinkError,
    Verification,
    aws_name_problem,
    not_removed,
    other_client,
    parse_settings,
    same_secret,
    secret_fields,
)

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_secretsmanager.type_defs import CreateSecretRequestTypeDef

log = logging.getLogger("reconciler.sinks.aws")

ATTEMPTS = 4
T = TypeVar("T")
_REFUSED = {
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "ExpiredTokenException",
    "InvalidSignatureException",
}


def _quiet_botocore() -> None:
    """Keep botocore's body-dumping DEBUG records from ever being made (see the module docstring)."""
    for name in ("botocore", "boto3"):
        logger = logging.getLogger(name)
        if logger.level < logging.INFO:  # NOTSET included: it would inherit the root's DEBUG
            logger.setLevel(logging.INFO)


class AwsSink:
    """Secrets named ``namePrefix + key`` holding JSON: client_id, client_secret, server, client."""

    def __init__(
        self,
        name: str,
        *,
        region: str,
        endpoint_url: str | None = None,
        name_prefix: str = "",
        kms_key_id: str | None = None,
        environ: Mapping[str, str] | None = None,
        attempts: int = ATTEMPTS,
    ) -> None:
        _quiet_botocore()
        self.name = name
        self.region = region
        self.endpoint_url = endpoint_url
        self.name_prefix = name_prefix
        self.kms_key_id = kms_key_id
        self._environ = dict(environ or {})
        self._attempts = attempts
        self._lock = threading.Lock()
        self._client_or_none: SecretsManagerClient | None = None

    @classmethod
    def from_settings(cls, name: str, settings: Mapping[str, Any], environ: Mapping[str, str]) -> AwsSink:
        spec = parse_settings(AwsSinkSpec, name, settings)
        return cls(
            name,
            region=spec.region,
            endpoint_url=spec.endpointUrl,
            name_prefix=spec.namePrefix,
            kms_key_id=spec.kmsKeyId,
            environ=environ,
        )

    # ---- the protocol --------------------------------------------------------------------------

    def check(self) -> None:
        self._call("list secrets", lambda c: c.list_secrets(MaxResults=1))

    def deliver(self, record: SecretRecord, secret: Secret) -> None:
        secret_id = self._secret_id(record)
        payload = json.dumps(secret_fields(record, secret))
        token = str(uuid.uuid4())  # one per delivery, shared by all of its requests and retries
        try:
            self._put(secret_id, payload=payload, token=token)
        except _Absent:
            try:
                self._create(secret_id, payload=payload, token=token)
            except _Exists:  # another writer created it since our put: write a version on top
                self._put(secret_id, payload=payload, token=token)
        log.debug("sink %r: stored the secret of %s as %s", self.name, record.key, secret_id)

    def remove(self, record: SecretRecord) -> Removal:
        """Delete the secret at once, without a recovery window (``ForceDeleteWithoutRecovery``): the
        client it belonged to is gone, and a secret pending deletion could not take a new client's
        secret of the same name. Left in place when it names another client id."""
        secret_id = self._secret_id(record)
        try:
            response = self._call(
                f"read {secret_id}", lambda c: c.get_secret_value(SecretId=secret_id), absent=True
            )
            self._check_owner(record, secret_id, response.get("SecretString"))
            self._call(
                f"delete {secret_id}",
                lambda c: c.delete_secret(SecretId=secret_id, ForceDeleteWithoutRecovery=True),
                absent=True,
                writes=True,
            )
        except _Absent:
            return Removal.ABSENT
        log.debug("sink %r: deleted %s", self.name, secret_id)
        return Removal.REMOVED

    def _check_owner(self, record: SecretRecord, secret_id: str, text: str | None) -> None:
        try:
            document = json.loads(text or "null")
        except ValueError:
            document = None
        stored = document.get("client_id") if isinstance(document, dict) else None
        foreign = other_client(stored, record)
        if foreign is not None:
            raise self._error(not_removed(record, where=secret_id, stored=foreign))

    def verify(self, record: SecretRecord, secret: Secret) -> Verification:
        secret_id = self._secret_id(record)
        try:
            response = self._call(
                f"read {secret_id}", lambda c: c.get_secret_value(SecretId=secret_id), absent=True
            )
        except _Absent:
            return Verification.MISSING
        try:
            document = json.loads(response.get("SecretString") or "null")
        except ValueError:
            return Verification.DIFFERENT
        stored = document.get("client_secret") if isinstance(document, dict) else None
        return same_secret(stored, secret)

    def close(self) -> None:
        with self._lock:
            client, self._client_or_none = self._client_or_none, None
        if client is not None:
            client.close()

    # ---- steps ---------------------------------------------------------------------------------

    def _secret_id(self, record: SecretRecord) -> str:
        """The secret's name, never outside namePrefix (validate refuses such keys too: this is the
        second line of defence, for a key that reached the sink some other way)."""
        reason = aws_name_problem(self.name_prefix, key=record.key)
        if reason is not None:
            raise self._error(
                f"refusing the key {record.key!r} of {record.server}/{record.client}: {reason}, so it "
                f"could name a secret outside namePrefix {self.name_prefix!r}"
            )
        return self.name_prefix + record.key

    def _put(self, secret_id: str, *, payload: str, token: str) -> None:
        self._call(
            f"write {secret_id}",
            lambda c: c.put_secret_value(SecretId=secret_id, SecretString=payload, ClientRequestToken=token),
            absent=True,
            writes=True,
        )

    def _create(self, secret_id: str, *, payload: str, token: str) -> None:
        request: CreateSecretRequestTypeDef = {
            "Name": secret_id,
            "SecretString": payload,
            "ClientRequestToken": token,
            "Description": "OAuth client secret managed by mcp-reconciler",
        }
        if self.kms_key_id:
            request["KmsKeyId"] = self.kms_key_id
        self._call(f"create {secret_id}", lambda c: c.create_secret(**request), writes=True)

    # ---- plumbing ------------------------------------------------------------------------------

    def _client(self) -> SecretsManagerClient:
        """One client, made on first use (boto3 sessions are not thread-safe; clients are)."""
        with self._lock:
            if self._client_or_none is None:
                # Explicit keys from the given environment, else boto3's usual chain (profile, role).
                session = boto3.session.Session(
                    aws_access_key_id=self._environ.get("AWS_ACCESS_KEY_ID") or None,
                    aws_secret_access_key=self._environ.get("AWS_SECRET_ACCESS_KEY") or None,
                    aws_session_token=self._environ.get("AWS_SESSION_TOKEN") or None,
                    region_name=self.region,
                )
                config = Config(
                    retries={"mode": "standard", "max_attempts": self._attempts},
                    connect_timeout=5,
                    read_timeout=20,
                )
                self._client_or_none = session.client(
                    "secretsmanager", endpoint_url=self.endpoint_url, config=config
                )
            return self._client_or_none

    def _call(
        self,
        action: str,
        call: Callable[[SecretsManagerClient], T],
        *,
        absent: bool = False,
        writes: bool = False,
    ) -> T:
        """Run ``call``, mapping botocore errors to SinkError (and the two expected ones to signals)."""
        try:
            return call(self._client())
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = error.get("Code", "Unknown")
            if absent and code == "ResourceNotFoundException":
                raise _Absent from None
            if writes and code == "ResourceExistsException" and action.startswith("create"):
                raise _Exists from None
            # AWS error messages never repeat a request's SecretString.
            raise self._error(
                f"cannot {action}: {code}: {error.get('Message', '')[:200]}{_hint(code)}"
            ) from None
        except (NoCredentialsError, PartialCredentialsError):
            raise self._error(
                "no usable AWS credentials: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or run where a role is attached"
            ) from None
        except ConnectionError:
            where = self.endpoint_url or f"the {self.region} endpoint"
            raise self._error(
                f"cannot reach Secrets Manager at {where}: check endpointUrl and the network"
            ) from None
        except BotoCoreError as exc:  # its message may quote request parameters: the class name only
            raise self._error(f"cannot {action}: {type(exc).__name__}") from None

    def _error(self, message: str) -> SinkError:
        return SinkError(f"sink {self.name!r} (aws-secrets-manager): {message}")


class _Absent(Exception):
    """No secret of that name."""


class _Exists(Exception):
    """The secret was created by someone else meanwhile."""


def _hint(code: str) -> str:
    if code in _REFUSED:
        return " (the credentials were refused: check them and the region)"
    if code == "AccessDeniedException":
        return (
            " (allow secretsmanager:ListSecrets, CreateSecret, PutSecretValue and GetSecretValue "
            "for the sink's names, and DeleteSecret with pruneSecrets)"
        )
    if code == "InvalidRequestException":
        return (
            " (if the secret is scheduled for deletion, restore it first: aws secretsmanager restore-secret)"
        )
    return ""
