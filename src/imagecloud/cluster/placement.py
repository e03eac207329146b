"""Which shard holds a channel: rendezvous (highest random weight) hashing of the channel id.

A channel lives on exactly one shard, so a search of one channel (the common FindImage) is answered by one
shard with the same recall as a single process, and its verification and competition check see every
candidate of the channel. Every process computes the rule from the channel id and the shard count alone,
so API servers and shards agree without asking anyone. Going from ``n`` to ``n + 1`` shards moves only the
channels the new shard wins (about ``1 / (n + 1)`` of them), and no channel moves between old shards.
"""

from __future__ import annotations

import hashlib


def _weight(channel_id: int, shard: int) -> int:
    digest = hashlib.blake2b(f"{channel_id}/{shard}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def shard_of(channel_id: int, shards: int) -> int:
    """The shard (0 to ``shards - 1``) that holds ``channel_id``."""
    if shards < 1:
        raise ValueError("a cluster has at least one shard")
    return max(range(shards), key=lambda shard: _weight(channel_id, shard))
