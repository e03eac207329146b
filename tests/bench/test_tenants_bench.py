"""`imagecloud bench scale --tenants` end to end on a tiny generated data set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imagecloud.bench import tenants
from imagecloud.bench.synthetic import CONDITIONS
from tests.bench.datasets import generated_set


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generated_set(tmp_path_factory, 4, range(400, 416), CONDITIONS[:1])


def test_one_channel_alone_and_beside_other_owners(dataset_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    report = tenants.run(
        dataset_dir, tmp_path / "work", out, 30, others_per_channel=10, channel_distractors=4, workers=1
    )
    assert report["channel_targets"] == 8 and report["others"] == 30
    for run in report["runs"].values():
        # Every cover photo finds its cover in the channel, and the other owners' targets never answer.
        assert run["recall_at_1"] == 1.0 and run["wrong"] == 0 and run["false_matches"] == 0
        assert run["covers_ms"]["p50"] > 0 and run["nothing_ms"]["p50"] > 0
    assert report["p50_ratio_covers"] > 0 and report["p50_ratio_nothing"] > 0
    assert json.loads((out / "tenants.json").read_text())["others"] == 30
    assert "beside the other owners" in (out / "tenants.md").read_text()
