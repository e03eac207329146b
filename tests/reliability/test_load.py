"""Short load run in the default suite: 32 locust users against a small channel (the 10k-target,
5-minute version is `make bench-load`)."""

from __future__ import annotations

from pathlib import Path

from tests.reliability.load import run


def test_32_clients_get_answers_and_lose_no_write(tmp_path: Path) -> None:
    report = run(tmp_path / "data", targets=12, users=32, duration=15, photos=6)
    assert report["errors_other_than_20015"] == 0, report["outcomes"]
    assert all(row["failures"] == 0 for row in report["requests"].values()), report["requests"]
    assert report["adds_acknowledged"] > 0
    assert report["writes_lost"] == 0
    assert report["index_targets_at_end"] == report["rows_at_end"]
    assert report["outcomes"].get("FindImage matched", 0) > 0
    assert report["requests"]["GetImages"]["requests"] > 0
