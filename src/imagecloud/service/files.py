"""The files behind ``imageurl``: originals and their previews, served to anyone who has the URL.

Nothing here needs credentials, so nothing here may cost what owners pay for: originals and stored previews
are file reads; a preview that was never stored (another size, or a target stored without previews) is
rendered once by :meth:`Files.render_thumbnail`, which the API runs in a pool of its own, and then kept.
"""

from __future__ import annotations

from dataclasses import dataclass

from imagecloud.storage import BlobStore, Database, targets
from imagecloud.storage.thumbnails import ThumbnailStore
from imagecloud.vision.thumbnail import thumbnail as render


@dataclass(frozen=True)
class StoredFile:
    """What a response needs before (or instead of) the bytes: HEAD and 304 answers read no file."""

    content_type: str
    size: int


class Files:
    def __init__(self, db: Database, blobs: BlobStore, thumbnails: ThumbnailStore, max_pixels: int) -> None:
        self.db = db
        self.blobs = blobs
        self.thumbnails = thumbnails
        self.max_pixels = max_pixels

    def info(self, blob_key: str) -> StoredFile | None:
        """The original's type and size; None when no target has that key (removed, or never was)."""
        with self.db.session() as session:
            row = targets.file_info(session, blob_key)
        return None if row is None else StoredFile(content_type=row[0], size=row[1])

    def original(self, blob_key: str) -> bytes | None:
        try:
            return self.blobs.get(blob_key)
        except FileNotFoundError:
            return None

    def stored_thumbnail(self, blob_key: str, size: int) -> bytes | None:
        return self.thumbnails.get(blob_key, size)

    def render_thumbnail(self, blob_key: str, size: int) -> bytes | None:
        """Render, keep and return a preview; None when the original is gone."""
        # Requests for the same preview queue up together: all but the first find it made.
        kept = self.thumbnails.get(blob_key, size)
        if kept is not None:
            return kept
        data = self.original(blob_key)
        if data is None:
            return None
        preview = render(data, size=size, max_pixels=self.max_pixels)
        if self.info(blob_key) is None:
            return None  # removed while rendering: keep nothing the sweep would have to find
        self.thumbnails.put(blob_key, size, preview)
        return preview
