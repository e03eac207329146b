"""Relational schema. Alembic migrations in ``migrations/versions`` must match these models."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    # sha256 of the secret key, hex. The key itself is shown once and never stored.
    key_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Channel(Base):
    __tablename__ = "channels"
    # Channel and target ids key the search index: they must never be reused after a delete, which plain
    # SQLite rowids would do.
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Channel names are one global namespace (see the contract, section 1).
    name: Mapped[str] = mapped_column(String(64), unique=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    quota: Mapped[int] = mapped_column(Integer)
    # Kept equal to the number of its targets by every transaction that adds or removes one, so that the
    # quota check and totalcount do not count rows (migration 0002 says why).
    target_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Target(Base):
    __tablename__ = "targets"
    __table_args__ = (
        UniqueConstraint("channel_id", "identifier", name="uq_targets_channel_identifier"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"))
    identifier: Mapped[str] = mapped_column(String(50))
    # Stored verbatim as the caller sent it ("metadata" is reserved on declarative classes).
    meta: Mapped[str | None] = mapped_column("metadata", Text, nullable=True)
    level: Mapped[int] = mapped_column(Integer)
    matchratio: Mapped[float] = mapped_column(Float)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    size_bytes: Mapped[int] = mapped_column(Integer)
    content_type: Mapped[str] = mapped_column(String(32))
    # Name of the original upload in the blob store: random, never derived from user input.
    blob_key: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class TargetFeatures(Base):
    """Serialised keypoints + descriptors; the search index is rebuilt from these at startup."""

    __tablename__ = "target_features"

    target_id: Mapped[int] = mapped_column(ForeignKey("targets.id", ondelete="CASCADE"), primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class MatchCount(Base):
    """Successful FindImage answers per UTC day, channel and identifier.

    Keyed by identifier rather than target row so a target's history survives its removal and re-upload.
    """

    __tablename__ = "match_counts"
    __table_args__ = (Index("ix_match_counts_channel_day", "channel_id", "day"),)

    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"), primary_key=True)
    identifier: Mapped[str] = mapped_column(String(50), primary_key=True)
    count: Mapped[int] = mapped_column(Integer)


class AppKey(Base):
    """A search-only key an owner gives to an app or web page (contract §1): it may call FindImage and
    GetImage, on every channel of its owner or only on the listed ones."""

    __tablename__ = "app_keys"
    __table_args__ = (
        UniqueConstraint("user_id", "name", name="uq_app_keys_user_name"),
        Index("ix_app_keys_user_hash", "user_id", "key_hash"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    # sha256 of the key, hex, as for the secret key: the key itself is shown once.
    key_hash: Mapped[str] = mapped_column(String(64))
    # Channel names separated by commas (names cannot hold one); NULL means every channel of the owner,
    # including channels created later.
    channels: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class SearchCount(Base):
    """FindImage calls answered 0 per UTC day, owner and channel searched, and how many found nothing.

    ``channel`` is the name the caller searched, "" for a search of all the owner's channels (contract §4,
    Statistics): those have no one channel to belong to, hence the owner in the key and a name, not an id.
    """

    __tablename__ = "search_counts"

    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    channel: Mapped[str] = mapped_column(String(64), primary_key=True)
    count: Mapped[int] = mapped_column(Integer)
    nomatch: Mapped[int] = mapped_column(Integer)
