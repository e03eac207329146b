"""With ``index.large = "words"``, a channel that grows past ``large_min_targets`` moves to the word index,
and stays right across restarts.

Real parts: a service on a SQLite file in a temporary folder, generated posters and simulated photos.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from imagecloud.config import Settings
from imagecloud.service import Service, Upload, build_service
from imagecloud.service.recognizer import Recognizer
from tests import imagegen

THRESHOLD = 12
SECRET: dict[str, str] = {}


def _service(data_dir: Path) -> Service:
    service = build_service(
        Settings(
            data_dir=data_dir,
            large_min_targets=THRESHOLD,
            second_pass="off",
            recognition={"index": {"large": "words"}},
        )
    )
    service.start()
    return service


def _recognizer(service: Service) -> Recognizer:
    assert isinstance(service.recognizer, Recognizer)  # the in-process index, which the word tier belongs to
    return service.recognizer


def _upload(data: bytes) -> Upload:
    return Upload(size=len(data), read=lambda: data)


def _add(service: Service, i: int) -> None:
    data = imagegen.encode(imagegen.poster(300 + i))
    body = service.add_image("owner", SECRET["owner"], "big", f"poster{i}", None, _upload(data))
    assert body["identifier"] == f"poster{i}"


def _find(service: Service, i: int) -> str | None:
    view = imagegen.photo(imagegen.poster(300 + i), seed=i, tilt_deg=15.0)
    body = service.find_image(
        "owner", SECRET["owner"], "big", None, _upload(imagegen.encode(view.image, "jpeg", 90))
    )
    identifier = body.get("identifier")
    return str(identifier) if identifier is not None else None


@pytest.fixture(scope="module")
def grown(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("words")
    service = _service(data_dir)
    SECRET["owner"] = service.create_user("owner")
    service.create_channel("big", "owner")
    for i in range(THRESHOLD + 2):
        _add(service, i)
    _recognizer(service).wait_words()
    service.stop()
    return data_dir


def _fresh_copy(grown: Path, tmp_path: Path) -> Path:
    target = tmp_path / "data"
    shutil.copytree(grown, target)
    return target


def test_grown_channel_is_served_by_word_index(grown: Path, tmp_path: Path) -> None:
    service = _service(_fresh_copy(grown, tmp_path))
    assert _recognizer(service).word_scopes(), "the channel should be searched through the word index"
    assert (service.settings.data_dir / "index" / "vocabulary.npz").exists()
    assert [_find(service, i) for i in range(THRESHOLD + 2)] == [f"poster{i}" for i in range(THRESHOLD + 2)]
    # A poster that was never enrolled is not mistaken for any of them.
    other = imagegen.photo(imagegen.poster(999), seed=1, tilt_deg=10.0)
    body = service.find_image("owner", SECRET["owner"], "big", None, _upload(imagegen.encode(other.image)))
    assert "identifier" not in body


def test_add_and_remove_after_promotion_survive_restart(grown: Path, tmp_path: Path) -> None:
    data_dir = _fresh_copy(grown, tmp_path)
    service = _service(data_dir)
    _add(service, 50)
    service.remove_image("owner", SECRET["owner"], "big", "poster3")
    assert _find(service, 50) == "poster50"
    assert _find(service, 3) is None
    # No orderly stop: the saved index predates both changes, and the start must reconcile it.
    service.db.dispose()
    again = _service(data_dir)
    assert _find(again, 50) == "poster50"
    assert _find(again, 3) is None
    assert _find(again, 4) == "poster4"


def test_lost_word_index_is_rebuilt_from_stored_features(grown: Path, tmp_path: Path) -> None:
    data_dir = _fresh_copy(grown, tmp_path)
    shutil.rmtree(data_dir / "index" / "words")
    service = _service(data_dir)
    assert _recognizer(service).word_scopes()
    assert _find(service, 7) == "poster7"
    assert (data_dir / "index" / "words" / "manifest.json").exists()
