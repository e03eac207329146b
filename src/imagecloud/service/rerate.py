"""``imagecloud rerate``: give every stored target the level and matchratio the current rating gives.

A target keeps the rating it got at upload, so after the rating changes (new self-test views, new bands) the
stored levels no longer mean what the documentation says. This computes them again from each target's
original, a page at a time, and changes nothing else: features, the index and identifiers stay as they are,
since the rating takes no part in search. The server may keep running; a target whose image is replaced or
that is removed meanwhile is left to the new upload.

A target the current rating would refuse is kept (it was accepted, and apps may depend on it) at level 1 with
matchratio 0, and listed so that its owner can replace it with a better image.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from imagecloud.errors import FeatureInsufficient, ImageCloudError
from imagecloud.storage import targets
from imagecloud.storage.blobs import BlobStore
from imagecloud.storage.database import Database
from imagecloud.vision.analysis import Analyser

_PAGE = 100


@dataclass
class Rerated:
    """What a rerate did."""

    rated: int = 0
    moves: Counter[tuple[int, int]] = field(default_factory=Counter)  # (old level, new level) -> targets
    refused: list[tuple[str, str]] = field(default_factory=list)  # (channel, identifier) under today's bar
    skipped: list[tuple[str, str, str]] = field(default_factory=list)  # (channel, identifier, why)

    @property
    def changed(self) -> int:
        return sum(n for (old, new), n in self.moves.items() if old != new)


def rerate(
    db: Database,
    blobs: BlobStore,
    analyser: Analyser,
    channel_id: int | None = None,
    progress: Callable[[int], None] = lambda done: None,
) -> Rerated:
    """Rate every target (or one channel's) again and store the result; see the module docstring."""
    done = Rerated()
    after = 0
    while True:
        with db.session() as session:
            page = targets.ratings_after(session, after, _PAGE, channel_id)
        if not page:
            return done
        rated: list[tuple[tuple[int, str, str, str, int, float], int, float, bool]] = []  # row, new rating
        for row in page:
            _, channel, identifier, key, _, _ = row
            try:
                data = blobs.get(key)
            except FileNotFoundError:
                done.skipped.append((channel, identifier, "original missing"))
                continue
            try:
                analysis = analyser.analyse_target(data)
            except FeatureInsufficient:
                rated.append((row, 1, 0.0, True))
            except ImageCloudError as error:  # an original that no longer decodes under today's limits
                done.skipped.append((channel, identifier, error.wire_message))
            else:
                rated.append((row, analysis.level, analysis.matchratio, False))
        with db.session() as session:
            for (target_id, channel, identifier, key, old, _), level, ratio, refused in rated:
                if targets.set_rating(session, target_id, key, level, ratio):
                    done.rated += 1
                    done.moves[(old, level)] += 1
                    if refused:
                        done.refused.append((channel, identifier))
        after = page[-1][0]
        progress(done.rated)
