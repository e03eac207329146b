"""`imagecloud bench scale` end to end on a tiny generated data set: corpus, vocabulary, saved word index,
and the measuring processes, so the benchmark cannot rot between the long runs."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import pytest

from imagecloud.bench import scale
from imagecloud.bench.dataset import load_negatives
from imagecloud.bench.synthetic import CONDITIONS
from tests import imagegen
from tests.bench.datasets import generated_set


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generated_set(tmp_path_factory, 4, range(300, 316), CONDITIONS[:1])


def test_render_sources(dataset_dir: Path, tmp_path: Path) -> None:
    enrol_half = scale.render_sources(dataset_dir, [])
    assert len(enrol_half) == 8  # the first half of the 16 distractor photos; the rest are queried
    extra = tmp_path / "photos"
    extra.mkdir()
    (extra / "a.jpg").write_bytes((dataset_dir / "distractors" / enrol_half[0].name).read_bytes())
    assert scale.render_sources(dataset_dir, [extra]) == [extra / "a.jpg", *enrol_half]
    with pytest.raises(ValueError, match="no JPEG or PNG"):
        scale.render_sources(dataset_dir, [tmp_path / "mistyped"])


def test_scale_report(dataset_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    report = scale.run(
        dataset_dir, tmp_path / "work", out, [60], real=40, workers=1, mixed_seconds=0.5, baseline=20
    )
    runs = {(r["targets"], r["index"]): r for r in report["runs"]}
    assert set(runs) == {(20, "exact"), (60, "words")}  # no exact run past the real distractors
    words = runs[(60, "words")]
    # 4 planted covers, 40 analysed distractors, the rest word-level variants.
    assert (words["real_distractors"], words["variant_distractors"]) == (40, 16)
    for run in runs.values():
        assert run["wrong"] == 0 and run["false_matches"] == 0
        assert run["distractor_queries"] == 8  # the second half of the 16 distractor photos
    assert runs[(20, "exact")]["recall_at_1"] == 1.0
    assert words["recall_at_1"] == 1.0
    assert words["word_rank_topk"]["1"] == 1.0
    assert words["posting_stats"]["targets"] == 60
    assert words["index_disk_bytes"] > 0
    mixed = words["mixed_load"]
    assert mixed["adds_per_second"] > 0 and mixed["p99_ratio"] > 0
    written = json.loads((out / "report.json").read_text())
    assert [r["targets"] for r in written["runs"]] == [20, 60]
    assert "| 60 | words |" in (out / "report.md").read_text()


def _subset_run(dataset_dir: Path, tmp_path: Path, **kwargs: Any) -> dict[str, Any]:
    """``bench scale`` of 30 targets on the subset index alone, into ``tmp_path``'s work and report."""
    return scale.run(
        dataset_dir,
        tmp_path / "work",
        tmp_path / "report",
        [30],
        real=40,
        workers=1,
        exact=False,
        large=("subset",),
        **kwargs,
    )


