"""The AWS Secrets Manager sink against a real moto server started on 127.0.0.1."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import boto3
import httpx
import pytest

from reconciler.secret import Secret
from reconciler.sinks import build_sinks
from reconciler.sinks.aws import AwsSink
from reconciler.sinks.base import SecretRecord, Verification
from tests.sink_servers import closed_port_url, expect_sink_error, logged, running_moto

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

CANARY = "canary-Aws-5ecret-c3e8"
SECRET = Secret(CANARY)
RECORD = SecretRecord("calendar", "claude", "cid-1", "calendar/claude")
REGION = "eu-west-1"


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("moto")
    with pytest.MonkeyPatch.context() as patch:
        # Dummy credentials, and nothing that could send boto3 looking further (files, instance roles).
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        patch.delenv("AWS_SESSION_TOKEN", raising=False)
        patch.delenv("AWS_PROFILE", raising=False)
        patch.setenv("AWS_CONFIG_FILE", str(workdir / "absent-config"))
        patch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(workdir / "absent-credentials"))
        patch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        with running_moto(workdir) as url:
            yield url


@pytest.fixture
def aws(moto: str) -> Iterator[SecretsManagerClient]:
    """A plain client to inspect what the sink stored; moto is emptied after each test."""
    client = boto3.client("secretsmanager", region_name=REGION, endpoint_url=moto)
    yield client
    client.close()
    httpx.post(f"{moto}/moto-api/reset", timeout=10).raise_for_status()


@pytest.fixture(autouse=True)
def _no_leak(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.DEBUG)
    yield
    assert CANARY not in logged(caplog)


def aws_sink(url: str, environ: dict[str, str] | None = None, **settings: Any) -> AwsSink:
    given = {"type": "aws-secrets-manager", "region": REGION, "endpointUrl": url, **settings}
    sink = build_sinks({"sm": given}, environ or {})["sm"]
    assert isinstance(sink, AwsSink)
    return sink


def document(aws: SecretsManagerClient, name: str) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(aws.get_secret_value(SecretId=name)["SecretString"])
    return value


def versions(aws: SecretsManagerClient, name: str) -> int:
    return len(aws.list_secret_version_ids(SecretId=name, IncludeDeprecated=True)["Versions"])


def test_create_then_update(moto: str, aws: SecretsManagerClient) -> None:
    sink = aws_sink(moto)
    sink.check()
    assert sink.verify(RECORD, SECRET) is Verification.MISSING
    sink.deliver(RECORD, Secret("first"))
    assert versions(aws, "calendar/claude") == 1
    sink.deliver(RECORD, SECRET)
    assert versions(aws, "calendar/claude") == 2
    assert document(aws, "calendar/claude") == {
        "client_id": "cid-1",
        "client_secret": CANARY,
        "server": "calendar",
        "client": "claude",
    }
    assert sink.verify(RECORD, SECRET) is Verification.MATCH
    assert sink.verify(RECORD, Secret("first")) is Verification.DIFFERENT
    sink.close()


def test_name_prefix_and_kms_key(moto: str, aws: SecretsManagerClient) -> None:
    sink = aws_sink(moto, namePrefix="mcp/prod/", kmsKeyId="alias/mcp-secrets")
    sink.deliver(RECORD, SECRET)
    described = aws.describe_secret(SecretId="mcp/prod/calendar/claude")
    assert described["KmsKeyId"] == "alias/mcp-secrets"
    assert document(aws, "mcp/prod/calendar/claude")["client_secret"] == CANARY
    assert sink.verify(RECORD, SECRET) is Verification.MATCH


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("../prod/db", "it has a '..' segment"),
        ("/prod/db", "it starts with '/'"),
        (
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/db",
            "AWS secret names allow only letters, digits and /_+=.@-",
        ),
    ],
)
def test_a_key_that_would_leave_the_prefix_is_refused_at_write_time(
    moto: str, aws: SecretsManagerClient, key: str, reason: str
) -> None:
    # validate refuses such keys; this is the second line of defence: no request is even sent.
    aws.create_secret(Name="prod/db", SecretString="someone else's")
    sink = aws_sink(moto, namePrefix="mcp/")
    escaping = SecretRecord("calendar", "claude", "cid-1", key)
    expected = (
        f"sink 'sm' (aws-secrets-manager): refusing the key {key!r} of calendar/claude: {reason}, so it "
        "could name a secret outside namePrefix 'mcp/'"
    )
    assert expect_sink_error(lambda: sink.deliver(escaping, SECRET), CANARY) == expected
    assert expect_sink_error(lambda: sink.verify(escaping, SECRET), CANARY) == expected
    assert aws.get_secret_value(SecretId="prod/db")["SecretString"] == "someone else's"
    assert [entry["Name"] for entry in aws.list_secrets()["SecretList"]] == ["prod/db"]
    sink.close()


def test_a_retried_request_reuses_its_token_and_adds_no_version(moto: str, aws: SecretsManagerClient) -> None:
    sink = aws_sink(moto)
    sent: dict[str, list[str]] = {"CreateSecret": [], "PutSecretValue": []}

    def lose_first_answer(
        attempts: int, request_dict: dict[str, Any], operation: Any, **_: Any
    ) -> float | None:
        """The request reached the server, but the caller retries as if its answer were lost."""
        if operation.name not in sent:
            return None
        sent[operation.name].append(json.loads(request_dict["body"])["ClientRequestToken"])
        return 0 if attempts == 1 else None

    events = sink._client().meta.events
    handler = cast("Callable[..., None]", lose_first_answer)  # the stubs forget that handlers answer
    for operation in sent:
        events.register_first(f"needs-retry.secrets-manager.{operation}", handler)
    sink.deliver(RECORD, Secret("first"))
    assert versions(aws, "calendar/claude") == 1
    sink.deliver(RECORD, SECRET)
    assert versions(aws, "calendar/claude") == 2
    # First delivery: put (no such secret) and create, each sent twice, all with one token. Second
    # delivery: put, sent twice with a fresh token.
    first = sent["PutSecretValue"][:2] + sent["CreateSecret"]
    second = sent["PutSecretValue"][2:]
    assert len(first) == 4
    assert len(set(first)) == 1
    assert len(second) == 2
    assert len(set(second)) == 1
    assert first[0] != second[0]
    assert document(aws, "calendar/claude")["client_secret"] == CANARY


def test_a_secret_scheduled_for_deletion_reports_the_aws_code(moto: str, aws: SecretsManagerClient) -> None:
    sink = aws_sink(moto)
    sink.deliver(RECORD, SECRET)
    aws.delete_secret(SecretId="calendar/claude", RecoveryWindowInDays=7)
    message = expect_sink_error(lambda: sink.verify(RECORD, SECRET), CANARY)
    assert "cannot read calendar/claude: InvalidRequestException: " in message
    assert "restore it first: aws secretsmanager restore-secret" in message


def test_credentials_from_the_given_environment_are_used(
    moto: str, aws: SecretsManagerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    sink = aws_sink(moto, {"AWS_ACCESS_KEY_ID": "given", "AWS_SECRET_ACCESS_KEY": "given"})
    sink.check()
    sink.deliver(RECORD, SECRET)
    assert sink.verify(RECORD, SECRET) is Verification.MATCH


def test_missing_credentials_are_explained(moto: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    message = expect_sink_error(aws_sink(moto).check, CANARY)
    assert "no usable AWS credentials: set AWS_PROFILE, or AWS_ACCESS_KEY_ID" in message


def test_an_unreachable_endpoint_is_reported(moto: str, tmp_path: Path) -> None:
    url = closed_port_url()
    sink = AwsSink("sm", region=REGION, endpoint_url=url, attempts=1)
    expected = f"sink 'sm' (aws-secrets-manager): cannot reach Secrets Manager at {url}"
    assert expected in expect_sink_error(sink.check, CANARY)
    assert expected in expect_sink_error(lambda: sink.deliver(RECORD, SECRET), CANARY)
    assert expected in expect_sink_error(lambda: sink.verify(RECORD, SECRET), CANARY)


def test_a_non_json_value_verifies_as_different(moto: str, aws: SecretsManagerClient) -> None:
    aws.create_secret(Name="calendar/claude", SecretString="hand-written")
    assert aws_sink(moto).verify(RECORD, SECRET) is Verification.DIFFERENT


def test_threads_racing_to_create_one_secret_all_succeed(moto: str, aws: SecretsManagerClient) -> None:
    sink = aws_sink(moto)
    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(lambda i: sink.deliver(RECORD, Secret(f"{CANARY}-{i}")), range(6)))
    assert versions(aws, "calendar/claude") == 6  # one creation, five versions on top: nothing lost
    assert document(aws, "calendar/claude")["client_secret"].startswith(f"{CANARY}-")
