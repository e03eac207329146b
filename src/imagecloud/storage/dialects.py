"""What SQLite and PostgreSQL spell differently: the repositories ask here instead of testing the backend."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement


def _name(session: Session) -> str:
    return session.get_bind().dialect.name


def bytewise(session: Session, column: Any) -> ColumnElement[Any]:
    """``column`` compared byte by byte, as the contract orders names and identifiers.

    SQLite compares text by bytes already; PostgreSQL follows the database's collation unless told "C".
    """
    return column.collate("C") if _name(session) == "postgresql" else column  # type: ignore[no-any-return]


def insert(session: Session, model: Any) -> Any:
    """An INSERT that can take ``on_conflict_do_update`` (an atomic upsert on both backends)."""
    return postgresql.insert(model) if _name(session) == "postgresql" else sqlite.insert(model)
