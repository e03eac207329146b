"""The queries behind search counts (Statistics' ``searches``), so the use cases never write SQL for them."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from imagecloud.storage import dialects
from imagecloud.storage.models import SearchCount


def record(session: Session, day: dt.date, user_id: int, channel: str, *, found: bool) -> None:
    """Count one answered search of ``channel`` ("" for all channels) by ``user_id``'s key on ``day``."""
    missed = 0 if found else 1
    statement = dialects.insert(session, SearchCount).values(
        day=day, user_id=user_id, channel=channel, count=1, nomatch=missed
    )
    statement = statement.on_conflict_do_update(
        index_elements=["day", "user_id", "channel"],
        set_={"count": SearchCount.count + 1, "nomatch": SearchCount.nomatch + missed},
    )
    session.execute(statement)


def per_day(
    session: Session, user_id: int, first: dt.date, last: dt.date, channel: str | None
) -> list[dict[str, Any]]:
    """``searches`` records of Statistics: by date then channel in byte order."""
    query = select(SearchCount).where(SearchCount.user_id == user_id, SearchCount.day.between(first, last))
    if channel is not None:
        query = query.where(SearchCount.channel == channel)
    rows = session.scalars(query.order_by(SearchCount.day, dialects.bytewise(session, SearchCount.channel)))
    return [
        {
            "date": row.day.strftime("%Y%m%d"),
            "channel": row.channel,
            "count": row.count,
            "nomatch": row.nomatch,
        }
        for row in rows
        if row.count
    ]


def forget_channel(session: Session, user_id: int, channel: str) -> None:
    """A deleted channel's search counts go with it, as its match counts do."""
    session.execute(delete(SearchCount).where(SearchCount.user_id == user_id, SearchCount.channel == channel))
