"""The benchmark command end to end on a tiny generated data set, in-process and over HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import httpx
import pytest

from imagecloud.bench import recognition
from imagecloud.bench.backends import HttpBackend, InProcessBackend, server_seconds
from imagecloud.bench.dataset import load_dataset, load_negatives
from imagecloud.bench.synthetic import CONDITIONS
from tests import imagegen
from tests.bench.datasets import generated_set
from tests.server import ServerProcess


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rotated = next(c for c in CONDITIONS if c.name == "rotate-90")
    return generated_set(tmp_path_factory, 4, range(100, 104), (CONDITIONS[0], rotated))


def test_in_process_report(dataset_dir: Path, tmp_path: Path) -> None:
    backend = InProcessBackend()
    try:
        report = recognition.run(load_dataset(dataset_dir), backend, tmp_path, distractor_mode="split")
    finally:
        backend.close()
    assert report["enrolled"]["targets"] == 4
    assert report["enrolled"]["distractors"] == 2  # split: even-numbered enrolled, odd-numbered queried
    assert report["queries"]["queries"] == 8
    assert report["queries"]["recall_at_1"] == 1.0
    assert report["queries"]["wrong"] == 0
    assert report["distractor_queries"] == {
        "queries": 2,
        "false_matches": 0,
        "false_match_rate": 0.0,
        "found_itself": 0,
    }
    assert set(report["by_condition"]["condition"]) == {"baseline", "rotate-90"}
    # Recall per level AddImage gave each photo's target: what the level predicts.
    by_level = report["by_condition"]["target level"]
    assert set(by_level) <= {"1", "2", "3", "4", "5"}
    assert sum(v["queries"] for v in by_level.values()) == 8
    assert report["find_latency"]["count"] == 10
    assert report["machine"]["cores"] >= 1
    written = json.loads((tmp_path / "report.json").read_text())
    assert written["queries"] == report["queries"]
    assert "recall@1" in (tmp_path / "report.md").read_text()


def _negative_sets(root: Path) -> tuple[Path, Path]:
    """A split set (posters 200, 201 enrolled; 300, 301 queried) and a plain folder of two photos."""
    split = root / "split"
    (split / "photos").mkdir(parents=True)
    rows = ["photo,class,role"]
    for seed, role in ((200, "enrol"), (201, "enrol"), (300, "query"), (301, "query")):
        cv2.imwrite(str(split / "photos" / f"kind_{seed}.jpg"), imagegen.poster(seed))
        rows.append(f"photos/kind_{seed}.jpg,kind,{role}")
    (split / "split.csv").write_text("\n".join(rows) + "\n")
    plain = root / "plain"
    plain.mkdir()
    for seed in (400, 401):
        cv2.imwrite(str(plain / f"nothing{seed}.jpg"), imagegen.poster(seed))
    return split, plain


def test_negative_sets_reported_apart(dataset_dir: Path, tmp_path: Path) -> None:
    """Each negative set is enrolled (its enrol half) and queried; a false match is counted in its set."""
    split, plain = _negative_sets(tmp_path / "neg")
    # A photo of an enrolled target put among the negatives must show up as that set's false match.
    enrolled_again = plain / "poster1-photo.jpg"
    enrolled_again.write_bytes((dataset_dir / "queries/poster1--baseline.jpg").read_bytes())
    negatives = [load_negatives(split), load_negatives(plain)]
    assert [len(n.enrol) for n in negatives] == [2, 0]
    assert [len(n.queries) for n in negatives] == [2, 3]
    backend = InProcessBackend()
    try:
        report = recognition.run(
            load_dataset(dataset_dir), backend, tmp_path / "out", max_distractors=0, negatives=negatives
        )
    finally:
        backend.close()
    assert report["enrolled"]["accepted"] == 4 + 2
    sets = report["negative_sets"]
    assert set(sets) == {"distractors", "split", "plain"}
    assert (sets["split"]["queries"], sets["split"]["false_matches"], sets["split"]["enrolled"]) == (2, 0, 2)
    assert (sets["plain"]["queries"], sets["plain"]["false_matches"]) == (3, 1)
    assert sets["distractors"]["queries"] == 0
    assert sum(report["scores"]["correct"]) == 8
    assert sum(report["scores"]["wrong"]) == 1
    curve = {row["threshold"]: row for row in report["threshold_curve"]}
    assert curve[0.0]["recall_at_1"] == 1.0 and curve[0.0]["false_matches"] == 1
    assert (tmp_path / "out/failures/plain.poster1-photo.png").exists()
    assert "| plain | 0 | 3 | 1 (33.3%)" in (tmp_path / "out/report.md").read_text()


def test_load_negatives_rejects_unknown_roles(tmp_path: Path) -> None:
    (tmp_path / "split.csv").write_text("photo,class,role\na.jpg,x,train\n")
    with pytest.raises(ValueError, match="role"):
        load_negatives(tmp_path)


def test_failures_get_pictures(dataset_dir: Path, tmp_path: Path) -> None:
    """A target that cannot be enrolled makes its photos fail, and each failure is drawn."""
    dataset = load_dataset(dataset_dir)
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), imagegen.blank())
    broken = dataset.targets | {"poster0": blank}
    backend = InProcessBackend()
    try:
        report = recognition.run(
            type(dataset)(dataset.root, broken, dataset.queries, []), backend, tmp_path / "out"
        )
    finally:
        backend.close()
    assert report["enrolled"]["returncodes"] == {"0": 3, "20013": 1}
    failed = {f["query"] for f in report["failures"]}
    assert failed == {"queries/poster0--baseline.jpg", "queries/poster0--rotate-90.jpg"}
    pictures = sorted(p.name for p in (tmp_path / "out/failures").iterdir())
    assert pictures == ["poster0--baseline.png", "poster0--rotate-90.png"]


def test_over_http_with_server_timing(dataset_dir: Path, server: ServerProcess, tmp_path: Path) -> None:
    account = server.new_account("benchhttp")
    backend = HttpBackend(server.url, account.username, account.secretkey)
    channel = backend.channel
    try:
        report = recognition.run(load_dataset(dataset_dir), backend, tmp_path, max_distractors=0)
    finally:
        backend.close()
    assert report["queries"]["recall_at_1"] == 1.0
    assert 0 < report["find_latency"]["p50_ms"] < 60_000
    listed = server.call("ListChannels", {"username": account.username, "secretkey": account.secretkey})
    assert channel not in [c["channel"] for c in listed["channels"]]  # the benchmark cleans up


class TestServerTiming:
    def test_every_vendor_answer_carries_server_time(self, server: ServerProcess) -> None:
        response = server.post("GetImages", {"username": "nobody", "secretkey": "x", "channel": "c"})
        seconds = server_seconds(response)
        assert seconds is not None and seconds > 0

    @pytest.mark.parametrize(
        ("header", "expected"),
        [
            ("app;dur=12.5", 0.0125),
            ("db;dur=3, app;dur=40", 0.04),
            ("app", None),
            ("app;dur=x", None),
            ("", None),
        ],
    )
    def test_parsing(self, header: str, expected: float | None) -> None:
        response = httpx.Response(200, headers={"server-timing": header} if header else {})
        assert server_seconds(response) == expected


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--negatives", "{missing}"], "holds no JPEG or PNG files"),
        (["--second-pass", "sometimes"], "--second-pass must be one of always, evidence, off"),
    ],
)
def test_cli_refuses_bad_arguments_before_enrolling(
    dataset_dir: Path, tmp_path: Path, args: list[str], reason: str
) -> None:
    from typer.testing import CliRunner

    from imagecloud.cli import app

    args = [a.format(missing=tmp_path / "missing") for a in args]
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["bench", "recognition", str(dataset_dir), "--out", str(out), *args])
    assert result.exit_code == 2
    assert reason in " ".join(result.output.replace("│", " ").split())  # the error box wraps lines
    assert not out.exists()
