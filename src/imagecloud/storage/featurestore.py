"""The stored targets as an index reads them: which exist, and their features.

The database is the source of truth of every index: an index loads itself from here at start-up and reads
the features of candidates it does not keep in RAM. A :class:`FeatureStore` sees either every channel (one
server's in-process index) or only the channels placed on one shard of a cluster
(:mod:`imagecloud.cluster.placement`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np
from sqlalchemy.orm import Session

from imagecloud.storage import channels, targets
from imagecloud.storage.database import Database


class FeatureStore:
    """Read-only view of the stored targets of the channels ``placed`` accepts (every channel when None)."""

    def __init__(self, db: Database, placed: Callable[[int], bool] | None = None) -> None:
        self.db = db
        self.placed = placed

    def census(self) -> tuple[dict[int, int], np.ndarray]:
        """Targets per channel, and every target id."""
        if self.placed is not None:
            live = self.live()
            return dict(Counter(live.values())), np.fromiter(live, np.int64, len(live))
        with self.db.session() as session:
            counts = targets.count_per_channel(session)
            return counts, np.fromiter(targets.all_ids(session), np.int64)

    def live(self) -> dict[int, int]:
        """Every stored target id of these channels, with its channel."""
        with self.db.session() as session:
            return {
                target: channel
                for channel, target in targets.ids_per_channel(session, self._channels(session))
            }

    def stream(
        self, ids: Sequence[int] | None = None, skip_channels: Iterable[int] = ()
    ) -> Iterator[tuple[int, int, bytes]]:
        """(channel id, target id, features) of ``ids`` (every target when None), except ``skip_channels``."""
        with self.db.session() as session:
            if ids is not None or self.placed is None:
                found = targets.indexed_features(session, ids, skip_channels)
            else:
                found = targets.indexed_features(session, None, skip_channels, self._channels(session))
            for channel, target, data in found:
                if self.placed is None or self.placed(channel):
                    yield channel, target, data

    def by_id(self, ids: Sequence[int]) -> dict[int, bytes]:
        """Stored features of those of ``ids`` that exist (verification of candidates read from storage)."""
        with self.db.session() as session:
            return targets.features_by_id(session, ids)

    def _channels(self, session: Session) -> list[int]:
        placed = self.placed
        return sorted(c for c in channels.all_ids(session) if placed is None or placed(c))
