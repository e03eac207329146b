"""Start-up: the port answers 20015 while the index loads, and a restart after SIGKILL reuses the saved index
without letting it answer for targets the database changed meanwhile.

The channel holds a few real posters among ~1,200 filler targets (stored features with random descriptors,
which vote for nothing): enough rows that the first start builds an IVF index for a while, and saves it.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from sqlalchemy import select

from imagecloud.service import Service
from imagecloud.storage import Channel
from imagecloud.vision.decode import decode_image
from imagecloud.vision.features import FeatureExtractor, Features
from tests import imagegen
from tests.api.helpers import jpeg
from tests.api.images import photo
from tests.reliability.load import insert_target
from tests.server import Account, ServerProcess

FILLER = 1200
REAL = 4


def _poster(n: int) -> bytes:
    return imagegen.encode(imagegen.poster(500 + n))


def _photo(n: int) -> bytes:
    return photo(imagegen.poster(500 + n), seed=n)[0]


def _insert(service: Service, channel: str, identifier: str, data: bytes, features: bytes) -> None:
    """A target row as AddImage stores it (file, row, features), without the rating."""
    with service.db.session() as session:
        channel_id = session.scalars(select(Channel.id).where(Channel.name == channel)).one()
    insert_target(service, channel_id, identifier, data, features, (480, 640))


def _seed(server: ServerProcess, account: Account) -> None:
    service = server.operator
    extractor = FeatureExtractor(service.recognizer.settings.analysis.features)
    real = {}
    for n in range(REAL):
        image = decode_image(_poster(n), max_pixels=40_000_000, working_size=640)
        real[n] = extractor.extract(image.gray, image.scale, image.width, image.height)
        _insert(service, account.channel, f"real{n}", _poster(n), real[n].to_bytes())
    rng = np.random.default_rng(0)
    template: Features = real[0]
    for n in range(FILLER):
        noise = rng.integers(0, 256, template.descriptors.shape, dtype=np.uint8)
        filler = dataclasses.replace(template, descriptors=noise)
        _insert(service, account.channel, f"filler{n:04d}", b"filler", filler.to_bytes())


def _saved_segments(data_dir: Path) -> int:
    manifest = data_dir / "index" / "exact" / "manifest.json"
    if not manifest.exists():
        return 0
    scopes: dict[str, Any] = json.loads(manifest.read_text())["scopes"]
    return sum(len(scope["segments"]) for scope in scopes.values())


def _find(server: ServerProcess, account: Account, n: int) -> str | None:
    body = server.call("FindImage", account.auth(), files=jpeg(_photo(n)))
    assert body["returncode"] == 0, body
    found: str | None = body.get("identifier")
    return found


def test_start_answers_20015_then_restart_after_sigkill_uses_only_what_is_current(tmp_path: Path):
    server = ServerProcess(tmp_path)
    account = server.new_account("restart")
    _seed(server, account)

    starter = threading.Thread(target=server.start, kwargs={"timeout": 600})
    starter.start()
    seen: list[str] = []  # "refused", "20015", "ready"
    not_ready_probe: int | None = None
    deadline = time.monotonic() + 600
    with httpx.Client(timeout=60) as client:
        while time.monotonic() < deadline:
            try:
                r = client.post(f"{server.url}/FindImage", data=account.auth(), files=jpeg(_photo(0)))
            except httpx.TransportError:
                seen.append("refused")
                time.sleep(0.05)
                continue
            body = r.json()
            if body["returncode"] == 20015:
                assert int(r.headers["retry-after"]) >= 1
                seen.append("20015")
                if not_ready_probe is None:
                    not_ready_probe = client.get(f"{server.url}/readyz").status_code
                time.sleep(0.05)
                continue
            assert body["returncode"] == 0 and body["identifier"] == "real0", body
            seen.append("ready")
            break
    starter.join()
    assert "20015" in seen, "no 20015 while the index was loading"
    # Once the port answered, it never refused a connection again.
    assert "refused" not in seen[seen.index("20015") :]
    assert not_ready_probe == 503

    # The index built at the first start is written to disk in the background.
    deadline = time.monotonic() + 300
    while not _saved_segments(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _saved_segments(tmp_path), "the built index was not saved"

    # Changes after the save, then a SIGKILL: the saved index is stale for these two targets.
    assert server.call("RemoveImage", account.auth(identifier="real1"))["returncode"] == 0
    updated = server.call("UpdateImage", account.auth(identifier="real2"), files=jpeg(_poster(9)))
    assert updated["returncode"] == 0, updated
    server.stop(signal.SIGKILL)
    server.start(timeout=600)
    try:
        assert _find(server, account, 0) == "real0"
        assert _find(server, account, 3) == "real3"
        assert _find(server, account, 1) is None  # removed
        assert _find(server, account, 2) is None  # its old image
        assert _find(server, account, 9) == "real2"  # its new one
    finally:
        server.stop()
