"""The queries behind channels and their target counters, so the use cases never write SQL for them.

A channel row carries ``target_count``, kept equal to its number of targets by the transactions that add
and remove them: the quota check reads one row instead of counting (migration 0002 says why).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from imagecloud.storage import dialects
from imagecloud.storage.models import Channel, User


def by_name(session: Session, name: str) -> Channel | None:
    return session.scalar(select(Channel).where(Channel.name == name))


def owner_of(session: Session, name: str) -> int | None:
    """The owner's user id of channel ``name``; None when there is no such channel."""
    return session.scalar(select(Channel.owner_id).where(Channel.name == name))


def insert(session: Session, name: str, owner_id: int, quota: int) -> Channel:
    channel = Channel(name=name, owner_id=owner_id, quota=quota)
    session.add(channel)
    return channel


def set_quota(session: Session, name: str, quota: int) -> bool:
    """False when there is no such channel."""
    done = session.execute(update(Channel).where(Channel.name == name).values(quota=quota))
    return bool(done.rowcount)  # type: ignore[attr-defined]


def delete_by_id(session: Session, channel_id: int) -> None:
    """The channel with its targets, features and match counts (ON DELETE CASCADE)."""
    session.execute(delete(Channel).where(Channel.id == channel_id))


def listing(session: Session, owner: str | None = None) -> list[tuple[str, str, int, int]]:
    """(name, owner name, quota, targets) of every channel, or of ``owner``'s, in byte order of names."""
    query = (
        select(Channel.name, User.name, Channel.quota, Channel.target_count)
        .join(User, User.id == Channel.owner_id)
        .order_by(dialects.bytewise(session, Channel.name))
    )
    if owner is not None:
        query = query.where(User.name == owner)
    return [
        (str(name), str(user), int(quota), int(count)) for name, user, quota, count in session.execute(query)
    ]


def ids_of_owner(session: Session, owner_id: int, names: Iterable[str] | None = None) -> set[int]:
    """Ids of the owner's channels, or of those among ``names``."""
    query = select(Channel.id).where(Channel.owner_id == owner_id)
    if names is not None:
        query = query.where(Channel.name.in_(sorted(names)))
    return set(session.scalars(query))


def all_ids(session: Session) -> set[int]:
    return set(session.scalars(select(Channel.id)))


def room(session: Session, channel_id: int) -> tuple[int, int] | None:
    """(targets, quota) of the channel as committed now; None when it was deleted."""
    row = session.execute(
        select(Channel.target_count, Channel.quota).where(Channel.id == channel_id)
    ).one_or_none()
    return None if row is None else (int(row[0]), int(row[1]))


def take_slot(session: Session, channel_id: int) -> bool:
    """Count one more target in the channel, in the transaction that inserts it; False when it is full
    (or gone) and nothing changed.

    One statement both checks and counts, so the quota holds with several processes adding to one channel
    on PostgreSQL: the update's row lock serialises them, and one that waited re-reads the row and finds
    the channel full. SQLite serialises whole write transactions, which gives the same.
    """
    taken = session.execute(
        update(Channel)
        .where(Channel.id == channel_id, Channel.target_count < Channel.quota)
        .values(target_count=Channel.target_count + 1)
    )
    return bool(taken.rowcount)  # type: ignore[attr-defined]


def release_slot(session: Session, channel_id: int) -> None:
    """Count one target less, in the transaction that deletes it (an increment in the statement, never a
    value read earlier, so concurrent removals each count)."""
    session.execute(
        update(Channel).where(Channel.id == channel_id).values(target_count=Channel.target_count - 1)
    )
