"""Small helpers shared by the HTTP tests: uploads, stored state as the operator sees it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from imagecloud.storage import Channel, Target
from imagecloud.storage.blobs import new_blob_key
from imagecloud.storage.s3blobs import S3BlobStore
from tests.backends import NAMES
from tests.s3 import object_names
from tests.server import Account, ServerProcess


def jpeg(data: bytes, name: str = "image.jpg") -> dict[str, tuple[str, bytes, str]]:
    """``files=`` for httpx: one upload in field ``image``."""
    return {"image": (name, data, "image/jpeg")}


def add(
    server: ServerProcess, account: Account, identifier: str, data: bytes, **fields: Any
) -> dict[str, Any]:
    return server.call("AddImage", account.auth(identifier=identifier, **fields), files=jpeg(data))


def add_ok(
    server: ServerProcess, account: Account, identifier: str, data: bytes, **fields: Any
) -> dict[str, Any]:
    body = add(server, account, identifier, data, **fields)
    assert body["returncode"] == 0, body
    return body


def find(server: ServerProcess, account: Account, photo: bytes, **fields: Any) -> dict[str, Any]:
    data = {"username": account.username, "secretkey": account.secretkey, **fields}
    return server.call("FindImage", data, files=jpeg(photo, "photo.jpg"))


def find_in(server: ServerProcess, account: Account, photo: bytes, **fields: Any) -> dict[str, Any]:
    """FindImage in the account's channel."""
    return find(server, account, photo, channel=account.channel, **fields)


# The database of the servers keeping originals in S3: the deployment that moves both out of the data
# directory.
S3_BACKEND = "postgresql"


def on_blob_stores(fixture: str, stores: tuple[str, ...] = ("local", "s3")) -> pytest.MarkDecorator:
    """Runs a test class or function with the blob folder on every database, and once more with originals
    in S3 (on :data:`S3_BACKEND`): not on every pair, since the database and the blob store do not meet
    below the service. ``fixture`` is the server fixture taking the store as its indirect parameter."""
    pairs = [(name, "local") for name in NAMES] if "local" in stores else []
    if "s3" in stores:
        pairs.append((S3_BACKEND, "s3"))
    return pytest.mark.parametrize(("backend", fixture), pairs, indirect=True)


# For the tests that touch originals: the shared server of each (database, blob store) pair.
both_blob_stores = on_blob_stores("server")


def blob_files(server: ServerProcess) -> set[str]:
    """Everything in the server's blob store, temporaries and strangers too: paths under the blob folder,
    or object names under the S3 prefix."""
    if server.settings.get("blobs"):
        store = server.operator.blobs
        assert isinstance(store, S3BlobStore)
        return object_names(store)
    root = server.data_dir / "blobs"
    return {str(path.relative_to(root)) for path in Path(root).rglob("*") if path.is_file()}


def stored_blob(server: ServerProcess, name: str) -> bytes:
    """The original named ``name`` in :func:`blob_files`."""
    return server.operator.blobs.get(Path(name).name)


def stored_identifiers(server: ServerProcess, channel: str) -> list[str]:
    """Target rows of ``channel`` as the database holds them."""
    with server.operator.db.session() as session:
        return sorted(
            session.scalars(
                select(Target.identifier)
                .join(Channel, Channel.id == Target.channel_id)
                .where(Channel.name == channel)
            )
        )


def target_count(server: ServerProcess) -> int:
    with server.operator.db.session() as session:
        return session.scalar(select(func.count(Target.id))) or 0


def total_count(server: ServerProcess, account: Account) -> int:
    body = server.call("GetImages", account.auth())
    assert body["returncode"] == 0, body
    count: int = body["totalcount"]
    return count


def seed_rows(server: ServerProcess, account: Account, identifiers: list[str]) -> None:
    """Rows straight into the real database: ordering and paging need no recognition work."""
    with server.operator.db.session() as session:
        channel = session.query(Channel).filter_by(name=account.channel).one()
        for n, identifier in enumerate(identifiers):
            session.add(
                Target(
                    channel_id=channel.id,
                    identifier=identifier,
                    meta=f'{{"n": {n}}}',
                    level=3,
                    matchratio=0.25,
                    width=640,
                    height=480,
                    size_bytes=1,
                    content_type="image/jpeg",
                    blob_key=new_blob_key(),
                )
            )
        channel.target_count += len(identifiers)  # as AddImage keeps it
