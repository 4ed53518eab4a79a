"""The file sink on a real file system, and the sink registry (``build_sinks``)."""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from dotenv import dotenv_values

from reconciler.secret import Secret
from reconciler.sinks import SINKS, UnavailableSink, build_sinks
from reconciler.sinks.base import SecretRecord, SinkError, Verification, env_name
from reconciler.sinks.command import CommandSink
from reconciler.sinks.file import FileSink
from tests.sink_servers import expect_sink_error, logged

CANARY = "canary-F1le-5ecret-0b7e"
SECRET = Secret(CANARY)
RECORD = SecretRecord(
    server="calendar", client="claude-desktop", client_id="cid-1", key="calendar/claude-desktop"
)
OTHER = SecretRecord(server="calendar", client="cursor", client_id="cid-2", key="calendar/cursor")


@pytest.fixture(autouse=True)
def _no_leak(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.DEBUG)
    yield
    assert CANARY not in logged(caplog)


def file_sink(path: Path, format: str = "json") -> FileSink:
    sink = SINKS["file"]("local", {"type": "file", "path": str(path), "format": format}, {})
    assert isinstance(sink, FileSink)
    return sink


def listing(folder: Path) -> set[str]:
    return {entry.name for entry in folder.iterdir()}


# ---- JSON ------------------------------------------------------------------------------------


