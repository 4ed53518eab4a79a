"""The Vault sink against a real OpenBao dev server started on 127.0.0.1."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import hvac
import pytest

from reconciler.secret import Secret
from reconciler.sinks import build_sinks
from reconciler.sinks.base import SecretRecord, Verification
from reconciler.sinks.vault import VaultSink
from tests.sink_servers import closed_port_url, expect_sink_error, logged, running_openbao

CANARY = "canary-Va0lt-5ecret-91cf"
SECRET = Secret(CANARY)
ROOT = "root-token-for-sink-tests"


@pytest.fixture(scope="module")
def bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_openbao(ROOT, tmp_path_factory.mktemp("openbao")) as url:
        yield url


@pytest.fixture
def root(bao: str) -> Iterator[hvac.Client]:
    client = hvac.Client(url=bao, token=ROOT)
    yield client
    client.adapter.close()


@pytest.fixture(autouse=True)
def _no_leak(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.DEBUG)
    yield
    assert CANARY not in logged(caplog)


@pytest.fixture
def record() -> SecretRecord:
    """A record under a fresh key, so tests sharing the server never meet."""
    return SecretRecord("calendar", "claude", "cid-1", f"t{uuid.uuid4().hex[:8]}/claude")


def vault_sink(url: str, token: str | None = ROOT, **settings: Any) -> VaultSink:
    environ = {"VAULT_TOKEN": token} if token is not None else {}
    sink = build_sinks({"bao": {"type": "vault", "url": url, **settings}}, environ)["bao"]
    assert isinstance(sink, VaultSink)
    return sink


def stored(client: hvac.Client, path: str, mount: str = "secret") -> dict[str, Any]:
    response = client.secrets.kv.v2.read_secret_version(
        path=path, mount_point=mount, raise_on_deleted_version=True
    )
    data: dict[str, Any] = response["data"]["data"]
    return data


def version(client: hvac.Client, path: str, mount: str = "secret") -> int:
    response = client.secrets.kv.v2.read_secret_metadata(path=path, mount_point=mount)
    return int(response["data"]["current_version"])


def test_deliver_verify_and_overwrite(bao: str, root: hvac.Client, record: SecretRecord) -> None:
    sink = vault_sink(bao)
    sink.check()
    assert sink.verify(record, SECRET) is Verification.MISSING
    sink.deliver(record, Secret("first"))
    sink.deliver(record, SECRET)
    assert stored(root, record.key) == {
        "client_id": "cid-1",
        "client_secret": CANARY,
        "server": "calendar",
        "client": "claude",
    }
    assert version(root, record.key) == 2
    assert sink.verify(record, SECRET) is Verification.MATCH
    assert sink.verify(record, Secret("first")) is Verification.DIFFERENT
    sink.close()


def test_path_prefix(bao: str, root: hvac.Client, record: SecretRecord) -> None:
    sink = vault_sink(bao, pathPrefix="mcp/team-a/")
    sink.check()
    sink.deliver(record, SECRET)
    assert stored(root, f"mcp/team-a/{record.key}")["client_secret"] == CANARY
    assert sink.verify(record, SECRET) is Verification.MATCH


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("../team-b/db", "it has a '..' segment"),  # the HTTP client would send team-b/db
        ("x/../../team-b/db", "it has a '..' segment"),
        ("/team-b/db", "it starts with '/'"),
    ],
)
def test_a_key_that_would_leave_the_prefix_is_refused_at_write_time(
    bao: str, root: hvac.Client, key: str, reason: str
) -> None:
    # validate refuses such keys; this is the second line of defence, against a real server.
    sink = vault_sink(bao, pathPrefix="team-a/")
    escaping = SecretRecord("calendar", "claude", "cid-1", key)
    expected = (
        f"sink 'bao' (vault): refusing the key {key!r} of calendar/claude: {reason}, so it would be "
        "written outside pathPrefix 'team-a/' of the mount secret/"
    )
    assert expect_sink_error(lambda: sink.deliver(escaping, SECRET), CANARY) == expected
    assert expect_sink_error(lambda: sink.verify(escaping, SECRET), CANARY) == expected
    with pytest.raises(hvac.exceptions.InvalidPath):
        stored(root, "team-b/db")
    sink.close()


def test_writes_use_check_and_set(bao: str, root: hvac.Client, record: SecretRecord) -> None:
    mount = f"cas{uuid.uuid4().hex[:6]}"
    root.sys.enable_secrets_engine("kv", path=mount, options={"version": "2"})
    root.secrets.kv.v2.configure(cas_required=True, mount_point=mount)
    with pytest.raises(hvac.exceptions.InvalidRequest):  # the mount refuses writes without cas
        root.secrets.kv.v2.create_or_update_secret(path="probe", secret={"a": "b"}, mount_point=mount)
    sink = vault_sink(bao, mount=mount)
    sink.check()
    sink.deliver(record, Secret("first"))
    sink.deliver(record, SECRET)
    assert version(root, record.key, mount) == 2
    assert sink.verify(record, SECRET) is Verification.MATCH


def test_a_write_between_read_and_write_is_retried(
    bao: str, root: hvac.Client, record: SecretRecord, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = vault_sink(bao)
    read_version = sink._version
    interfered: list[int] = []

    def racing_version(path: str) -> int:
        current = read_version(path)
        if not interfered:  # another writer slips in once, right after our read
            root.secrets.kv.v2.create_or_update_secret(path=path, secret={"client_secret": "theirs"})
            interfered.append(current)
        return current

    monkeypatch.setattr(sink, "_version", racing_version)
    sink.deliver(record, SECRET)
    assert interfered == [0]
    assert version(root, record.key) == 2  # theirs is version 1, ours went on top of it
    assert stored(root, record.key)["client_secret"] == CANARY


def test_a_path_that_keeps_changing_gives_up(
    bao: str, root: hvac.Client, record: SecretRecord, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = vault_sink(bao)
    read_version = sink._version

    def always_racing(path: str) -> int:
        current = read_version(path)
        root.secrets.kv.v2.create_or_update_secret(path=path, secret={"client_secret": "theirs"})
        return current

    monkeypatch.setattr(sink, "_version", always_racing)
    message = expect_sink_error(lambda: sink.deliver(record, SECRET), CANARY)
    assert "kept changing during 8 check-and-set writes" in message


def test_concurrent_deliveries_from_threads_all_land(
    bao: str, root: hvac.Client, record: SecretRecord
) -> None:
    sinks = [vault_sink(bao), vault_sink(bao)]
    errors: list[BaseException] = []

    def deliver(i: int) -> None:
        try:
            sinks[i % 2].deliver(record, Secret(f"{CANARY}-{i}"))
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=deliver, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    # Each failed check-and-set is another thread's success, so 8 attempts always suffice for 8 writers.
    assert version(root, record.key) == 8  # every write became its own version: none was lost
    for sink in sinks:
        sink.close()


def test_namespace(bao: str, root: hvac.Client, record: SecretRecord) -> None:
    namespace = f"team{uuid.uuid4().hex[:6]}"
    root.adapter.post(f"/v1/sys/namespaces/{namespace}")
    inside = hvac.Client(url=bao, token=ROOT, namespace=namespace)
    inside.sys.enable_secrets_engine("kv", path="secret", options={"version": "2"})
    sink = vault_sink(bao, namespace=namespace)
    sink.check()
    sink.deliver(record, SECRET)
    assert stored(inside, record.key)["client_secret"] == CANARY
    with pytest.raises(hvac.exceptions.InvalidPath):
        stored(root, record.key)


def test_a_token_without_write_permission_fails_check(
    bao: str, root: hvac.Client, record: SecretRecord
) -> None:
    root.sys.create_or_update_policy(
        "mcp-read-only",
        'path "secret/data/mcp/*" { capabilities = ["read"] }\npath "secret/metadata/mcp/*" { capabilities = ["read"] }',
    )
    token = root.auth.token.create(policies=["mcp-read-only"], ttl="10m")["auth"]["client_token"]
    sink = vault_sink(bao, token, pathPrefix="mcp/")
    message = expect_sink_error(sink.check, CANARY)
    assert "the token in VAULT_TOKEN lacks create, update under secret/mcp/" in message
    assert "grant create, update and read on secret/data/mcp/*" in message
    assert "403 permission denied" in expect_sink_error(lambda: sink.deliver(record, SECRET), CANARY)


def test_a_token_without_access_to_the_mount_fails_check(bao: str, root: hvac.Client) -> None:
    root.sys.create_or_update_policy("elsewhere", 'path "other/*" { capabilities = ["read"] }')
    token = root.auth.token.create(policies=["elsewhere"], ttl="10m")["auth"]["client_token"]
    message = expect_sink_error(vault_sink(bao, token).check, CANARY)
    assert "cannot inspect the mount secret/: 403 permission denied" in message


def test_a_kv_version_1_mount_fails_check(bao: str, root: hvac.Client) -> None:
    mount = f"kv1{uuid.uuid4().hex[:6]}"
    root.sys.enable_secrets_engine("kv", path=mount, options={"version": "1"})
    message = expect_sink_error(vault_sink(bao, mount=mount).check, CANARY)
    assert f"the mount {mount}/ is KV version 1; this sink needs version 2" in message


def test_a_wrong_token_fails_check_and_deliver(bao: str, record: SecretRecord) -> None:
    sink = vault_sink(bao, "not-a-real-token")
    message = expect_sink_error(sink.check, CANARY)
    assert "refused the token in VAULT_TOKEN (403 permission denied): set a valid, unexpired token" in message
    assert "permission denied" in expect_sink_error(lambda: sink.deliver(record, SECRET), CANARY)


def test_a_missing_token_variable_is_named(bao: str, record: SecretRecord) -> None:
    sink = vault_sink(bao, None, tokenEnv="BAO_TOKEN_FOR_MCP")
    expected = "the environment variable BAO_TOKEN_FOR_MCP is not set"
    assert expected in expect_sink_error(sink.check, CANARY)
    assert expected in expect_sink_error(lambda: sink.deliver(record, SECRET), CANARY)
    assert expected in expect_sink_error(lambda: sink.verify(record, SECRET), CANARY)


def test_an_unreachable_url_is_reported(record: SecretRecord) -> None:
    url = closed_port_url()
    sink = vault_sink(url)
    assert f"cannot reach Vault at {url} (ConnectionError)" in expect_sink_error(sink.check, CANARY)
    assert "cannot reach Vault" in expect_sink_error(lambda: sink.deliver(record, SECRET), CANARY)
    assert "cannot reach Vault" in expect_sink_error(lambda: sink.verify(record, SECRET), CANARY)
