"""Search structures answering 'which stored targets share descriptors with this photo'.

One interface, :class:`Index` (``base``), keyed by target id, with one implementation per representation:
:class:`ExactIndex` (``exact``: every descriptor, voted on by ``binary``'s FAISS segments, saved by
``sealed``), :class:`SubsetIndex` (``subset``: each target's most repeatable descriptors, voted on alike)
and :class:`VisualWordIndex` (``visualwords``: visual words, posted in ``words``). :class:`TieredIndex`
(``tiered``) routes each scope to one of them by its size.
"""

from imagecloud.index.base import Candidate, Index, VotingIndex
from imagecloud.index.binary import Ballot, IndexSettings
from imagecloud.index.exact import ExactIndex
from imagecloud.index.subset import SubsetIndex, SubsetSettings
from imagecloud.index.tiered import TieredIndex, TierSettings
from imagecloud.index.visualwords import VisualWordIndex
from imagecloud.index.words import WordSettings

__all__ = [
    "Ballot",
    "Candidate",
    "ExactIndex",
    "Index",
    "IndexSettings",
    "SubsetIndex",
    "SubsetSettings",
    "TierSettings",
    "TieredIndex",
    "VisualWordIndex",
    "VotingIndex",
    "WordSettings",
]
