"""What one search found: accepted matches, the plausible views that compete with them, and the answer.

A search verifies candidates one by one (from the exact index, the word index, then the second pass) and
reports each plausible view here. The answer is decided once, at the end:

* a match is returned only if no *other* target made a plausible view over the same place in the photo
  (:func:`imagecloud.recognition.acceptance.competing`): then the photo shows something several targets
  share, and no identifier is right;
* several matches are ordered by :func:`imagecloud.recognition.prominence.prominence`, so the print in
  front of the camera comes first, not the one with the most correspondences.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from imagecloud.recognition.acceptance import Assessment, competing
from imagecloud.recognition.prominence import prominence


@dataclass(frozen=True, eq=False)
class View:
    """A plausible view of one target in the photo, accepted or not."""

    key: tuple[int, int]  # (scope, target id)
    entry: int  # the index entry it came from (negative for the word index)
    corners: np.ndarray  # (4, 2) photo pixels
    assessment: Assessment


@dataclass
class Findings:
    overlap: float
    views: list[View] = field(default_factory=list)

    def add(self, view: View) -> None:
        self.views.append(view)

    @property
    def accepted(self) -> int:
        """Distinct targets accepted so far (before the competition check)."""
        return len({v.key for v in self.views if v.assessment.accepted})

    @property
    def evidence(self) -> bool:
        """Some target made a plausible view: worth a closer look if nothing was accepted."""
        return bool(self.views)

    def answers(self, width: int, height: int) -> list[View]:
        """Accepted views without a competitor, one per target, most prominent first."""
        best: dict[tuple[int, int], View] = {}
        for view in self.views:
            if not view.assessment.accepted:
                continue
            if any(
                other.key != view.key and competing(view.corners, other.corners, self.overlap)
                for other in self.views
            ):
                continue
            kept = best.get(view.key)
            if kept is None or view.assessment.score > kept.assessment.score:
                best[view.key] = view
        return sorted(best.values(), key=lambda v: -prominence(v.corners.tolist(), width, height))
