"""The subset index: each target's most repeatable descriptors, compared directly, for large scopes.

The exact index (:mod:`imagecloud.index.exact`) votes with all ~1,000 descriptors of every target and keeps
its features in RAM: ~175 KB per target, too much beyond some ten thousand targets. This index votes with
the same k-nearest-neighbour ballot over only ``keep`` descriptors per target, the ones the rating's
self-test re-found in most of its simulated photos (``Features.repeatability``; ties, and targets stored
without it, in spread order), and keeps no features: verification reads them from storage, as for the word
index. Comparing descriptors keeps what the word index loses (most verified correspondences never share a
visual word), and the self-test picks the descriptors a phone photo re-finds: of the verified
correspondences between the development photos and their covers, a target's 128 most re-found descriptors
hold 24% and its first 128 in spread order 13%; its 200 most re-found hold 34%
(bench/results/scale/representation.md).

A scope this large has tens of millions of rows, so its inverted file has more lists (about 4 sqrt(rows),
up to 65,536), trained in two levels (:mod:`imagecloud.index.quantizer`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imagecloud.index.binary import IndexSettings
from imagecloud.index.exact import ExactIndex
from imagecloud.vision.features import Features


def most_repeatable(features: Features, keep: int) -> np.ndarray:
    """Indices of the ``keep`` keypoints re-found in most self-test views, in their stored (spread) order.

    Ties, and features without self-test counts, go by the stored order, whose every prefix is spread over
    the image.
    """
    n = len(features)
    if features.repeatability is None or n <= keep:
        return np.arange(min(n, keep))
    order = np.lexsort((np.arange(n), -features.repeatability.astype(np.int64)))
    return np.sort(order[:keep])


@dataclass(frozen=True)
class SubsetSettings:
    keep: int = 200  # descriptors indexed per target
    # min_votes: a cover photo draws about a fifth of the exact index's votes from 200 indexed descriptors.
    # At 50,000 targets, counting all votes, the exact index's 8 left 5 of 200 development photos unverified
    # whose cover the vote ranked first or in the top 10 (189 found); 5 and 4 found 194, and 4 settled more
    # of them in the first pass (cover-photo p95 344 -> 132 ms), for 12% more time on photos of nothing
    # (310 -> 348 ms) and no false match among 200 of them; 3 found no more. Counting consistent votes, 3
    # (three quarters of 4, as for the exact index's 6).
    # nprobe: at 50,000 targets, 32 ranked the cover in the top 10 for as many photos as 16 (97.0%).
    index: IndexSettings = field(
        default_factory=lambda: IndexSettings(max_lists=65_536, nprobe=16, ivf_min_rows=60_000, min_votes=3.0)
    )


class SubsetIndex(ExactIndex):
    """An exact index over each target's ``keep`` most repeatable descriptors, keeping no features."""

    def __init__(self, settings: SubsetSettings | None = None, folder: Path | None = None) -> None:
        self.subset = settings or SubsetSettings()
        super().__init__(self.subset.index, folder)

    def _voting_keypoints(self, feats: Features) -> np.ndarray:
        return most_repeatable(feats, self.subset.keep)

    def _kept(self, feats: Features) -> Features | None:
        return None
