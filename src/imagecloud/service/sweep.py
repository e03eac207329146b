"""The start-up sweep: files no target row points to, left by a crash between writing and committing.

An add writes the original (fsync'd), then commits the row; a crash in between leaves a file without a
row. Such a file is garbage only if no process can still commit a row for it. With the data directory's
lock held (:mod:`imagecloud.storage.lock`) no other process adds targets, so every unreferenced file is
garbage. Without it (a read-only command, or servers sharing a database and blob store) another process
may be between the two steps of an add right now, so only files older than ``grace`` seconds, far longer
than any add takes between its file and its commit, are removed. A blob store other servers may write to
(an S3 bucket) is swept that way even under the lock: the lock covers this data directory, not the bucket.
"""

from __future__ import annotations

import logging
import time

from imagecloud.storage import BlobStore, Database, targets
from imagecloud.storage.thumbnails import ThumbnailStore

log = logging.getLogger(__name__)

# An add commits within seconds of writing its file (SQLite waits at most 10 s for a write lock).
GRACE_SECONDS = 3600.0


def collect_orphans(
    db: Database,
    blobs: BlobStore,
    thumbnails: ThumbnailStore,
    *,
    exclusive: bool,
    grace: float = GRACE_SECONDS,
    now: float | None = None,
) -> int:
    """Remove unreferenced originals and previews (all of them if ``exclusive``, else the old ones).

    ``now`` (epoch seconds) is the time the ages are counted from; by default the current time.
    """
    # Listed before the rows are read: a file written after the listing is never considered, and one
    # listed whose row commits before the read is known.
    old = (time.time() if now is None else now) - grace
    cutoff = float("inf") if exclusive else old
    blob_cutoff = old if blobs.shared else cutoff
    listed = list(blobs.keys())
    previews = list(thumbnails.keys())
    with db.session() as session:
        known = targets.blob_keys(session)
    removed = 0
    for key in listed:
        if key in known:
            continue
        try:
            if blobs.modified(key) >= blob_cutoff:
                continue
        except FileNotFoundError:
            continue
        thumbnails.delete(key)
        blobs.delete(key)
        removed += 1
    for key, written in previews:
        if key not in known and written < cutoff:
            thumbnails.delete(key)
    blobs.remove_temporaries(blob_cutoff)
    thumbnails.remove_temporaries(cutoff)
    if removed:
        log.warning("removed %d blob files without a target row", removed)
    return removed
