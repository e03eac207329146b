"""The queries behind targets and their stored features, so the use cases never write SQL for them."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from imagecloud.storage import dialects
from imagecloud.storage.models import Channel, Target, TargetFeatures

# Ids per statement when selecting by id: within SQLite's limit on bound parameters.
_CHUNK = 500
# Rows fetched at a time when streaming features (the index load reads every target's).
_BATCH = 1000


def by_identifier(session: Session, channel_id: int, identifier: str) -> Target | None:
    return session.scalar(
        select(Target).where(Target.channel_id == channel_id, Target.identifier == identifier)
    )


def identifier_taken(session: Session, channel_id: int, identifier: str) -> bool:
    found = session.scalar(
        select(Target.id).where(Target.channel_id == channel_id, Target.identifier == identifier)
    )
    return found is not None


class Duplicate(Exception):
    """The channel got a target with this identifier from another transaction that committed first."""


def insert(session: Session, target: Target, features: bytes) -> int:
    """Store a target row and its features (not committed: the caller's transaction decides); its id.

    Raises :class:`Duplicate` when a concurrent writer took the identifier after the caller checked it
    (PostgreSQL makes the second insert wait for the first and then refuses it); the transaction can then
    only roll back.
    """
    session.add(target)
    try:
        session.flush()
    except IntegrityError as error:
        raise Duplicate(f"identifier {target.identifier!r} exists") from error
    session.add(TargetFeatures(target_id=target.id, data=features))
    session.flush()
    return target.id


def delete_by_id(session: Session, target_id: int) -> bool:
    """The target and its features; False when it was already gone."""
    removed = session.execute(delete(Target).where(Target.id == target_id))
    return bool(removed.rowcount)  # type: ignore[attr-defined]


def set_meta(session: Session, target_id: int, meta: str | None) -> bool:
    """False when the target was removed meanwhile."""
    done = session.execute(update(Target).where(Target.id == target_id).values(meta=meta))
    return bool(done.rowcount)  # type: ignore[attr-defined]


def identifiers_of(session: Session, channel_id: int) -> set[str]:
    return set(session.scalars(select(Target.identifier).where(Target.channel_id == channel_id)))


def identifiers_by_id(session: Session, channel_id: int, ids: Sequence[int]) -> dict[int, str]:
    """Identifiers of those of ``ids`` that are targets of the channel."""
    rows = session.execute(
        select(Target.id, Target.identifier).where(Target.id.in_(list(ids)), Target.channel_id == channel_id)
    )
    return {int(target_id): str(identifier) for target_id, identifier in rows}


def with_channel_names(session: Session, ids: Sequence[int]) -> dict[int, tuple[Target, str]]:
    """The targets among ``ids`` that still exist, each with its channel's name."""
    rows = session.execute(
        select(Target, Channel.name)
        .join(Channel, Channel.id == Target.channel_id)
        .where(Target.id.in_(list(ids)))
    )
    return {target.id: (target, str(name)) for target, name in rows}


def _prefixed(channel_id: int, prefix: str) -> list[ColumnElement[bool]]:
    where = [Target.channel_id == channel_id]
    if prefix:
        # substr, not LIKE: SQLite's LIKE ignores ASCII case and treats "_" as a wildcard.
        where.append(func.substr(Target.identifier, 1, len(prefix)) == prefix)
    return where


def count_prefixed(session: Session, channel_id: int, prefix: str) -> int:
    """Targets of the channel whose identifier starts with ``prefix``."""
    return session.scalar(select(func.count(Target.id)).where(*_prefixed(channel_id, prefix))) or 0


def page(
    session: Session, channel_id: int, prefix: str, start: int, size: int
) -> list[tuple[str, str | None, float, int, str]]:
    """(identifier, metadata, matchratio, level, blob key) of a page of the channel in byte order of
    identifiers, keeping those that start with ``prefix``."""
    rows = session.execute(
        select(Target.identifier, Target.meta, Target.matchratio, Target.level, Target.blob_key)
        .where(*_prefixed(channel_id, prefix))
        .order_by(dialects.bytewise(session, Target.identifier))
        .offset(start)
        .limit(size)
    )
    return [(ident, meta, ratio, level, key) for ident, meta, ratio, level, key in rows]


def file_info(session: Session, blob_key: str) -> tuple[str, int] | None:
    """(content type, size in bytes) of the original stored under ``blob_key``; None when no target has it."""
    row = session.execute(
        select(Target.content_type, Target.size_bytes).where(Target.blob_key == blob_key)
    ).one_or_none()
    return None if row is None else (str(row[0]), int(row[1]))


def blob_keys(session: Session, channel_id: int | None = None) -> set[str]:
    """Blob keys of every target, or of one channel's."""
    query = select(Target.blob_key)
    if channel_id is not None:
        query = query.where(Target.channel_id == channel_id)
    return set(session.scalars(query))


def count_per_channel(session: Session) -> dict[int, int]:
    """Targets per channel, counted from the rows (the index's census at start)."""
    rows = session.execute(select(Target.channel_id, func.count()).group_by(Target.channel_id))
    return {int(channel): int(count) for channel, count in rows}


def all_ids(session: Session) -> Iterator[int]:
    return (int(target_id) for target_id in session.scalars(select(Target.id)))


def ids_per_channel(session: Session, channel_ids: Sequence[int]) -> Iterator[tuple[int, int]]:
    """(channel id, target id) of every target of those channels."""
    for start in range(0, len(channel_ids), _CHUNK):
        chunk = list(channel_ids[start : start + _CHUNK])
        rows = session.execute(select(Target.channel_id, Target.id).where(Target.channel_id.in_(chunk)))
        yield from ((int(channel), int(target)) for channel, target in rows)


def features(session: Session, target_id: int) -> bytes | None:
    data = session.scalar(select(TargetFeatures.data).where(TargetFeatures.target_id == target_id))
    return None if data is None else bytes(data)


def features_by_id(session: Session, ids: Sequence[int]) -> dict[int, bytes]:
    found: dict[int, bytes] = {}
    for start in range(0, len(ids), _CHUNK):
        rows = session.execute(
            select(TargetFeatures.target_id, TargetFeatures.data).where(
                TargetFeatures.target_id.in_(list(ids[start : start + _CHUNK]))
            )
        )
        found.update((int(target_id), bytes(data)) for target_id, data in rows)
    return found


def indexed_features(
    session: Session,
    ids: Sequence[int] | None = None,
    skip_channels: Iterable[int] = (),
    channel_ids: Sequence[int] | None = None,
) -> Iterator[tuple[int, int, bytes]]:
    """(channel id, target id, features) of the targets among ``ids`` (all when None), except those of
    ``skip_channels``, or else of the channels ``channel_ids``, streamed in batches."""
    if ids is not None:
        for start in range(0, len(ids), _CHUNK):
            yield from _features_where(session, Target.id.in_(list(ids[start : start + _CHUNK])))
        return
    if channel_ids is not None:
        wanted = [c for c in channel_ids if c not in set(skip_channels)]
        for start in range(0, len(wanted), _CHUNK):
            chunk = list(wanted[start : start + _CHUNK])
            yield from _features_where(session, Target.channel_id.in_(chunk))
        return
    skipped = list(skip_channels)
    yield from _features_where(session, Target.channel_id.not_in(skipped) if skipped else None)


def _features_where(session: Session, where: ColumnElement[bool] | None) -> Iterator[tuple[int, int, bytes]]:
    query = select(Target.channel_id, Target.id, TargetFeatures.data).join(
        TargetFeatures, TargetFeatures.target_id == Target.id
    )
    if where is not None:
        query = query.where(where)
    rows = session.execute(query.execution_options(yield_per=_BATCH))
    yield from ((int(channel_id), int(target_id), bytes(data)) for channel_id, target_id, data in rows)


def channel_features(session: Session, channel_id: int) -> Iterator[tuple[int, str, bytes]]:
    """(target id, identifier, features) of every target of a channel, streamed in batches."""
    rows = session.execute(
        select(Target.id, Target.identifier, TargetFeatures.data)
        .join(TargetFeatures, TargetFeatures.target_id == Target.id)
        .where(Target.channel_id == channel_id)
        .execution_options(yield_per=_BATCH)
    )
    yield from ((int(t), str(i), bytes(d)) for t, i, d in rows)


def ratings_after(
    session: Session, after_id: int, limit: int, channel_id: int | None = None
) -> list[tuple[int, str, str, str, int, float]]:
    """(id, channel name, identifier, blob key, level, matchratio) of up to ``limit`` targets with an id above
    ``after_id``, in id order: pages that stay correct while targets are added and removed."""
    query = (
        select(Target.id, Channel.name, Target.identifier, Target.blob_key, Target.level, Target.matchratio)
        .join(Channel, Channel.id == Target.channel_id)
        .where(Target.id > after_id)
        .order_by(Target.id)
        .limit(limit)
    )
    if channel_id is not None:
        query = query.where(Target.channel_id == channel_id)
    return [
        (int(i), str(name), str(ident), str(key), int(level), float(ratio))
        for i, name, ident, key, level, ratio in session.execute(query)
    ]


def set_rating(session: Session, target_id: int, blob_key: str, level: int, matchratio: float) -> bool:
    """Store a new rating of the target, unless its image was replaced (or it was removed) meanwhile."""
    done = session.execute(
        update(Target)
        .where(Target.id == target_id, Target.blob_key == blob_key)
        .values(level=level, matchratio=matchratio)
    )
    return bool(done.rowcount)  # type: ignore[attr-defined]
