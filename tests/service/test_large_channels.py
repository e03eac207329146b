"""A channel that grows past ``large_min_targets`` moves to the large-scale index, the subset index by default
or the word index with ``index.large = "words"``, and stays right across restarts, crashes and a lost index
folder.

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
SECRET: dict[str, str] = {}  # the owner's secret key in each grown data folder, by large index


def _service(data_dir: Path, large: str) -> Service:
    settings = Settings(
        data_dir=data_dir,
        large_min_targets=THRESHOLD,
        second_pass="off",
        recognition={"index": {"large": large}} if large != "subset" else {},  # the subset index by default
    )
    service = build_service(settings)
    service.start()
    return service


def _recognizer(service: Service) -> Recognizer:
    assert isinstance(service.recognizer, Recognizer)  # the in-process index, which the tiers belong to
    return service.recognizer


def _large_scopes(service: Service, large: str) -> set[int]:
    index = _recognizer(service).index
    return index.subset_scopes() if large == "subset" else index.word_scopes()


def _upload(data: bytes) -> Upload:
    return Upload(size=len(data), read=lambda: data)


def _secret(service: Service) -> str:
    return SECRET[_recognizer(service).settings.index.large]


def _add(service: Service, i: int) -> None:
    data = imagegen.encode(imagegen.poster(300 + i))
    body = service.add_image("owner", _secret(service), "big", f"poster{i}", None, _upload(data))
    assert body["identifier"] == f"poster{i}"


def _find(service: Service, i: int) -> str | None:
    view = imagegen.photo(imagegen.poster(300 + i), seed=i, tilt_deg=15.0)
    body = service.find_image(
        "owner", _secret(service), "big", None, _upload(imagegen.encode(view.image, "jpeg", 90))
    )
    identifier = body.get("identifier")
    return str(identifier) if identifier is not None else None


@pytest.fixture(scope="module", params=["subset", "words"])
def large(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def grown(tmp_path_factory: pytest.TempPathFactory, large: str) -> Path:
    data_dir = tmp_path_factory.mktemp(large)
    service = _service(data_dir, large)
    SECRET[large] = service.create_user("owner")
    service.create_channel("big", "owner")
    for i in range(THRESHOLD + 2):
        _add(service, i)
    if large == "subset":
        _recognizer(service).wait_idle()
        assert _large_scopes(service, large), (
            "the channel should have moved to the subset index while serving"
        )
    else:
        _recognizer(service).wait_words()
    service.stop()
    return data_dir


def _fresh_copy(grown: Path, tmp_path: Path) -> Path:
    target = tmp_path / "data"
    shutil.copytree(grown, target)
    return target


def test_grown_channel_is_served_by_the_large_index(grown: Path, tmp_path: Path, large: str) -> None:
    service = _service(_fresh_copy(grown, tmp_path), large)
    scopes = _large_scopes(service, large)
    assert scopes, f"the channel should be searched through the {large} index"
    vocabulary = service.settings.data_dir / "index" / "vocabulary.npz"
    if large == "subset":
        assert _recognizer(service).index.exact.size(next(iter(scopes))) == 0
        assert not vocabulary.exists()  # no word index trained
    else:
        assert vocabulary.exists()
    assert [_find(service, i) for i in range(THRESHOLD + 2)] == [f"poster{i}" for i in range(THRESHOLD + 2)]
    # A poster that was never enrolled is not mistaken for any of them.
    other = imagegen.photo(imagegen.poster(999), seed=1, tilt_deg=10.0)
    body = service.find_image("owner", _secret(service), "big", None, _upload(imagegen.encode(other.image)))
    assert "identifier" not in body


def test_add_and_remove_after_the_move_survive_a_crash(grown: Path, tmp_path: Path, large: str) -> None:
    data_dir = _fresh_copy(grown, tmp_path)
    service = _service(data_dir, large)
    _add(service, 50)
    service.remove_image("owner", _secret(service), "big", "poster3")
    assert _find(service, 50) == "poster50"
    assert _find(service, 3) is None
    # No orderly stop: the saved index predates both changes, and the start must reconcile it.
    service.db.dispose()
    again = _service(data_dir, large)
    assert _find(again, 50) == "poster50"
    assert _find(again, 3) is None
    assert _find(again, 4) == "poster4"


def test_lost_index_is_rebuilt_from_stored_features(grown: Path, tmp_path: Path, large: str) -> None:
    data_dir = _fresh_copy(grown, tmp_path)
    shutil.rmtree(data_dir / "index" / ("words" if large == "words" else ""))
    service = _service(data_dir, large)
    assert _large_scopes(service, large)
    assert _find(service, 7) == "poster7"
    if large == "words":
        assert (data_dir / "index" / "words" / "manifest.json").exists()
