"""Index shards on a Ray cluster: several API servers share one index, split by channel over several boxes.

* :mod:`imagecloud.cluster.placement`: which shard holds a channel (a stable rule every process computes).
* :mod:`imagecloud.cluster.shard`: one shard, an in-process index of its channels loaded from the database.
* :mod:`imagecloud.cluster.recognizer`: what an API server uses instead of its own index; it routes adds
  and removes to the owning shard and scatter-gathers searches.

Ray is imported only by the last, and only when a server is started with a cluster.
"""
