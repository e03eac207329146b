"""What one search found: accepted matches, the plausible views that compete with them, and the answer.

A search verifies candidates one by one (from each index serving its scopes, then the second pass) and
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
        unrivalled = [
            view
            for view in self.views
            if view.assessment.accepted
            and not any(
                other.key != view.key and competing(view.corners, other.corners, self.overlap)
                for other in self.views
            )
        ]
        return sorted(
            _best_per_target(unrivalled), key=lambda v: -prominence(v.corners.tolist(), width, height)
        )

    def lookalikes(self) -> list[View]:
        """Every accepted view, competitors included, one per target, best score first.

        Not an answer to a photo: two targets fitting the same place are exactly what an owner adding a
        near-duplicate needs to hear about (AddImage's ``similar``), while a search must not pick one.
        """
        accepted = [view for view in self.views if view.assessment.accepted]
        return sorted(_best_per_target(accepted), key=lambda v: -v.assessment.score)


def _best_per_target(views: list[View]) -> list[View]:
    """The highest-scoring view of each target, in the order targets first appear."""
    best: dict[tuple[int, int], View] = {}
    for view in views:
        kept = best.get(view.key)
        if kept is None or view.assessment.score > kept.assessment.score:
            best[view.key] = view
    return list(best.values())
