"""Blob store in an S3-compatible bucket: one object per original, under a key prefix of its own.

Several servers can share one bucket and prefix, which the local folder cannot offer. What the service
relies on, and S3 gives:

- A PUT is atomic and durable once acknowledged: a reader sees the whole object or none, never a torn one,
  so no temporary objects are needed (``remove_temporaries`` has nothing to do).
- An object's LastModified is when its PUT completed, by the server's clock: the start-up sweep uses it to
  tell an add in flight (young) from a crash's leftover (older than its grace period). Its grace period is
  an hour, far beyond any sensible clock difference between the servers and the object store.

boto3 is imported here only, so the embedded default runs without it (``pip install 'imagecloud[s3]'``).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from imagecloud.storage.blobs import BlobStoreUnavailable, is_blob_key

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# boto3 error codes that mean "no such object" (GetObject answers NoSuchKey, HeadObject a bare 404).
_MISSING = {"NoSuchKey", "404", "NotFound"}


class S3Unavailable(Exception):
    """boto3 is not installed, or the bucket URL is malformed."""


@dataclass(frozen=True)
class BucketAddress:
    """``s3://bucket/prefix``: the bucket, and the key prefix (empty or ending in ``/``) of this store."""

    bucket: str
    prefix: str

    @classmethod
    def parse(cls, url: str) -> BucketAddress:
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
            raise S3Unavailable(f"not an S3 address (s3://bucket/prefix): {url!r}")
        prefix = parts.path.strip("/")
        return cls(bucket=parts.netloc, prefix=f"{prefix}/" if prefix else "")

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


def s3_client(
    *,
    endpoint_url: str = "",
    region: str = "",
    access_key_id: str = "",
    secret_access_key: str = "",
    connections: int = 32,
) -> S3Client:
    """A client for AWS (no endpoint) or any S3-compatible server (``endpoint_url``).

    Credentials and region left empty come from boto3's usual chain: ``AWS_ACCESS_KEY_ID`` /
    ``AWS_SECRET_ACCESS_KEY`` / ``AWS_REGION``, ``~/.aws``, an instance role.
    """
    try:
        import boto3
        from botocore.config import Config
    except ImportError as error:
        raise S3Unavailable("S3 blob storage needs boto3: pip install 'imagecloud[s3]'") from error
    config = Config(
        # Threads serving /files and adds share the client: one pooled connection each.
        max_pool_connections=connections,
        connect_timeout=5,
        read_timeout=30,
        retries={"mode": "standard", "max_attempts": 4},
        # Self-hosted servers answer at one host name (or an address): buckets go in the path there.
        s3={"addressing_style": "path" if endpoint_url else "auto"},
        # Not every S3-compatible server takes boto3's newer checksum trailers; put() sends Content-MD5,
        # which all of them check, instead.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url or None,
        region_name=region or None,
        aws_access_key_id=access_key_id or None,
        aws_secret_access_key=secret_access_key or None,
        config=config,
    )


class S3BlobStore:
    """Objects ``<prefix><key>`` in one bucket; other objects under the prefix are never touched."""

    backend = "s3"
    # Other servers may write here at the same time: the sweep keeps young objects even when this process
    # holds its data directory's lock.
    shared = True

    def __init__(self, client: S3Client, address: BucketAddress) -> None:
        self.client = client
        self.address = address

    def _name(self, key: str) -> str:
        if not is_blob_key(key):
            raise ValueError(f"not a blob key: {key!r}")
        return self.address.prefix + key

    def put(self, key: str, data: bytes) -> None:
        # The server checks the digest, so a body damaged on the way is refused rather than stored.
        digest = base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()
        name = self._name(key)
        with self._answer(name):
            self.client.put_object(Bucket=self.address.bucket, Key=name, Body=data, ContentMD5=digest)

    def get(self, key: str) -> bytes:
        """The object's bytes; FileNotFoundError if there is none, as for a local file."""
        name = self._name(key)
        with self._answer(name):
            response = self.client.get_object(Bucket=self.address.bucket, Key=name)
            with response["Body"] as body:
                return body.read()

    def delete(self, key: str) -> None:
        name = self._name(key)
        # S3 answers a delete of a missing object with success too.
        with self._answer(name):
            self.client.delete_object(Bucket=self.address.bucket, Key=name)

    def keys(self) -> Iterator[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.address.bucket, Prefix=self.address.prefix
        )
        with self._answer(self.address.prefix):
            for page in pages:
                for item in page.get("Contents", []):
                    name = item["Key"][len(self.address.prefix) :]
                    # Deeper "folders" and other files under the prefix belong to someone else.
                    if is_blob_key(name):
                        yield name

    def modified(self, key: str) -> float:
        """When the object's PUT completed (epoch seconds, whole seconds); FileNotFoundError if it is gone."""
        name = self._name(key)
        with self._answer(name):
            head = self.client.head_object(Bucket=self.address.bucket, Key=name)
        return head["LastModified"].timestamp()

    def remove_temporaries(self, older_than: float) -> int:
        """Nothing to remove: each original is one single-part PUT, which leaves no partial object."""
        return 0

    def reachable(self) -> bool:
        """Whether the bucket answers with these credentials (for /readyz)."""
        try:
            self.client.head_bucket(Bucket=self.address.bucket)
        except Exception:
            return False
        return True

    @contextmanager
    def _answer(self, name: str) -> Iterator[None]:
        """boto3's errors as the Protocol's: FileNotFoundError for no such object, else
        BlobStoreUnavailable (unreachable server, refused credentials, no bucket, timeouts)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            if code in _MISSING:
                raise FileNotFoundError(name) from None
            raise BlobStoreUnavailable(f"{self.address}: {code or error}") from error
        except BotoCoreError as error:
            raise BlobStoreUnavailable(f"{self.address}: {error}") from error
