"""What a restart keeps: targets, metadata, statistics, and a search index rebuilt from the database."""

from __future__ import annotations

import datetime as dt

import httpx

from imagecloud.storage.blobs import new_blob_key
from tests.api.helpers import add_ok, blob_files, find, find_in, on_blob_stores
from tests.server import ServerProcess


@on_blob_stores("fresh_server")
def test_everything_survives_a_restart(fresh_server, target_jpeg, second_jpeg, target_photo, second_photo):
    server = fresh_server
    account = server.new_account("keeper")
    add_ok(server, account, "kept", target_jpeg, metadata='{"survives": true}')
    add_ok(server, account, "removed", second_jpeg)
    assert find_in(server, account, target_photo)["identifier"] == "kept"
    assert server.call("RemoveImage", account.auth(identifier="removed"))["returncode"] == 0
    url = server.call("GetImage", account.auth(identifier="kept"))["imageurl"]
    blobs = blob_files(server)
    day = dt.datetime.now(dt.UTC).strftime("%Y%m%d")
    stats = {"username": account.username, "secretkey": account.secretkey, "startdate": day, "enddate": day}

    server.restart()

    found = find_in(server, account, target_photo)
    assert (found["identifier"], found["metadata"]) == ("kept", '{"survives": true}')
    assert "identifier" not in find_in(server, account, second_photo)
    assert "identifier" not in find(server, account, second_photo)
    body = server.call("GetImages", account.auth())
    assert [image["identifier"] for image in body["images"]] == ["kept"]
    assert blob_files(server) == blobs
    assert httpx.get(server.url + url).content == target_jpeg
    # One count before the restart, one just now.
    assert server.call("Statistics", stats)["records"] == [
        {"date": day, "channel": account.channel, "count": 2}
    ]
    # The old key still works and the identifier space is as it was.
    assert (
        server.call("AddImage", account.auth(identifier="kept"), files={"image": ("a.jpg", target_jpeg)})[
            "returncode"
        ]
        == 20016
    )
    add_ok(server, account, "removed", second_jpeg)
    assert find_in(server, account, second_photo)["identifier"] == "removed"


def test_orphan_blob_files_are_collected_at_start(fresh_server, target_jpeg):
    """A file left by a crash between writing the blob and committing the row goes at the next start."""
    server = fresh_server
    account = server.new_account("crashy")
    add_ok(server, account, "kept", target_jpeg)
    blobs = blob_files(server)
    orphan = server.data_dir / "blobs" / "ab" / ("ab" + "0" * 30)
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(b"left by a crash")
    server.restart()
    assert blob_files(server) == blobs


@on_blob_stores("fresh_server", ("s3",))
def test_a_young_orphan_object_in_a_shared_bucket_survives_a_start(fresh_server: ServerProcess, target_jpeg):
    """Other servers may write to the bucket: an unreferenced object younger than the grace period may be
    their add in flight, so a start keeps it even while holding its own data directory's lock."""
    server = fresh_server
    account = server.new_account("sharing")
    add_ok(server, account, "kept", target_jpeg)
    in_flight = new_blob_key()
    server.operator.blobs.put(in_flight, b"another server's add in flight")
    blobs = blob_files(server)
    assert in_flight in blobs
    server.restart()
    assert blob_files(server) == blobs
    assert server.operator.blobs.get(in_flight) == b"another server's add in flight"
