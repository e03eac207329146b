"""The schema Alembic builds is the schema the SQLAlchemy models describe."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from imagecloud.storage import Database
from imagecloud.storage.models import Base


def _migrated(tmp_path: Path) -> Database:
    db = Database(f"sqlite:///{tmp_path / 'schema.db'}")
    db.migrate()
    return db


def test_migrated_schema_matches_the_models(tmp_path: Path) -> None:
    db = _migrated(tmp_path)
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    db.dispose()
    assert differences == []


def test_every_model_table_exists_with_its_columns(tmp_path: Path) -> None:
    db = _migrated(tmp_path)
    inspector = inspect(db.engine)
    for table in Base.metadata.sorted_tables:
        columns = {column["name"] for column in inspector.get_columns(table.name)}
        assert columns == {column.name for column in table.columns}, table.name
    db.dispose()


def test_migrating_twice_is_harmless(tmp_path: Path) -> None:
    db = _migrated(tmp_path)
    db.migrate()
    with db.engine.connect() as connection:
        assert MigrationContext.configure(connection).get_current_revision() == "0001"
    db.dispose()


def test_sqlite_ids_are_never_reused(tmp_path: Path) -> None:
    """The search index is keyed by target and channel ids: a deleted id must not come back."""
    db = _migrated(tmp_path)
    with db.engine.connect() as connection:
        sql = {
            name: connection.exec_driver_sql(
                "SELECT sql FROM sqlite_master WHERE type='table' AND name=?", (name,)
            ).scalar_one()
            for name in ("users", "channels", "targets")
        }
    db.dispose()
    for name, ddl in sql.items():
        assert "AUTOINCREMENT" in ddl.upper(), name
