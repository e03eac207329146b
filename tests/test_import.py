"""``imagecloud import``: run as the operator runs it (a subprocess) on a real data directory, with a real
server on that directory to search what was imported, to refuse an in-process import next to it, and to
import through it with ``--url``."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from sqlalchemy import select

from imagecloud import importer
from imagecloud.config import Settings
from imagecloud.service import build_service
from imagecloud.storage import Channel, Target, TargetFeatures
from imagecloud.vision.analysis import Analyser
from tests import imagegen
from tests.api import images
from tests.api.helpers import jpeg
from tests.server import ServerProcess

POSTERS = 16  # images in the folder that can be enrolled
REJECTED = {
    "truncated.jpg": 20007,  # half a JPEG
    "notes.txt": 20007,  # not an image at all
    "bad name.jpg": 20010,  # a space is not allowed in an identifier
    "poster.002.png": 20016,  # the same identifier as poster.002.jpg, which comes first
    "blank.png": 20013,  # nothing to recognise
    "broken.jpg": 20002,  # its metadata sidecar is not JSON
    "huge.jpg": 20006,  # more bytes than AddImage takes
    "bomb.png": 20006,  # a few KiB that decode to 400 million pixels
}


def poster_name(index: int) -> str:
    return f"poster.{index:03d}"


def poster_seed(index: int) -> int:
    return 100 + index


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Enrolable posters (JPEG and PNG, one with metadata) and one file for each way to be rejected."""
    path = tmp_path_factory.mktemp("import-folder")
    for index in range(POSTERS):
        fmt = "png" if index % 4 == 3 else "jpeg"
        suffix = "png" if fmt == "png" else "jpg"
        data = imagegen.encode(imagegen.poster(poster_seed(index)), fmt)
        (path / f"{poster_name(index)}.{suffix}").write_bytes(data)
    (path / "poster.001.json").write_text('{"title": "one"}\n')
    whole = imagegen.encode(imagegen.poster(200))
    (path / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (path / "notes.txt").write_text("not an image\n")
    (path / "bad name.jpg").write_bytes(imagegen.encode(imagegen.poster(201)))
    (path / "poster.002.png").write_bytes(imagegen.encode(imagegen.poster(202), "png"))
    (path / "blank.png").write_bytes(imagegen.encode(imagegen.blank(), "png"))
    (path / "broken.jpg").write_bytes(imagegen.encode(imagegen.poster(203)))
    (path / "broken.json").write_text("{not json")
    (path / "huge.jpg").write_bytes(images.oversize_garbage(6 * 2**20))
    (path / "bomb.png").write_bytes(images.png_bomb())
    (path / ".hidden.jpg").write_bytes(imagegen.encode(imagegen.poster(204)))  # not part of the import
    return path


@dataclass
class Setup:
    data_dir: Path
    username: str
    secretkey: str
    channel: str


def cli(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "imagecloud", *args], capture_output=True, text=True, timeout=300
    )
    if ok:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    """A fresh data directory with a user owning one channel (closed again: see :func:`stored`)."""
    data_dir = tmp_path / "data"
    service = build_service(Settings(data_dir=data_dir))
    try:
        service.db.migrate()
        key = service.create_user("alice")
        service.create_channel("covers", "alice")
    finally:
        service.db.dispose()
    return Setup(data_dir, "alice", key, "covers")


def import_args(setup: Setup, folder: Path, *extra: str) -> list[str]:
    """The import's command line after ``imagecloud``, with two analysis processes."""
    return [
        "import",
        str(folder),
        "--channel",
        setup.channel,
        "--data-dir",
        str(setup.data_dir),
        "--workers",
        "2",
        *extra,
    ]


def run_import(setup: Setup, folder: Path, report: Path, *extra: str, ok: bool = True) -> dict[str, Any]:
    """One in-process import; returns the JSON report."""
    result = cli(
        *import_args(setup, folder, "--report", str(report), *extra),
        ok=ok,
    )
    body: dict[str, Any] = json.loads(report.read_text())
    body["stdout"] = result.stdout
    return body


