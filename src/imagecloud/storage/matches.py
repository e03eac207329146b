"""The queries behind match counts (Statistics' ``records``), so the use cases never write SQL for them."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from imagecloud.storage import dialects
from imagecloud.storage.models import Channel, MatchCount


def record(session: Session, day: dt.date, channel_id: int, identifier: str) -> None:
    """Count one FindImage answer of ``identifier`` on ``day``: an upsert, exact under concurrent searches."""
    statement = dialects.insert(session, MatchCount).values(
        day=day, channel_id=channel_id, identifier=identifier, count=1
    )
    statement = statement.on_conflict_do_update(
        index_elements=["day", "channel_id", "identifier"],
        set_={"count": MatchCount.count + 1},
    )
    session.execute(statement)


def per_channel(
    session: Session, owner_id: int, first: dt.date, last: dt.date
) -> list[tuple[dt.date, str, int]]:
    """(day, channel name, matches) of the owner's channels, by day then channel in byte order."""
    rows = session.execute(
        select(MatchCount.day, Channel.name, func.sum(MatchCount.count))
        .join(Channel, Channel.id == MatchCount.channel_id)
        .where(Channel.owner_id == owner_id, MatchCount.day.between(first, last))
        .group_by(MatchCount.day, Channel.name)
        .order_by(MatchCount.day, dialects.bytewise(session, Channel.name))
    )
    return [(day, str(name), int(count)) for day, name, count in rows if count]


def per_identifier(
    session: Session, channel_id: int, first: dt.date, last: dt.date, identifier: str | None = None
) -> list[tuple[dt.date, str, int]]:
    """(day, identifier, matches) of one channel (or one identifier), by day then identifier in byte order."""
    query = select(MatchCount.day, MatchCount.identifier, MatchCount.count).where(
        MatchCount.channel_id == channel_id, MatchCount.day.between(first, last)
    )
    if identifier is not None:
        query = query.where(MatchCount.identifier == identifier)
    rows = session.execute(query.order_by(MatchCount.day, dialects.bytewise(session, MatchCount.identifier)))
    return [(day, str(ident), int(count)) for day, ident, count in rows if count]
