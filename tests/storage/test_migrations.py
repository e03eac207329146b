"""The schema Alembic builds is the schema the SQLAlchemy models describe, on SQLite and on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import delete, inspect, select, text

from imagecloud.storage import Channel, Database, User
from imagecloud.storage.models import Base
from tests.backends import Backend


def _empty(backend: Backend, tmp_path: Path, name: str = "schema.db") -> Database:
    return Database(backend.database_url() or f"sqlite:///{tmp_path / name}")


def _migrated(backend: Backend, tmp_path: Path) -> Database:
    db = _empty(backend, tmp_path)
    db.migrate()
    return db


def test_migrated_schema_matches_the_models(backend: Backend, tmp_path: Path) -> None:
    db = _migrated(backend, tmp_path)
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    db.dispose()
    assert differences == []


def test_every_model_table_exists_with_its_columns(backend: Backend, tmp_path: Path) -> None:
    db = _migrated(backend, tmp_path)
    inspector = inspect(db.engine)
    for table in Base.metadata.sorted_tables:
        columns = {column["name"] for column in inspector.get_columns(table.name)}
        assert columns == {column.name for column in table.columns}, table.name
    db.dispose()


def test_migrating_twice_is_harmless(backend: Backend, tmp_path: Path) -> None:
    db = _migrated(backend, tmp_path)
    db.migrate()
    with db.engine.connect() as connection:
        assert MigrationContext.configure(connection).get_current_revision() == "0004"
    db.dispose()


def test_ids_are_never_reused(backend: Backend, tmp_path: Path) -> None:
    """The search index is keyed by target and channel ids: a deleted id must not come back."""
    db = _migrated(backend, tmp_path)
    with db.session() as session:
        session.add(User(name="u", key_hash="h"))
        session.flush()
        owner = session.scalar(select(User.id))
        session.add_all(
            [Channel(name="a", owner_id=owner, quota=1), Channel(name="b", owner_id=owner, quota=1)]
        )
    with db.session() as session:
        last = session.scalars(select(Channel.id).where(Channel.name == "b")).one()
        session.execute(delete(Channel).where(Channel.id == last))
    with db.session() as session:
        session.add(Channel(name="c", owner_id=owner, quota=1))
    with db.session() as session:
        assert session.scalars(select(Channel.id).where(Channel.name == "c")).one() > last
    db.dispose()


def test_sqlite_tables_are_declared_autoincrement(tmp_path: Path) -> None:
    """What keeps SQLite from reusing the largest rowid after it is deleted."""
    db = _migrated(Backend("sqlite"), tmp_path)
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


def test_target_counts_are_filled_in_for_existing_channels(backend: Backend, tmp_path: Path) -> None:
    """A database made before the per-channel counter gets it with the real counts."""
    db = _empty(backend, tmp_path, "old.db")
    db.migrate("0001")
    with db.engine.begin() as connection:
        connection.execute(
            text("INSERT INTO users (id, name, key_hash, created_at) VALUES (1, 'u', 'h', '2026-01-01')")
        )
        for channel, name in ((1, "full"), (2, "empty")):
            connection.execute(
                text(
                    "INSERT INTO channels (id, name, owner_id, quota, created_at) "
                    "VALUES (:id, :name, 1, 10, '2026-01-01')"
                ),
                {"id": channel, "name": name},
            )
        for n in range(3):
            connection.execute(
                text(
                    "INSERT INTO targets (channel_id, identifier, level, matchratio, width, height, "
                    "size_bytes, content_type, blob_key, created_at) VALUES (1, :identifier, 3, 0.5, 1, 1, "
                    "1, 'image/jpeg', :key, '2026-01-01')"
                ),
                {"identifier": f"t{n:03d}", "key": f"{n:032x}"},
            )
    db.migrate()
    with db.engine.connect() as connection:
        counts: dict[str, int] = {
            str(name): int(count)
            for name, count in connection.execute(text("SELECT name, target_count FROM channels"))
        }
    db.dispose()
    assert counts == {"full": 3, "empty": 0}
