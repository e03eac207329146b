"""Persistence: the relational database (SQLAlchemy + Alembic) and the blob store for original uploads.

The use cases reach the database only through the query modules here (``users``, ``channels``,
``targets``, ``matches``, ``searches``, ``appkeys``), each a few functions taking a session: whatever a
backend needs (SQLite or PostgreSQL, see ``dialects``) stays in this package.
"""

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
