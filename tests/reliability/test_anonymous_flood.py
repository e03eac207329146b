"""Anonymous file traffic (originals and previews, no credentials) cannot take the owners' capacity.

A CI-sized flood: 32 connections fetching previews of every size and originals of a large target, with
the per-address file budget switched off, so only the separation of the two kinds of work is tested. The
owner's FindImage must keep answering as if the flood were not there: never 20015. (Before previews were
stored files, each one was rendered in the owners' image-work queue and the owner got 20015.)

``make bench-flood`` runs the long version (``IMAGECLOUD_FLOOD_FINDS``) and writes what it saw to
``IMAGECLOUD_FLOOD_REPORT``: result codes, the owner's FindImage times (reported, never asserted) and the
flood's answers.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests import imagegen
from tests.api.helpers import add_ok, find_in
from tests.server import ServerProcess

CONNECTIONS = 32
FINDS = int(os.environ.get("IMAGECLOUD_FLOOD_FINDS", "12"))
# Each flooding connection stops after this many requests even if the owner is not done, so the test
# ends whatever happens.
MAX_REQUESTS = 40 * FINDS
SIZES = (64, 128, 256, 512, 1024)


@pytest.fixture
def flooded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {
        "IMAGECLOUD_VISION_WORKERS": "2",
        "IMAGECLOUD_VISION_QUEUE": "4",
        "IMAGECLOUD_FILE_RATE_LIMIT_PER_SECOND": "0",
    }
    server = ServerProcess(tmp_path_factory.mktemp("flood"), env=env)
    server.start()
    yield server
    server.stop()


def test_owner_finds_are_answered_during_an_anonymous_flood(flooded_server: ServerProcess) -> None:
    server = flooded_server
    account = server.new_account("owner")
    # A large PNG: decoding it for a preview is real work (no reduced-size decode for PNG).
    poster = imagegen.poster(71, 1200, 1600)
    add_ok(server, account, "big", imagegen.encode(poster, "png"))
    url = server.url + server.call("GetImage", account.auth(identifier="big"))["imageurl"]
    photo = imagegen.encode(imagegen.photo(poster, seed=4, out_size=(640, 480)).image)

    owner_done = threading.Event()
    flooding = threading.Barrier(CONNECTIONS + 1)
    statuses: list[int] = []
    errors: list[BaseException] = []

    def flood(n: int) -> None:
        try:
            with httpx.Client(timeout=60) as client:
                flooding.wait()
                for i in range(MAX_REQUESTS):
                    if owner_done.is_set():
                        return
                    if (n + i) % 4 == 0:
                        response = client.get(url)
                    else:
                        response = client.get(url + "/thumbnail", params={"size": SIZES[(n + i) % 5]})
                    statuses.append(response.status_code)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=flood, args=(n,)) for n in range(CONNECTIONS)]
    for thread in threads:
        thread.start()
    answers = []
    seconds = []
    try:
        flooding.wait()
        for _ in range(FINDS):
            started = time.perf_counter()
            answers.append(find_in(server, account, photo))
            seconds.append(time.perf_counter() - started)
    finally:
        owner_done.set()
        for thread in threads:
            thread.join()
    if report := os.environ.get("IMAGECLOUD_FLOOD_REPORT"):
        write_report(Path(report), answers, seconds, statuses)
    assert not errors, errors[0]
    assert [a["returncode"] for a in answers] == [0] * FINDS, answers
    assert all(a["identifier"] == "big" for a in answers)
    # Served from files, or (a size never asked for before, while its one rendering is queued) 503.
    assert set(statuses) <= {200, 503}


def write_report(
    path: Path, answers: list[dict[str, object]], seconds: list[float], statuses: list[int]
) -> None:
    ordered = sorted(seconds)

    def percentile(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)

    body = {
        "connections": CONNECTIONS,
        "finds": len(answers),
        "find_returncodes": dict(Counter(str(a["returncode"]) for a in answers)),
        "find_ms": {"p50": percentile(0.5), "p95": percentile(0.95), "max": percentile(1.0)},
        "flood_requests": len(statuses),
        "flood_statuses": dict(Counter(str(status) for status in statuses)),
        "load_average": os.getloadavg(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body, indent=2) + "\n")