def test_json_entry_is_added_beside_the_others(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    path.write_text(json.dumps({"kept": {"clientSecret": "old", "note": 1}}))
    sink = file_sink(path)
    sink.check()
    sink.deliver(RECORD, SECRET)
    assert json.loads(path.read_text()) == {
        "kept": {"clientSecret": "old", "note": 1},
        "calendar/claude-desktop": {
            "server": "calendar",
            "client": "claude-desktop",
            "clientId": "cid-1",
            "clientSecret": CANARY,
        },
    }
    assert sink.verify(RECORD, SECRET) is Verification.MATCH
    assert sink.verify(RECORD, Secret("another")) is Verification.DIFFERENT
    assert sink.verify(OTHER, SECRET) is Verification.MISSING


def test_delivery_replaces_and_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    sink = file_sink(path)
    sink.deliver(RECORD, Secret("first"))
    sink.deliver(RECORD, SECRET)
    once = path.read_bytes()
    sink.deliver(RECORD, SECRET)
    assert path.read_bytes() == once
    assert sink.verify(RECORD, SECRET) is Verification.MATCH
    assert sink.verify(RECORD, Secret("first")) is Verification.DIFFERENT


def test_file_is_0600_in_a_new_0700_folder_and_no_temp_file_is_left(tmp_path: Path) -> None:
    path = tmp_path / "new" / "deeper" / "secrets.json"
    sink = file_sink(path)
    sink.check()  # a missing folder is fine when it can be created
    sink.deliver(RECORD, SECRET)
    sink.deliver(OTHER, SECRET)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert listing(path.parent) == {"secrets.json", ".secrets.json.lock"}


def test_an_existing_loose_mode_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    path.write_text("{}")
    path.chmod(0o644)
    file_sink(path).deliver(RECORD, SECRET)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_missing_file_verifies_as_missing(tmp_path: Path) -> None:
    assert file_sink(tmp_path / "none.json").verify(RECORD, SECRET) is Verification.MISSING


def test_a_symlinked_path_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.json"
    target.write_text("{}")
    path = tmp_path / "secrets.json"
    path.symlink_to(target)
    sink = file_sink(path)
    assert "symbolic link" in expect_sink_error(sink.check, CANARY)
    assert "symbolic link" in expect_sink_error(lambda: sink.deliver(RECORD, SECRET), CANARY)
    assert target.read_text() == "{}"
    assert path.is_symlink()


def test_a_symlink_planted_at_the_temp_name_is_not_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("reconciler.files.secrets.token_hex", lambda _n: "fixed")
    victim = tmp_path / "victim"
    victim.write_text("precious")
    planted = tmp_path / ".secrets.json.fixed.tmp"
    planted.symlink_to(victim)
    sink = file_sink(tmp_path / "secrets.json")
    message = expect_sink_error(lambda: sink.deliver(RECORD, SECRET), CANARY)
    assert "cannot write" in message
    assert ".secrets.json.fixed.tmp" in message
    assert victim.read_text() == "precious"
    assert planted.is_symlink()  # not ours to remove
    assert not (tmp_path / "secrets.json").exists()


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("secrets.json", '{"kept": 1,', "not a valid JSON file (Expecting"),
        ("secrets.json", "[1, 2]", "the top level is not an object"),
        ("secrets.env", "GOOD=1\nthis line is no assignment\n", "not a valid dotenv file (line 2 is not"),
        ("secrets.env", 'MULTI="first\nsecond"\n', "line 1 has an unterminated quote"),
    ],
)
def test_a_corrupt_file_is_refused_and_left_untouched(
    tmp_path: Path, name: str, text: str, expected: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    sink = file_sink(path, "json" if name.endswith(".json") else "dotenv")
    assert expected in expect_sink_error(sink.check, CANARY)
    assert "left untouched" in expect_sink_error(lambda: sink.deliver(RECORD, SECRET), CANARY)
    assert path.read_text() == text
    assert listing(tmp_path) <= {name, f".{name}.lock"}


def test_check_fails_when_the_folder_cannot_exist(tmp_path: Path) -> None:
    (tmp_path / "plain-file").write_text("")
    sink = file_sink(tmp_path / "plain-file" / "secrets.json")
    assert "is not a folder" in expect_sink_error(sink.check, CANARY)
    assert "cannot create the folder" in expect_sink_error(lambda: sink.deliver(RECORD, SECRET), CANARY)


def test_a_folder_at_the_path_is_a_sink_error_and_is_left_alone(tmp_path: Path) -> None:
    folder = tmp_path / "secrets"
    folder.mkdir()
    (folder / "kept.txt").write_text("kept")
    sink = file_sink(folder)
    expected = f"sink 'local' (file): {folder} is a folder, not a file: point path at a file inside it"
    assert expect_sink_error(sink.check, CANARY) == expected
    assert expect_sink_error(lambda: sink.deliver(RECORD, SECRET), CANARY) == expected
    assert expect_sink_error(lambda: sink.verify(RECORD, SECRET), CANARY) == expected
    assert listing(folder) == {"kept.txt"}
    assert listing(tmp_path) <= {"secrets", ".secrets.lock"}


def test_the_root_folder_as_path_is_a_sink_error() -> None:
    sink = file_sink(Path("/"))
    assert "/ is a folder, not a file" in expect_sink_error(sink.check, CANARY)
    assert expect_sink_error(lambda: sink.verify(RECORD, SECRET), CANARY)


def test_a_nul_in_the_path_is_a_sink_error(tmp_path: Path) -> None:
    sink = file_sink(tmp_path / "a\0b.json")
    expected = "sink 'local' (file): the path contains a NUL character: fix path"
    assert expect_sink_error(sink.check, CANARY) == expected
    assert expect_sink_error(lambda: sink.deliver(RECORD, SECRET), CANARY) == expected
    assert expect_sink_error(lambda: sink.verify(RECORD, SECRET), CANARY) == expected


def test_twenty_threads_lose_no_entry(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    sinks = [file_sink(path), file_sink(path)]  # one shared instance and a second one on the same file
    records = [SecretRecord("s", f"c{i}", f"id{i}", f"s/c{i}") for i in range(20)]
    errors: list[BaseException] = []

    def deliver(i: int) -> None:
        try:
            sinks[i % 2].deliver(records[i], Secret(f"{CANARY}-{i}"))
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=deliver, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(json.loads(path.read_text())) == sorted(r.key for r in records)
    assert all(
        sinks[0].verify(r, Secret(f"{CANARY}-{i}")) is Verification.MATCH for i, r in enumerate(records)
    )


def test_separate_processes_lose_no_entry(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from reconciler.secret import Secret\n"
        "from reconciler.sinks.base import SecretRecord\n"
        "from reconciler.sinks.file import FileSink\n"
        "sink = FileSink('local', path=Path(sys.argv[1]))\n"
        "for i in range(8):\n"
        "    key = f'p{sys.argv[2]}/c{i}'\n"
        "    sink.deliver(SecretRecord('s', 'c', 'id', key), Secret('not-the-canary'))\n"
    )
    processes = [
        subprocess.Popen([sys.executable, "-c", script, str(path), str(n)], cwd=Path(__file__).parent.parent)
        for n in range(3)
    ]
    assert [p.wait(60) for p in processes] == [0, 0, 0]
    assert len(json.loads(path.read_text())) == 24


# ---- dotenv ----------------------------------------------------------------------------------


def test_dotenv_keeps_other_lines_and_replaces_in_place(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    original = "# team settings\nexport REGION=eu-west-1\n\nCALENDAR_CLAUDE_DESKTOP='old'\nLAST=\"x y\""
    path.write_text(original)
    sink = file_sink(path, "dotenv")
    sink.check()
    sink.deliver(RECORD, SECRET)
    assert path.read_text() == (
        f"# team settings\nexport REGION=eu-west-1\n\nCALENDAR_CLAUDE_DESKTOP='{CANARY}'\nLAST=\"x y\""
    )
    sink.deliver(OTHER, SECRET)
    assert path.read_text().endswith(f"LAST=\"x y\"\nCALENDAR_CURSOR='{CANARY}'\n")
    assert dotenv_values(path) == {
        "REGION": "eu-west-1",
        "CALENDAR_CLAUDE_DESKTOP": CANARY,
        "LAST": "x y",
        "CALENDAR_CURSOR": CANARY,
    }
    assert sink.verify(RECORD, SECRET) is Verification.MATCH
    assert sink.verify(RECORD, Secret("old")) is Verification.DIFFERENT


def test_dotenv_duplicate_assignments_collapse_to_one(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text("CALENDAR_CLAUDE_DESKTOP=a\nKEEP=1\nCALENDAR_CLAUDE_DESKTOP=b\n")
    file_sink(path, "dotenv").deliver(RECORD, SECRET)
    assert path.read_text() == f"CALENDAR_CLAUDE_DESKTOP='{CANARY}'\nKEEP=1\n"


def test_dotenv_keeps_an_export_prefix(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text("export CALENDAR_CLAUDE_DESKTOP=old\n")
    file_sink(path, "dotenv").deliver(RECORD, SECRET)
    assert path.read_text() == f"export CALENDAR_CLAUDE_DESKTOP='{CANARY}'\n"


@pytest.mark.parametrize(
    "value",
    [
        "plain-Value_123",
        "with space and # hash",
        "it's quoted",
        'double "quotes"',
        "back\\slash\\",
        "dollars $HOME ${HOME} $(id) `id`",
        "new\nline and\ttab\rreturn",
        "équipe ünïcode ✓",
        "=leading equals=",
        "'",
    ],
)
def test_dotenv_awkward_values_read_back_exactly(tmp_path: Path, value: str) -> None:
    path = tmp_path / ".env"
    sink = file_sink(path, "dotenv")
    sink.deliver(RECORD, Secret(value))
    assert sink.verify(RECORD, Secret(value)) is Verification.MATCH
    # An independent reader agrees (told not to expand ${VAR}, which no quoting can prevent there).
    assert dotenv_values(path, interpolate=False) == {"CALENDAR_CLAUDE_DESKTOP": value}
    assert path.read_text().count("\n") == 1


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("calendar/claude-desktop", "CALENDAR_CLAUDE_DESKTOP"),
        ("a.b c", "A_B_C"),
        ("1password/x", "_1PASSWORD_X"),
        ("ALREADY_OK", "ALREADY_OK"),
    ],
)
def test_env_names(key: str, name: str) -> None:
    assert env_name(key) == name


# ---- the registry ----------------------------------------------------------------------------


def test_build_sinks_applies_defaults_and_resolves_relative_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    sinks = build_sinks(
        {
            "local": {"type": "file", "path": ".secrets/clients.json"},
            "script": {"type": "command", "command": ["x"]},
        },
        {"PATH": "/usr/bin"},
    )
    local, script = sinks["local"], sinks["script"]
    assert isinstance(local, FileSink)
    assert local.format == "json"
    assert local.path == tmp_path / ".secrets" / "clients.json"
    assert isinstance(script, CommandSink)
    assert script.timeout == 30
    assert script.environ == {"PATH": "/usr/bin"}
    assert set(SINKS) == {"file", "command", "vault", "aws-secrets-manager", "github"}


def test_optional_sinks_build_without_their_tokens_and_report_them_on_check() -> None:
    sinks = build_sinks(
        {
            "bao": {"type": "vault", "url": "http://127.0.0.1:1"},
            "gh": {"type": "github", "repository": "acme/agents"},
        },
        {},
    )
    assert "VAULT_TOKEN is not set" in expect_sink_error(sinks["bao"].check, CANARY)
    assert "GITHUB_TOKEN is not set" in expect_sink_error(sinks["gh"].check, CANARY)
    for sink in sinks.values():
        sink.close()


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"type": "ftp", "path": "x"}, "sink 'bad': unknown type 'ftp': use one of file, command, vault"),
        ({"path": "x"}, "sink 'bad': unknown type None"),
        ({"type": "file"}, "sink 'bad': invalid settings: path: Field required"),
        ({"type": "file", "path": "x", "format": "xml"}, "invalid settings: format: Input should be 'json'"),
        ({"type": "command", "command": ["x"], "shell": True}, "shell: Extra inputs are not permitted"),
    ],
)
def test_bad_settings_name_the_sink(settings: dict[str, object], expected: str) -> None:
    with pytest.raises(SinkError) as caught:
        build_sinks({"bad": settings}, {})
    assert expected in str(caught.value)


