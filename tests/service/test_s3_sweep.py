"""AddImage over an S3 bucket: a crash between the object's PUT and the row's commit leaves at most an
orphan object, which the sweep removes once it is older than the grace period; the object of an
acknowledged target is never removed."""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import select

from imagecloud.config import load_settings
from imagecloud.service import Service, Upload, build_service
from imagecloud.service.sweep import GRACE_SECONDS, collect_orphans
from imagecloud.storage import Target
from imagecloud.storage.blobs import new_blob_key
from imagecloud.storage.s3blobs import S3BlobStore
from tests import imagegen
from tests.s3 import S3Server, object_names


def s3_service(data_dir: Path, s3_server: S3Server) -> Service:
    service = build_service(load_settings(None, data_dir=data_dir, **s3_server.settings()))
    service.db.migrate()
    return service


def test_only_orphans_older_than_the_grace_period_go(tmp_path: Path, s3_server: S3Server) -> None:
    service = s3_service(tmp_path / "data", s3_server)
    secret = service.create_user("owner")
    service.create_channel("posters", "owner")
    poster = imagegen.encode(imagegen.poster(3))
    body = service.add_image(
        "owner", secret, "posters", "acknowledged", None, Upload(len(poster), lambda: poster)
    )
    assert body["identifier"] == "acknowledged"
    with service.db.session() as session:
        (acknowledged,) = session.scalars(select(Target.blob_key))
    # What a crash after the PUT and before the commit leaves behind.
    orphan = new_blob_key()
    service.blobs.put(orphan, b"left by a crash")
    store = service.blobs
    assert isinstance(store, S3BlobStore)
    assert object_names(store) == {acknowledged, orphan}

    # Just written: may be another server's add in flight, kept even by a sweep holding the lock.
    assert collect_orphans(service.db, store, service.previews, exclusive=True) == 0
    assert object_names(store) == {acknowledged, orphan}

    # Seen again once the grace period has passed.
    later = time.time() + GRACE_SECONDS + 60
    assert collect_orphans(service.db, store, service.previews, exclusive=False, now=later) == 1
    assert object_names(store) == {acknowledged}
    assert service.files.original(acknowledged) == poster
