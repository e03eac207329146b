"""Settings: the recognition switches keep accepting the values older configurations used."""

from __future__ import annotations

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
