"""What a test does when this machine lacks a part it needs (a database server, S3, Ray, a browser)."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def missing(reason: str, require_env: str) -> NoReturn:
    """Skip, unless ``require_env`` is 1 (CI): a CI run must never go green because a part quietly went
    missing, so there the test fails instead."""
    if os.environ.get(require_env) == "1":
        pytest.fail(f"{reason}; {require_env}=1 forbids skipping")
    pytest.skip(reason)
