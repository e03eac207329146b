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
        assert MigrationContext.configure(connection).get_current_revision() == "0004"
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


def test_target_counts_are_filled_in_for_existing_channels(tmp_path: Path) -> None:
    """A database made before the per-channel counter gets it with the real counts."""
    db = Database(f"sqlite:///{tmp_path / 'old.db'}")
    db.migrate("0001")
    with db.engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO users (id, name, key_hash, created_at) VALUES (1, 'u', 'h', '2026-01-01')"
        )
        for channel, name in ((1, "full"), (2, "empty")):
            connection.exec_driver_sql(
                "INSERT INTO channels (id, name, owner_id, quota, created_at) "
                "VALUES (?, ?, 1, 10, '2026-01-01')",
                (channel, name),
            )
        for n in range(3):
            connection.exec_driver_sql(
                "INSERT INTO targets (channel_id, identifier, level, matchratio, width, height, size_bytes, "
                "content_type, blob_key, created_at) VALUES (1, ?, 3, 0.5, 1, 1, 1, 'image/jpeg', ?, "
                "'2026-01-01')",
                (f"t{n:03d}", f"{n:032x}"),
            )
    db.migrate()
    with db.engine.connect() as connection:
        counts: dict[str, int] = dict(
            connection.exec_driver_sql("SELECT name, target_count FROM channels").all()
        )
    db.dispose()
    assert counts == {"full": 3, "empty": 0}