def codes(report: dict[str, Any]) -> dict[str, int]:
    return {row["file"]: row["returncode"] for row in report["files"] if row["status"] == "rejected"}


@contextmanager
def stored(data_dir: Path) -> Iterator[dict[str, tuple[Target, bytes]]]:
    """Every stored target with its features, read as the operator would. The database is closed again on
    exit: an in-process import refuses to run while another process has it open."""
    service = build_service(Settings(data_dir=data_dir))
    try:
        with service.db.session() as session:
            rows = session.execute(
                select(Target, TargetFeatures.data)
                .join(TargetFeatures, TargetFeatures.target_id == Target.id)
                .join(Channel, Channel.id == Target.channel_id)
                .where(Channel.name == "covers")
            )
            yield {target.identifier: (target, bytes(data)) for target, data in rows}
    finally:
        service.db.dispose()


def blob_files(data_dir: Path) -> set[str]:
    return {p.name for p in (data_dir / "blobs").glob("*/*") if not p.name.endswith(".tmp")}


def previews(data_dir: Path, key: str) -> dict[int, bytes]:
    """The stored previews of one original, by size."""
    found = (data_dir / "thumbnails" / key[:2]).glob(f"{key}-*.jpg")
    return {int(path.stem.rsplit("-", 1)[1]): path.read_bytes() for path in found}


def find(server: ServerProcess, setup: Setup, photo: bytes) -> dict[str, Any]:
    auth = {"username": setup.username, "secretkey": setup.secretkey, "channel": setup.channel}
    return server.call("FindImage", auth, files=jpeg(photo, "photo.jpg"))


def photo_of(index: int, seed: int) -> bytes:
    return imagegen.encode(imagegen.photo(imagegen.poster(poster_seed(index)), seed=seed).image)


