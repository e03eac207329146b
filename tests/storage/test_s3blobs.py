"""The S3 blob store against a real S3-compatible server: the same answers as the local folder, confined
to its prefix, and refusals that name what is wrong."""

from __future__ import annotations

import time

import pytest

from imagecloud.storage.blobs import new_blob_key
from imagecloud.storage.s3blobs import BucketAddress, S3BlobStore, S3Unavailable, s3_client
from tests.s3 import S3Server, object_names


def test_put_get_delete_roundtrip(s3_server: S3Server) -> None:
    store = s3_server.store()
    key = new_blob_key()
    data = bytes(range(256)) * 10
    store.put(key, data)
    assert store.get(key) == data
    assert list(store.keys()) == [key]
    store.delete(key)
    assert list(store.keys()) == []
    with pytest.raises(FileNotFoundError):
        store.get(key)
    with pytest.raises(FileNotFoundError):
        store.modified(key)


def test_delete_of_a_missing_key_is_quiet(s3_server: S3Server) -> None:
    s3_server.store().delete(new_blob_key())


def test_put_replaces_the_whole_object(s3_server: S3Server) -> None:
    store = s3_server.store()
    key = new_blob_key()
    store.put(key, b"first version, longer")
    store.put(key, b"second")
    assert store.get(key) == b"second"
    assert object_names(store) == {key}


@pytest.mark.parametrize(
    "bad", ["../../etc/passwd", "g" * 32, "0" * 31, "0" * 33, "/" + "0" * 31, "0" * 32 + "\n", ""]
)
def test_non_keys_never_become_object_names(s3_server: S3Server, bad: str) -> None:
    store = s3_server.store()
    for operation in (lambda: store.put(bad, b"x"), lambda: store.get(bad), lambda: store.delete(bad)):
        with pytest.raises(ValueError):
            operation()


def test_keys_stay_inside_the_prefix_and_skip_strangers(s3_server: S3Server) -> None:
    """Another prefix that merely starts the same, deeper "folders" and foreign names are never listed
    (so the start-up sweep never deletes them)."""
    address = s3_server.address()
    store = s3_server.store(address)
    neighbour = s3_server.store(address + "0")
    key, other = new_blob_key(), new_blob_key()
    store.put(key, b"mine")
    neighbour.put(other, b"a neighbour's")
    store.client.put_object(Bucket=s3_server.bucket, Key=f"{store.address.prefix}README", Body=b"x")
    store.client.put_object(Bucket=s3_server.bucket, Key=f"{store.address.prefix}deeper/{other}", Body=b"x")
    assert list(store.keys()) == [key]
    assert list(neighbour.keys()) == [other]


def test_modified_is_when_the_put_completed(s3_server: S3Server) -> None:
    store = s3_server.store()
    key = new_blob_key()
    before = time.time()
    store.put(key, b"dated")
    after = time.time()
    # LastModified counts whole seconds.
    assert int(before) <= store.modified(key) <= after


def test_nothing_is_ever_temporary(s3_server: S3Server) -> None:
    store = s3_server.store()
    key = new_blob_key()
    store.put(key, b"kept")
    assert store.remove_temporaries(older_than=float("inf")) == 0
    assert store.get(key) == b"kept"


def test_reachable_only_with_the_bucket_and_the_right_keys(s3_server: S3Server) -> None:
    assert s3_server.store().reachable()
    missing_bucket = S3BlobStore(
        s3_client(
            endpoint_url=s3_server.endpoint_url,
            access_key_id=s3_server.access_key_id,
            secret_access_key=s3_server.secret_access_key,
        ),
        BucketAddress.parse("s3://no-such-bucket/x"),
    )
    assert not missing_bucket.reachable()
    wrong_secret = S3BlobStore(
        s3_client(
            endpoint_url=s3_server.endpoint_url,
            access_key_id=s3_server.access_key_id,
            secret_access_key="not-the-secret",
        ),
        BucketAddress.parse(s3_server.address()),
    )
    assert not wrong_secret.reachable()
    with pytest.raises(Exception, match=r"SignatureDoesNotMatch|AccessDenied|InvalidAccessKeyId"):
        wrong_secret.put(new_blob_key(), b"refused")


@pytest.mark.parametrize(
    ("url", "bucket", "prefix"),
    [
        ("s3://photos", "photos", ""),
        ("s3://photos/", "photos", ""),
        ("s3://photos/imagecloud", "photos", "imagecloud/"),
        ("s3://photos/a/b/", "photos", "a/b/"),
    ],
)
def test_bucket_addresses(url: str, bucket: str, prefix: str) -> None:
    address = BucketAddress.parse(url)
    assert (address.bucket, address.prefix) == (bucket, prefix)


@pytest.mark.parametrize("url", ["photos/imagecloud", "s3:///prefix", "http://host/bucket", "s3://b/p?x=1"])
def test_malformed_addresses_are_refused(url: str) -> None:
    with pytest.raises(S3Unavailable):
        BucketAddress.parse(url)