def test_scale_report_on_the_subset_index(dataset_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    report = _subset_run(dataset_dir, tmp_path, mixed_seconds=0.5)
    (run,) = report["runs"]
    assert (run["targets"], run["index"]) == (30, "subset")
    assert (run["real_distractors"], run["variant_distractors"]) == (26, 0)
    assert run["recall_at_1"] == 1.0 and run["wrong"] == 0 and run["false_matches"] == 0
    assert run["mixed_load"]["adds_per_second"] > 0
    assert not (tmp_path / "work" / "vocabulary.npz").exists()  # no word index was asked for
    assert "| 30 | subset |" in (out / "report.md").read_text()


def test_settings_reach_the_measuring_process_and_get_their_own_index_folder(
    dataset_dir: Path, tmp_path: Path
) -> None:
    settings = scale.settings_from(["index.subset.keep=150", "search.shortlist = 12"])
    assert settings == {"index": {"subset": {"keep": "150"}}, "search": {"shortlist": "12"}}
    run_subset = partial(_subset_run, dataset_dir, tmp_path, mixed_seconds=0)
    with pytest.raises(ValueError, match="unknown recognition setting"):
        run_subset(settings={"index": {"nope": "1"}})
    report = run_subset(settings=settings)
    (run,) = report["runs"]
    assert run["settings"] == settings  # applied (and so checked) in the measuring process
    assert run["recall_at_1"] == 1.0
    folder = scale.index_folder(tmp_path / "work", 30, settings)
    assert folder != scale.index_folder(tmp_path / "work", 30) and (folder / "meta.json").exists()
    assert "`index.subset.keep` = '150'" in (tmp_path / "report" / "report.md").read_text()
    with pytest.raises(ValueError, match="PATH=VALUE"):
        scale.settings_from(["top_probe"])


def test_negative_sets_are_enrolled_among_the_distractors_and_queried(
    dataset_dir: Path, tmp_path: Path
) -> None:
    """A set's enrol photos take distractors' places in the channel; its queries are counted per set. A
    query that is an enrol photo itself must come back as that set's false match: it proves both."""
    split = tmp_path / "kinds"
    (split / "photos").mkdir(parents=True)
    for seed in (200, 201, 300):
        cv2.imwrite(str(split / "photos" / f"kind_{seed}.jpg"), imagegen.poster(seed))
    (split / "photos" / "kind_200_again.jpg").write_bytes((split / "photos" / "kind_200.jpg").read_bytes())
    rows = ["photo,class,role", "photos/kind_200.jpg,kind,enrol", "photos/kind_201.jpg,kind,enrol"]
    rows += ["photos/kind_300.jpg,kind,query", "photos/kind_200_again.jpg,kind,query"]
    (split / "split.csv").write_text("\n".join(rows) + "\n")
    negatives = [load_negatives(split)]
    with pytest.raises(ValueError, match="leave words out"):
        scale.run(
            dataset_dir,
            tmp_path / "w",
            tmp_path / "r",
            [30],
            real=40,
            workers=1,
            mixed_seconds=0,
            exact=False,
            negatives=negatives,
        )
    report = _subset_run(dataset_dir, tmp_path, mixed_seconds=0, negatives=negatives)
    (run,) = report["runs"]
    assert run["recall_at_1"] == 1.0 and run["false_matches"] == 0
    assert run["real_distractors"] == 30 - 4 - 2  # the covers and the enrolled photos take their places
    (kinds,) = run["negative_sets"]
    assert (kinds["set"], kinds["enrolled"], kinds["queries"], kinds["false_matches"]) == ("kinds", 2, 2, 1)
    assert kinds["find_ms"]["p50"] > 0
    (answer,) = kinds["answered"]  # the enrol photo's copy, answered with the enrol photo's id
    assert answer["photo"].endswith("kind_200_again.jpg") and answer["target"] == scale.NEGATIVE_BASE
    assert scale.index_folder(tmp_path / "work", 30, None, "subset", ["kinds"]) != scale.index_folder(
        tmp_path / "work", 30
    )
    assert "| 30 | subset | kinds | 2 | 2 | 1 (50.0%) |" in (tmp_path / "report" / "report.md").read_text()


@pytest.mark.parametrize(
    ("setting", "reason"),
    [
        ("top_probe", "a setting is PATH=VALUE"),
        ("index.nope=1", "unknown recognition setting index.nope"),
        ("index.subset.keep=many", "recognition setting index.subset.keep"),
    ],
)
def test_cli_refuses_a_bad_setting_before_any_work(
    dataset_dir: Path, tmp_path: Path, setting: str, reason: str
) -> None:
    from typer.testing import CliRunner

    from imagecloud.cli import app

    work, out = tmp_path / "work", tmp_path / "out"
    args = ["bench", "scale", str(dataset_dir), "--work", str(work), "--out", str(out), "--setting", setting]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert reason in " ".join(result.output.replace("│", " ").split())  # the error box wraps lines
    assert not work.exists() and not out.exists()


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        (["--negatives", "{missing}", "--large", "subset"], "holds no JPEG or PNG files"),
        (["--negatives", "{dataset}/distractors"], "measured on the exact and subset indexes"),
    ],
)
def test_cli_refuses_bad_negatives_before_any_work(
    dataset_dir: Path, tmp_path: Path, extra: list[str], reason: str
) -> None:
    from typer.testing import CliRunner

    from imagecloud.cli import app

    work, out = tmp_path / "work", tmp_path / "out"
    fill = {"missing": str(tmp_path / "missing"), "dataset": str(dataset_dir)}
    args = ["bench", "scale", str(dataset_dir), "--work", str(work), "--out", str(out)]
    result = CliRunner().invoke(app, args + [a.format(**fill) for a in extra])
    assert result.exit_code == 2
    assert reason in " ".join(result.output.replace("│", " ").split())  # the error box wraps lines
    assert not work.exists() and not out.exists()
