"""The queries behind app keys, so the use cases never write SQL for them."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from imagecloud.storage.models import AppKey


def insert(
    session: Session, user_id: int, name: str, key_hash: str, channels: Sequence[str] | None
) -> AppKey:
    key = AppKey(
        user_id=user_id,
        name=name,
        key_hash=key_hash,
        channels=",".join(channels) if channels else None,
    )
    session.add(key)
    session.flush()
    return key


def exists(session: Session, user_id: int, name: str) -> bool:
    found = session.scalar(select(AppKey.id).where(AppKey.user_id == user_id, AppKey.name == name))
    return found is not None


def by_hash(session: Session, user_id: int, key_hash: str) -> AppKey | None:
    # The hash of a 32-byte random key: looking it up by value leaks nothing a timing attack could use.
    return session.scalar(select(AppKey).where(AppKey.user_id == user_id, AppKey.key_hash == key_hash))


def of_user(session: Session, user_id: int) -> list[AppKey]:
    return list(session.scalars(select(AppKey).where(AppKey.user_id == user_id).order_by(AppKey.name)))


def remove(session: Session, user_id: int, name: str) -> bool:
    done = session.execute(delete(AppKey).where(AppKey.user_id == user_id, AppKey.name == name))
    return bool(done.rowcount)  # type: ignore[attr-defined]


def channels_of(key: AppKey) -> list[str]:
    """The channels ``key`` may search; empty when it may search every channel of its owner."""
    return key.channels.split(",") if key.channels else []
