"""Tiny benchmark data sets made from generated posters, laid out like the SMVS sets."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import pytest

from imagecloud.bench.synthetic import Condition, synthesize
from tests import imagegen


def generated_set(
    factory: pytest.TempPathFactory,
    targets: int,
    distractor_seeds: Sequence[int],
    conditions: tuple[Condition, ...],
) -> Path:
    """``targets`` posters (seeds 0…) photographed under ``conditions``, and one distractor per seed."""
    images = factory.mktemp("images")
    for seed in range(targets):
        cv2.imwrite(str(images / f"poster{seed}.png"), imagegen.poster(seed))
    distractors = factory.mktemp("distractors")
    for seed in distractor_seeds:
        cv2.imwrite(str(distractors / f"other{seed}.jpg"), imagegen.poster(seed))
    out = factory.mktemp("set")
    synthesize(images, out, conditions=conditions, distractors=distractors)
    return out
