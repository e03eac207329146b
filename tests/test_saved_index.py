"""The exact index's saved segments: a restart reuses them, and the database decides what they may answer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from imagecloud.index.binary import IndexSettings
from imagecloud.index.tiered import TierSettings
from imagecloud.recognition.settings import RecognizerSettings
from imagecloud.service.recognizer import Recognizer
from tests import imagegen

N_TARGETS = 12
# Small enough that a dozen targets (~1,000 descriptors each) are held in an IVF segment, which is saved.
SETTINGS = RecognizerSettings(index=TierSettings(exact=IndexSettings(ivf_min_rows=2_000)))


@pytest.fixture(scope="module")
def blobs() -> dict[int, bytes]:
    r = Recognizer()
    return {i: r.analyse_target(imagegen.encode(imagegen.poster(300 + i))).features_blob for i in range(20)}


def _started(index_dir: Path, items: dict[int, bytes]) -> Recognizer:
    """A recognizer as the service starts it: loaded from the stored features, saving done."""
    r = Recognizer(SETTINGS, index_dir=index_dir)
    r.load((1, target, blob) for target, blob in items.items())
    r.wait_saved()
    return r


def _found(r: Recognizer, poster: int) -> list[int]:
    view = imagegen.photo(imagegen.poster(300 + poster), seed=poster, tilt_deg=20)
    query = r.analyse_query(imagegen.encode(view.image, "jpeg", 88))
    return [m.target_id for m in r.search(query, [1], max_results=3)]


def test_a_restart_reuses_the_saved_segments(tmp_path: Path, blobs: dict[int, bytes]) -> None:
    stored = {t: blobs[t] for t in range(N_TARGETS)}
    first = _started(tmp_path, stored)
    assert first.restored == 0
    assert list((tmp_path / "exact").glob("*.faiss")), "nothing saved"
    again = _started(tmp_path, stored)
    assert again.restored == N_TARGETS
    assert len(again) == N_TARGETS
    for t in (0, 5, 11):
        assert _found(again, t) == [t]


def test_the_database_overrides_a_stale_save(tmp_path: Path, blobs: dict[int, bytes]) -> None:
    """Since the save: target 3 removed, target 5 given another image, target 12 added."""
    _started(tmp_path, {t: blobs[t] for t in range(N_TARGETS)})
    now = {t: blobs[t] for t in range(N_TARGETS) if t != 3}
    now[5] = blobs[15]
    now[12] = blobs[12]
    r = _started(tmp_path, now)
    assert r.restored == N_TARGETS - 2  # all but the removed and the changed one
    assert len(r) == N_TARGETS
    assert _found(r, 3) == []
    assert _found(r, 5) == []  # its old picture no longer finds it
    assert _found(r, 15) == [5]
    assert _found(r, 12) == [12]
    assert _found(r, 7) == [7]


def test_a_damaged_save_costs_a_rebuild_not_an_answer(tmp_path: Path, blobs: dict[int, bytes]) -> None:
    stored = {t: blobs[t] for t in range(N_TARGETS)}
    _started(tmp_path, stored)
    for path in (tmp_path / "exact").glob("*.faiss"):
        path.write_bytes(path.read_bytes()[:100])
    r = _started(tmp_path, stored)
    assert r.restored == 0
    assert _found(r, 4) == [4]
    # The rebuilt index was saved again, whole.
    assert _started(tmp_path, stored).restored == N_TARGETS


def test_segments_sealed_while_serving_are_saved(tmp_path: Path, blobs: dict[int, bytes]) -> None:
    """Targets added after start-up are sealed into a segment of their own, which is written when sealed."""
    r = Recognizer(
        RecognizerSettings(index=TierSettings(exact=IndexSettings(ivf_min_rows=2_000, flat_max_rows=2_000))),
        index_dir=tmp_path,
    )
    r.load((1, t, blobs[t]) for t in range(4))
    r.wait_saved()
    for t in range(4, N_TARGETS):
        r.add(1, t, blobs[t])
    r.wait_saved()
    again = _started(tmp_path, {t: blobs[t] for t in range(N_TARGETS)})
    assert again.restored >= N_TARGETS - 2  # the last few rows may still be exact (unsealed) ones
    assert _found(again, 9) == [9]


def test_new_entries_never_reuse_a_number_the_saved_segments_hold(
    tmp_path: Path, blobs: dict[int, bytes]
) -> None:
    """A segment written while a removal was under way holds rows of an entry it has no target for (saved
    with target -1). A target indexed at the next start must not get that entry's number, or it would be
    hidden with the removed rows."""
    _started(tmp_path, {t: blobs[t] for t in range(N_TARGETS)})
    (labels,) = (tmp_path / "exact").glob("*.npz")
    with np.load(labels) as z:
        saved = dict(z)
    newest = int(saved["entries"].argmax())
    assert saved["targets"][newest] == N_TARGETS - 1
    saved["targets"][newest] = -1
    with open(labels, "wb") as f:
        np.savez(f, **saved)
    now = {t: blobs[t] for t in range(N_TARGETS - 1)}
    now[N_TARGETS] = blobs[N_TARGETS]
    again = _started(tmp_path, now)
    assert again.restored == N_TARGETS - 1
    assert _found(again, N_TARGETS) == [N_TARGETS]
    assert _found(again, N_TARGETS - 1) == []