class TestInProcess:
    def test_import_rerun_and_search(self, setup: Setup, folder: Path, tmp_path: Path) -> None:
        first = run_import(setup, folder, tmp_path / "first.json")
        assert (first["added"], first["present"], first["interrupted"]) == (POSTERS, 0, False)
        assert codes(first) == REJECTED
        for name, code in REJECTED.items():
            assert f"{code}  {name}:" in first["stdout"]
        posters = {poster_name(i) for i in range(POSTERS)}
        with stored(setup.data_dir) as rows:
            assert set(rows) == posters
            assert rows["poster.001"][0].meta == '{"title": "one"}'
            assert rows["poster.003"][0].content_type == "image/png"
            assert {target.blob_key for target, _ in rows.values()} == blob_files(setup.data_dir)
            levels = {ident: target.level for ident, (target, _) in rows.items()}

        # Run again, report as CSV: everything is there already, the rejected files are rejected again.
        again = cli(
            "import",
            str(folder),
            "--channel",
            setup.channel,
            "--data-dir",
            str(setup.data_dir),
            "--report",
            str(tmp_path / "again.csv"),
        )
        with open(tmp_path / "again.csv", newline="") as handle:
            table = list(csv.DictReader(handle))
        assert {row["file"]: row["status"] for row in table if row["status"] != "rejected"} == {
            f"{poster_name(i)}.{'png' if i % 4 == 3 else 'jpg'}": "present" for i in range(POSTERS)
        }
        assert {
            row["file"]: int(row["returncode"]) for row in table if row["status"] == "rejected"
        } == REJECTED
        assert f"0 added, {POSTERS} skipped (already present), {len(REJECTED)} rejected" in again.stdout
        with stored(setup.data_dir) as rows:
            assert set(rows) == posters

        server = ServerProcess(setup.data_dir)
        server.start()
        try:
            for index, seed in ((0, 31), (1, 32), (7, 33), (POSTERS - 1, 34)):
                body = find(server, setup, photo_of(index, seed))
                assert body["identifier"] == poster_name(index), body
            assert find(server, setup, photo_of(1, 35))["metadata"] == '{"title": "one"}'

            # The same image through AddImage is stored exactly as the import stored it.
            server.operator.create_channel("direct", setup.username)
            data = (folder / "poster.005.jpg").read_bytes()
            auth = {"username": setup.username, "secretkey": setup.secretkey, "channel": "direct"}
            body = server.call("AddImage", {**auth, "identifier": "poster.005"}, files=jpeg(data))
            assert body["returncode"] == 0 and body["level"] == levels["poster.005"]
            with server.operator.db.session() as session:
                pairs = session.execute(
                    select(Target, TargetFeatures.data, Channel.name)
                    .join(TargetFeatures, TargetFeatures.target_id == Target.id)
                    .join(Channel, Channel.id == Target.channel_id)
                    .where(Target.identifier == "poster.005")
                ).all()
            (imported, imported_features), (added, added_features) = (
                (t, bytes(f)) for t, f, _ in sorted(pairs, key=lambda p: p[2] == "direct")
            )
            for column in ("level", "matchratio", "width", "height", "size_bytes", "content_type", "meta"):
                assert getattr(imported, column) == getattr(added, column), column
            assert imported_features == added_features
            # And with the same stored previews, so that showing an imported channel renders nothing.
            assert previews(setup.data_dir, imported.blob_key) == previews(setup.data_dir, added.blob_key)
            assert sorted(previews(setup.data_dir, imported.blob_key)) == [256, 1024]
        finally:
            server.stop()

    def test_a_full_channel_rejects_the_rest(self, setup: Setup, folder: Path, tmp_path: Path) -> None:
        service = build_service(Settings(data_dir=setup.data_dir))
        try:
            service.set_quota(setup.channel, 5)
        finally:
            service.db.dispose()
        report = run_import(setup, folder, tmp_path / "full.json")
        found = codes(report)
        assert report["added"] == 5
        assert sum(1 for name, code in found.items() if name.startswith("poster.0") and code == 20012) == 11
        for name, code in REJECTED.items():
            if code in (20002, 20010, 20016):  # decided before any image work, so before the quota
                assert found[name] == code
            else:  # AddImage checks the quota before the image: 20012 once the channel is full
                assert found[name] in (code, 20012)
        assert found["truncated.jpg"] == 20012  # last in name order: the channel was full by then
        with stored(setup.data_dir) as rows:
            assert len(rows) == 5


def import_command(setup: Setup, folder: Path, *extra: str) -> list[str]:
    """``imagecloud import`` as the operator runs it, for a process the test controls."""
    return [sys.executable, "-m", "imagecloud", *import_args(setup, folder, *extra)]


