"""Settings: the recognition switches keep accepting the values older configurations used; where the
database is."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from imagecloud.config import Settings, load_settings


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
