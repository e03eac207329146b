from __future__ import annotations

import pytest

from tests import imagegen


@pytest.fixture(scope="session")
def target_jpeg() -> bytes:
    return imagegen.encode(imagegen.poster(1), "jpeg")
