"""`imagecloud bench representation` end to end on a tiny generated data set: ground truth, rendered
distractors, quantizer, every setting and the extrapolation, so the benchmark cannot rot between runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from imagecloud.bench import representation as rep
from imagecloud.bench.synthetic import CONDITIONS
from tests.bench.datasets import generated_set


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generated_set(tmp_path_factory, 3, range(300, 312), CONDITIONS[:1])


def test_subset_picks_the_most_refound_keypoints() -> None:
    refound = np.array([0, 3, 1, 3, 0, 2], np.int8)
    assert rep.Subset("refound", 3).of(6, refound).tolist() == [1, 3, 5]
    assert rep.Subset("first", 3).of(6, refound).tolist() == [0, 1, 2]
    assert rep.Subset.parse("refound-200") == rep.Subset("refound", 200)
    with pytest.raises(ValueError):
        rep.Subset.parse("best-10")


def test_two_level_quantizer_finds_the_exact_nearest_list_of_its_own_centroids() -> None:
    rng = np.random.default_rng(0)
    sample = rng.integers(0, 256, (3000, rep.CODE), dtype=np.uint8)
    quantizer = rep.TwoLevelQuantizer.train(sample, 64, 8)
    assert quantizer.nlist == 64
    centroids = quantizer.centroids()
    _, lists = quantizer.assign(centroids, 1, 8)  # looking under every top cell: exact
    dist, _ = quantizer.assign(centroids, 1, 8)
    assert (dist[:, 0] == 0).all()
    assert (centroids[lists[:, 0]] == centroids).all()


def test_representation_report(dataset_dir: Path, tmp_path: Path) -> None:
    plan = rep.Plan(
        sizes=(10, 24),
        subsets=(rep.Subset("first", 64), rep.Subset("refound", 64)),
        nprobes=(2, 4),
        ks=(1, 3),
        max_distances=(56,),
        nlist=32,
        top=4,
        scale=1000,
    )
    out = tmp_path / "out"
    sources = [dataset_dir / "distractors"]
    report = rep.run(dataset_dir, sources, tmp_path / "work", out, 24, 6, 1, plan)
    assert report["verified_photos"] == report["photos"] == 3
    assert report["distractor_images"] == 24 and report["rated_distractor_images"] == 6
    pool = [r for r in report["runs"] if r["mode"] == "pool" and r["images"] == 24]
    assert {(r["subset"], r["nprobe"], r["k"]) for r in pool} == {
        (s, n, k) for s in ("first-64", "refound-64") for n in (2, 4) for k in (1, 3)
    }
    for r in pool:
        assert 0 < r["retrieved"] <= r["probed"] <= r["in_subset"] <= 1
        assert r["top20"] == 1.0  # three covers among a few dozen pseudo-targets
    assert {r["mode"] for r in report["runs"]} == {"pool", "targets"}
    assert report["matched"] and report["density"]
    assert {(f["code_bytes"], f["nprobe"]) for f in report["fastscan"]} == {
        (32, 16),
        (32, 32),
        (16, 16),
        (16, 32),
    }
    for f in report["fastscan"]:
        assert f["images"] == 24 and f["binary_scan_ms_p50"] > 0 and f["fastscan_scan_ms_p50"] > 0
        assert 0 <= f["agreement"] <= 1
    assert len(report["extrapolated"]) == 8
    written = json.loads((out / "report.json").read_text())
    assert written["plan"]["subsets"] == ["first-64", "refound-64"]
    text = rep.markdown(report)
    assert "| pool | 24 |" in text and "Extrapolated to 1,000 targets" in text
    assert "fast-scan PQ over the descriptor bits" in text
