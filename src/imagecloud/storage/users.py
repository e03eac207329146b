"""The queries behind users (API accounts), so the use cases never write SQL for them."""

from __future__ import annotations

from sqlalchemy import delete as sa_delete
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from imagecloud.storage.models import User


def by_name(session: Session, name: str) -> User | None:
    return session.scalar(select(User).where(User.name == name))


def exists(session: Session, name: str) -> bool:
    return session.scalar(select(User.id).where(User.name == name)) is not None


def insert(session: Session, name: str, key_hash: str) -> None:
    session.add(User(name=name, key_hash=key_hash))


def set_key_hash(session: Session, name: str, key_hash: str) -> bool:
    """Replace a user's key; False when there is no such user."""
    done = session.execute(update(User).where(User.name == name).values(key_hash=key_hash))
    return bool(done.rowcount)  # type: ignore[attr-defined]


def delete(session: Session, name: str) -> None:
    """Remove a user with everything it owns (channels, targets, keys cascade)."""
    session.execute(sa_delete(User).where(User.name == name))
