"""Persistence: the relational database (SQLAlchemy + Alembic) and the blob store for original uploads."""

from imagecloud.storage.blobs import BlobStore, LocalBlobStore
from imagecloud.storage.database import Database
from imagecloud.storage.models import (
    AppKey,
    Channel,
    MatchCount,
    SearchCount,
    Target,
    TargetFeatures,
    User,
)

__all__ = [
    "AppKey",
    "BlobStore",
    "Channel",
    "Database",
    "LocalBlobStore",
    "MatchCount",
    "SearchCount",
    "Target",
    "TargetFeatures",
    "User",
]
