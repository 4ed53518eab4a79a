"""The journal: open deliveries per project, torn lines, safe permissions."""

from __future__ import annotations

from pathlib import Path

from reconciler.journal import Journal, digest, open_deliveries
from reconciler.secret import Secret


def test_open_deliveries_are_per_project_and_closed_by_delivery(tmp_path: Path) -> None:
    path = tmp_path / "j" / "journal.jsonl"
    one, two = Journal(path, project="P1"), Journal(path, project="P2")
    one.write("create-started", server="s", client="a", sink="f", key="s/a")
    one.write("create-started", server="s", client="b", sink="f", key="s/b")
    two.write("create-started", server="s", client="a", sink="f", key="s/a")
    one.write("delivered", server="s", client="b", sink="f", key="s/b")
    one.close()
    two.close()
    with path.open("a") as stream:
        stream.write('{"event": "delivered", "project": "P1", "server": "s", "cli')  # a crash mid-write
    assert [(d.server, d.client) for d in open_deliveries(path, "P1")] == [("s", "a")]
    assert [(d.server, d.client) for d in open_deliveries(path, "P2")] == [("s", "a")]
    assert open_deliveries(path, "P3") == []
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700


def test_a_rotation_digest_tells_secrets_apart_without_holding_them() -> None:
    before, after = Secret("old-secret-value"), Secret("new-secret-value")
    assert digest(before, "salt") == digest(Secret("old-secret-value"), "salt")
    assert digest(before, "salt") != digest(after, "salt")
    assert digest(before, "salt") != digest(before, "pepper")
    assert "old-secret-value" not in digest(before, "salt")
