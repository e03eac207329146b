"""Settings: the recognition switches keep accepting the values older configurations used, every
recognition tuning value can be overridden from the settings file or the environment, and where the
database is."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from imagecloud.config import Settings, load_settings
from imagecloud.recognition.acceptance import AcceptanceSettings
from imagecloud.recognition.settings import RecognizerSettings


@pytest.mark.parametrize(
    ("given", "meant"),
    [(True, "always"), (False, "off"), ("true", "always"), ("false", "off"), ("evidence", "evidence")],
)
def test_second_pass_values(given: object, meant: str) -> None:
    assert Settings(second_pass=given).second_pass == meant


def test_second_pass_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGECLOUD_SECOND_PASS", "evidence")
    monkeypatch.setenv("IMAGECLOUD_MIN_SCORE", "0.8")
    settings = load_settings()
    assert (settings.second_pass, settings.min_score) == ("evidence", 0.8)


@pytest.mark.parametrize("field", [{"second_pass": "sometimes"}, {"min_score": 1.5}, {"min_score": -0.1}])
def test_bad_values_refused(field: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Settings(**field)  # type: ignore[arg-type]


def test_the_database_defaults_to_the_file_in_the_data_directory(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert settings.resolved_database_url == f"sqlite:///{(tmp_path / 'imagecloud.db').resolve()}"


def test_the_database_from_the_settings_file_the_environment_and_the_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "imagecloud.toml"
    config.write_text('database_url = "postgresql://app@db-file/imagecloud"\n')
    monkeypatch.delenv("IMAGECLOUD_DATABASE_URL", raising=False)
    monkeypatch.setenv("IMAGECLOUD_CONFIG", str(config))
    assert load_settings().resolved_database_url == "postgresql://app@db-file/imagecloud"
    monkeypatch.setenv("IMAGECLOUD_DATABASE_URL", "postgresql://app@db-env/imagecloud")
    assert load_settings().resolved_database_url == "postgresql://app@db-env/imagecloud"
    # What `serve --database` passes.
    flag = load_settings(database_url="postgresql://app@db-flag/imagecloud")
    assert flag.resolved_database_url == "postgresql://app@db-flag/imagecloud"


def test_recognition_defaults_are_the_recognizers() -> None:
    assert Settings().recognizer_settings() == RecognizerSettings()


def test_recognition_values_from_a_settings_file_and_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "settings.toml"
    config.write_text(
        "large_min_targets = 5000\n"
        "[recognition.search]\nshortlist = 12\n"
        "[recognition.search.acceptance]\nmin_coverage = 0.3\n"
        "[recognition.index.exact]\nnprobe = 16\n"
    )
    monkeypatch.setenv("IMAGECLOUD_RECOGNITION__ANALYSIS__QUERY_WORKING_SIZE", "900")
    monkeypatch.setenv("IMAGECLOUD_MIN_SCORE", "0.7")
    monkeypatch.setenv("IMAGECLOUD_CONFIG", str(config))  # as --config sets it, but undone after the test
    recognition = load_settings().recognizer_settings()
    assert recognition.search.shortlist == 12
    assert recognition.search.acceptance == AcceptanceSettings(min_coverage=0.3, min_score=0.7)
    assert recognition.index.exact.nprobe == 16
    assert recognition.index.large_min_targets == 5000
    assert recognition.analysis.query_working_size == 900
    assert recognition.search.second_pass == RecognizerSettings().search.second_pass


def test_the_older_names_win_over_their_paths() -> None:
    settings = Settings(
        second_pass="off", recognition={"search": {"second_pass": "evidence", "competitors": 2}}
    )
    assert (
        settings.recognizer_settings().search.second_pass,
        settings.recognizer_settings().search.competitors,
    ) == (
        "off",
        2,
    )
    assert Settings(
        recognition={"search": {"second_pass": "evidence"}}
    ).recognizer_settings().search.second_pass == ("evidence")


@pytest.mark.parametrize(
    "recognition",
    [
        {"search": {"shortlst": 12}},  # misspelt
        {"search": {"shortlist": "many"}},
        {"search": {"second_pass": "sometimes"}},
        {"search": 12},  # a group given a value
        {"search": {"shortlist": {"a": 1}}},
    ],
)
def test_bad_recognition_values_refused(recognition: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Settings(recognition=recognition)


def test_the_renamed_large_channel_threshold_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "settings.toml"
    config.write_text("words_min_targets = 5000\n")
    monkeypatch.setenv("IMAGECLOUD_CONFIG", str(config))
    with pytest.raises(ValueError, match="large_min_targets"):
        load_settings()
    monkeypatch.delenv("IMAGECLOUD_CONFIG")
    monkeypatch.setenv("IMAGECLOUD_WORDS_MIN_TARGETS", "5000")
    with pytest.raises(ValueError, match="large_min_targets"):
        load_settings()
    monkeypatch.delenv("IMAGECLOUD_WORDS_MIN_TARGETS")
    assert load_settings().recognizer_settings().index.large_min_targets == 100_000
