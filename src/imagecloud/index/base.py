"""The interface every index implements: which stored targets share descriptors with a photo.

An index holds targets, each a target id in one scope (a channel) with its stored features (the blob
:meth:`imagecloud.vision.features.Features.to_bytes` writes), and answers a search over some scopes with
ranked candidates. Verifying and accepting them is not its business (:mod:`imagecloud.recognition`).

Everything crossing the interface is plain data (ids, bytes, NumPy arrays, small frozen dataclasses) and
no method calls back into its caller, so an index can live in another process or on another machine, one
per shard, with the caller merging the shards' candidates. Every method is thread-safe: searches run
while targets are added and removed. An index made with a folder keeps itself there between runs
(:meth:`Index.save`, :meth:`Index.restore`); the database stays the source of truth, and a lost or stale
folder costs indexing time, never a wrong answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from imagecloud.index.binary import Ballot
from imagecloud.vision.features import Features


@dataclass(frozen=True)
class Candidate:
    """A target worth verifying; ``score`` ranks candidates of one index and one search only."""

    target: int
    scope: int
    score: float
    votes: float = 0.0  # of a voting index: all votes (``score`` is the consistent ones)


@runtime_checkable
class Index(Protocol):
    def add(self, scope: int, target: int, features: bytes) -> None:
        """Make ``target`` searchable in ``scope``; the same id again replaces its features."""

    def remove(self, target: int) -> None:
        """From its return on, no search answers ``target``."""

    def drop_scope(self, scope: int) -> None:
        """Remove every target of ``scope``."""

    def load(self, items: Iterable[tuple[int, int, bytes]]) -> None:
        """Bulk :meth:`add` of ``(scope, target, features)`` (start-up); reuses what :meth:`restore` read."""

    def search(self, photo: Features, scopes: Sequence[int], limit: int) -> list[Candidate]:
        """At most ``limit`` targets of ``scopes``, most similar to this photo's features first."""

    def features(self, targets: Sequence[int]) -> dict[int, Features]:
        """The features of those of ``targets`` whose features this index keeps in RAM (maybe none)."""

    def holds(self, target: int) -> bool:
        """Whether ``target`` is searchable (not removed since it was added)."""

    def save(self) -> None:
        """Write the index to its folder, if it has one."""

    def restore(self, live: np.ndarray) -> np.ndarray:
        """Read back what the folder holds, keeping only targets in ``live`` (the ids that exist).

        Returns the ids of ``live`` whose features the caller must pass to :meth:`load`.
        """

    def wait_idle(self) -> None:
        """Block until background upkeep is done (tests, benchmarks, orderly shutdown)."""

    def __len__(self) -> int:
        """Targets held."""

    def memory_bytes(self) -> int:
        """Approximate RAM held."""


@runtime_checkable
class VotingIndex(Index, Protocol):
    """An index whose scores are votes that add up over disjoint sets of photo descriptors.

    A search can then vote with a few descriptors first and pay for the rest only when it has to: the
    ballots of the two rounds add up to the ballot of one round over all of them.
    """

    def vote(self, descriptors: np.ndarray, geometry: np.ndarray, scopes: Sequence[int]) -> Ballot:
        """The votes of these photo descriptors, whose keypoints have this geometry
        (:func:`imagecloud.index.binary.keypoint_geometry`); ballots of one index add with ``+``."""

    def ranked(self, ballot: Ballot, limit: int) -> list[Candidate]:
        """The ``limit`` best targets of a ballot, most consistent votes first; ``score`` is the consistent
        votes, ``votes`` all of them."""

    @property
    def min_votes(self) -> float:
        """Votes (from all of a photo's descriptors) below which a candidate is not worth verifying; the
        votes a target can draw grow with the descriptors indexed per target."""
