"""Database URLs as operators write them."""

from __future__ import annotations

import pytest

from imagecloud.storage.database import engine_url


@pytest.mark.parametrize(
    ("given", "used"),
    [
        (
            "postgresql://app:pw@db.internal:5432/imagecloud",
            "postgresql+psycopg://app:pw@db.internal:5432/imagecloud",
        ),
        ("postgres://app@localhost/imagecloud", "postgresql+psycopg://app@localhost/imagecloud"),
        ("postgresql+psycopg://app@localhost/imagecloud", "postgresql+psycopg://app@localhost/imagecloud"),
        ("sqlite:////var/lib/imagecloud/imagecloud.db", "sqlite:////var/lib/imagecloud/imagecloud.db"),
    ],
)
def test_a_plain_postgresql_url_means_psycopg_3(given: str, used: str) -> None:
    assert engine_url(given) == used
