"""Alembic environment: run by ``Database.migrate()`` with a live connection in ``config.attributes``."""

from __future__ import annotations

from alembic import context

from imagecloud.storage.models import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite cannot ALTER most things in place; batch mode lets later migrations rebuild tables.
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