@pytest.mark.parametrize(
    ("settings", "library", "module", "message"),
    [
        (
            {"type": "vault", "url": "http://127.0.0.1:8200"},
            "hvac",
            "reconciler.sinks.vault",
            "sink 'x' (vault) needs the hvac package: pip install 'mcp-reconciler[vault]'",
        ),
        (
            {"type": "aws-secrets-manager", "region": "eu-west-1"},
            "boto3",
            "reconciler.sinks.aws",
            "sink 'x' (aws-secrets-manager) needs the boto3 package: pip install 'mcp-reconciler[aws]'",
        ),
        (
            {"type": "github", "repository": "acme/agents"},
            "nacl",
            "reconciler.sinks.github",
            "sink 'x' (github) needs the pynacl package: pip install 'mcp-reconciler[github]'",
        ),
    ],
)
def test_a_missing_optional_library_is_named_when_its_sink_is_used(
    monkeypatch: pytest.MonkeyPatch, settings: dict[str, object], library: str, module: str, message: str
) -> None:
    # "import hvac" (or of any loaded part of it) now fails as if the library were not installed.
    for part in [library, *(m for m in sys.modules if m.startswith(f"{library}."))]:
        monkeypatch.setitem(sys.modules, part, None)
    monkeypatch.delitem(sys.modules, module, raising=False)
    assert build_sinks({"local": {"type": "file", "path": "x.json"}}, {})  # other types are unaffected
    # The sink is still built, so a run goes on without it: plan warns, apply skips its clients.
    sink = build_sinks({"x": settings}, {})["x"]
    assert isinstance(sink, UnavailableSink)
    for use in (sink.check, lambda: sink.deliver(RECORD, SECRET), lambda: sink.verify(RECORD, SECRET)):
        with pytest.raises(SinkError) as caught:
            use()
        assert str(caught.value) == message
    sink.close()


def test_build_sinks_closes_what_it_built_when_a_later_sink_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed: list[str] = []

    class Recording(FileSink):
        def close(self) -> None:
            closed.append(self.name)

    monkeypatch.setitem(SINKS, "file", Recording.from_settings)
    with pytest.raises(SinkError, match="'second'"):
        build_sinks(
            {"first": {"type": "file", "path": str(tmp_path / "a.json")}, "second": {"type": "?"}}, {}
        )
    assert closed == ["first"]


def test_permissions_of_the_lock_file(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    file_sink(path).deliver(RECORD, SECRET)
    assert stat.S_IMODE(os.stat(tmp_path / ".secrets.json.lock").st_mode) == 0o600
