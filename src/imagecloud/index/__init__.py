"""Search structures answering 'which stored targets share descriptors with this photo'.

The recognizer only uses ``add``/``remove``/``drop_scope``/``load``/``shortlist``, so a different
structure (e.g. a vocabulary tree for millions of targets) can replace ``BinaryVotingIndex``.
"""

from imagecloud.index.binary import Ballot, BinaryVotingIndex, Candidate, IndexSettings

__all__ = ["Ballot", "BinaryVotingIndex", "Candidate", "IndexSettings"]
