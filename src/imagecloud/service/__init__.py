"""Use cases and rules, independent of HTTP."""

from __future__ import annotations

from imagecloud.config import Settings
from imagecloud.service.recognizer import Recognizer
from imagecloud.service.service import ChannelInfo, Service, Upload
from imagecloud.storage import Database, LocalBlobStore
from imagecloud.storage.thumbnails import ThumbnailStore


def build_service(settings: Settings) -> Service:
    """The embedded default wiring: the configured database, local blob folder, in-process recognizer."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return Service(
        settings=settings,
        db=Database(settings.resolved_database_url),
        blobs=LocalBlobStore(settings.resolved_blob_dir),
        recognizer=Recognizer(settings.recognizer_settings(), index_dir=settings.data_dir / "index"),
        previews=ThumbnailStore(settings.data_dir / "thumbnails"),
    )


__all__ = ["ChannelInfo", "Service", "Upload", "build_service"]