class TestInterruption:
    def test_sigkill_then_rerun_finishes_the_job(self, setup: Setup, folder: Path, tmp_path: Path) -> None:
        process = subprocess.Popen(
            import_command(setup, folder),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            # A file is written before its row commits, so three files mean at least two committed targets.
            deadline = time.monotonic() + 240
            while len(blob_files(setup.data_dir)) < 3 and process.poll() is None:
                assert time.monotonic() < deadline, "the import wrote nothing"
                time.sleep(0.01)
            process.send_signal(signal.SIGKILL)
        finally:
            process.wait()
        with stored(setup.data_dir) as rows:
            committed = set(rows)
        assert len(committed) >= 2

        rerun = run_import(setup, folder, tmp_path / "rerun.json")
        assert rerun["present"] == len(committed)
        assert rerun["added"] + rerun["present"] == POSTERS
        assert codes(rerun) == REJECTED
        with stored(setup.data_dir) as rows:
            assert set(rows) == {poster_name(i) for i in range(POSTERS)}
            assert all(features for _, features in rows.values())
            keys = {target.blob_key for target, _ in rows.values()}
        assert keys <= blob_files(setup.data_dir)
        # A file written just before the kill has no row; the server removes such files when it starts.
        server = ServerProcess(setup.data_dir)
        server.start()
        server.stop()
        assert blob_files(setup.data_dir) == keys

    def test_ctrl_c_stops_with_an_exact_summary(self, setup: Setup, folder: Path, tmp_path: Path) -> None:
        report = tmp_path / "stopped.json"
        process = subprocess.Popen(
            import_command(setup, folder, "--report", str(report)),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,  # its own process group, which Ctrl-C in a terminal signals as a whole
        )
        try:
            deadline = time.monotonic() + 240
            while len(blob_files(setup.data_dir)) < 3 and process.poll() is None:
                assert time.monotonic() < deadline, "the import wrote nothing"
                time.sleep(0.01)
            os.killpg(process.pid, signal.SIGINT)
            out, _ = process.communicate(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
        assert process.returncode == 130
        assert "interrupted; run the same command again to continue" in out
        stopped = json.loads(report.read_text())
        with stored(setup.data_dir) as rows:
            assert stopped["interrupted"] and stopped["added"] == len(rows) >= 2
            assert {row["identifier"] for row in stopped["files"] if row["status"] == "added"} == set(rows)

        rerun = run_import(setup, folder, tmp_path / "rerun.json")
        assert (rerun["added"], rerun["present"]) == (POSTERS - len(rows), len(rows))


class TestNextToAServer:
    def test_refused_in_process_then_through_the_server(
        self, setup: Setup, folder: Path, tmp_path: Path
    ) -> None:
        server = ServerProcess(setup.data_dir)
        server.start()
        try:
            refused = cli(
                "import", str(folder), "--channel", setup.channel, "--data-dir", str(setup.data_dir), ok=False
            )
            assert refused.returncode == 1
            assert "has the database open" in refused.stderr and "--url" in refused.stderr
            assert blob_files(setup.data_dir) == set()

            def through_server(report: Path) -> dict[str, Any]:
                cli(
                    "import",
                    str(folder),
                    "--channel",
                    setup.channel,
                    "--url",
                    server.url,
                    "--username",
                    setup.username,
                    "--secretkey",
                    setup.secretkey,
                    "--report",
                    str(report),
                )
                body: dict[str, Any] = json.loads(report.read_text())
                return body

            first = through_server(tmp_path / "first.json")
            assert (first["added"], first["present"]) == (POSTERS, 0)
            assert codes(first) == REJECTED
            # Searchable at once: the server indexed every target it stored.
            assert find(server, setup, photo_of(4, 41))["identifier"] == poster_name(4)
            assert find(server, setup, photo_of(1, 42))["metadata"] == '{"title": "one"}'

            again = through_server(tmp_path / "again.json")
            assert (again["added"], again["present"]) == (0, POSTERS)
            assert codes(again) == REJECTED
        finally:
            server.stop()

    def test_wrong_key_or_channel_stops_before_anything(self, setup: Setup, folder: Path) -> None:
        server = ServerProcess(setup.data_dir)
        server.start()
        try:
            for channel, key, words in (
                (setup.channel, setup.secretkey + "x", "20001"),
                ("nosuchchannel", setup.secretkey, "20003"),
            ):
                result = cli(
                    "import",
                    str(folder),
                    "--channel",
                    channel,
                    "--url",
                    server.url,
                    "--username",
                    setup.username,
                    "--secretkey",
                    key,
                    ok=False,
                )
                assert result.returncode == 1 and words in result.stderr
            assert blob_files(setup.data_dir) == set()
        finally:
            server.stop()


def test_unknown_channel_in_process(setup: Setup, folder: Path) -> None:
    result = cli("import", str(folder), "--channel", "nosuch", "--data-dir", str(setup.data_dir), ok=False)
    assert result.returncode == 1 and "nosuch" in result.stderr


def test_a_failure_mid_run_keeps_the_summary_of_what_was_done(tmp_path: Path) -> None:
    """A worker process killed by the system, say: the targets stored before it still count."""

    def enrol(timing: importer.Timing, stop: threading.Event) -> Iterator[importer.Outcome]:
        yield importer.Outcome("a.jpg", "aaa", importer.ADDED, level=3, matchratio=0.1)
        yield importer.Outcome("b.jpg", "bbb", importer.REJECTED, 20013, "image feature insufficient")
        raise RuntimeError("worker died")

    todo = [importer.Candidate(tmp_path / name, name[:1] * 3, None) for name in ("a.jpg", "b.jpg", "c.jpg")]
    console = Console(file=io.StringIO(), soft_wrap=True)
    summary = importer.run("covers", [], todo, enrol, console)
    assert summary.error == "RuntimeError: worker died" and not summary.interrupted
    assert (summary.count(importer.ADDED), len(summary.rejected())) == (1, 1)
    importer.print_summary(summary, console)
    importer.write_report(summary, tmp_path / "report.json")
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["error"] == "RuntimeError: worker died" and report["added"] == 1
    assert "stopped; run the same command again to continue" in console.file.getvalue()  # type: ignore[attr-defined]


class TestLookalikes:
    """Added images that match targets already in the channel are listed, as AddImage's ``similar``."""

    @pytest.fixture
    def folders(self, tmp_path: Path) -> tuple[Path, Path]:
        first, second = tmp_path / "first", tmp_path / "second"
        first.mkdir()
        second.mkdir()
        (first / "old.jpg").write_bytes(imagegen.encode(imagegen.poster(302)))
        # A twin of it: the two compete in a search (a photo finds neither), and both are still listed.
        (first / "old.twin.png").write_bytes(imagegen.encode(imagegen.poster(302), "png"))
        (second / "old.copy.jpg").write_bytes(imagegen.encode(imagegen.poster(302), quality=75))
        (second / "pair.a.jpg").write_bytes(imagegen.encode(imagegen.poster(300)))
        (second / "pair.b.png").write_bytes(imagegen.encode(imagegen.poster(300), "png"))
        (second / "alone.jpg").write_bytes(imagegen.encode(imagegen.poster(301)))
        return first, second

    @staticmethod
    def check(report: dict[str, Any]) -> None:
        similar = {row["identifier"]: row["similar"] for row in report["files"]}
        names = {entry.rsplit(" (", 1)[0] for entry in similar["old.copy"].split(", ")}
        assert names == {"old", "old.twin"}
        assert similar["alone"] == ""
        # Whichever of the pair was stored second names the first.
        pair = sorted([similar["pair.a"], similar["pair.b"]])
        assert pair[0] == "" and pair[1].startswith("pair.")
        assert "looks like old (" in report["stdout"]

    def test_photo_analysis_only_for_the_search(
        self, folders: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An import without the look-alike search (``--no-similar``) does not analyse images as photos."""
        monkeypatch.setattr(importer, "_worker_analyser", Analyser())
        path = str(folders[0] / "old.jpg")
        searched = importer._analyse(path, 10_000_000, True)
        plain = importer._analyse(path, 10_000_000, False)
        assert isinstance(searched, importer._Analysed) and isinstance(plain, importer._Analysed)
        assert searched.query is not None and len(searched.query.features) > 100
        assert plain.query is None
        assert plain.analysis.features_blob == searched.analysis.features_blob

    def test_in_process(self, setup: Setup, folders: tuple[Path, Path], tmp_path: Path) -> None:
        first, second = folders
        run_import(setup, first, tmp_path / "first.json")
        self.check(run_import(setup, second, tmp_path / "second.json"))

    def test_through_a_server(self, setup: Setup, folders: tuple[Path, Path], tmp_path: Path) -> None:
        first, second = folders
        run_import(setup, first, tmp_path / "first.json")
        server = ServerProcess(setup.data_dir)
        server.start()
        try:
            report = tmp_path / "second.json"
            result = cli(
                *["import", str(second), "--channel", setup.channel, "--url", server.url],
                *["--username", setup.username, "--secretkey", setup.secretkey, "--workers", "1"],
                *["--report", str(report)],
            )
            body: dict[str, Any] = json.loads(report.read_text())
            body["stdout"] = result.stdout
            self.check(body)
        finally:
            server.stop()
