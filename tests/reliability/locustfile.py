"""Locust users for the load test: a mix of FindImage, GetImages and AddImage against one channel.

Driven by tests/reliability/load.py, which passes the account and files through the environment. A
20015 answer is the server's documented overload signal and counts as handled (tallied separately);
any other non-zero result code or HTTP status is a failure. Every acknowledged AddImage is appended to
IMAGECLOUD_LOAD_ACKS so the driver can check afterwards that none was lost.
"""

from __future__ import annotations

import itertools
import json
import os
import random
from collections import Counter
from pathlib import Path
from typing import Any

from locust import HttpUser, between, events, task

USERNAME = os.environ["IMAGECLOUD_LOAD_USERNAME"]
SECRETKEY = os.environ["IMAGECLOUD_LOAD_SECRETKEY"]
CHANNEL = os.environ["IMAGECLOUD_LOAD_CHANNEL"]
PHOTOS = [p.read_bytes() for p in sorted(Path(os.environ["IMAGECLOUD_LOAD_PHOTOS"]).glob("*.jpg"))]
NEW_TARGETS = [p.read_bytes() for p in sorted(Path(os.environ["IMAGECLOUD_LOAD_ADDS"]).glob("*.jpg"))]
ACKS = Path(os.environ["IMAGECLOUD_LOAD_ACKS"])
OUTCOMES = Path(os.environ["IMAGECLOUD_LOAD_OUTCOMES"])
ADMITTED = Path(os.environ["IMAGECLOUD_LOAD_ADMITTED"])
AUTH = {"username": USERNAME, "secretkey": SECRETKEY, "channel": CHANNEL}

_serial = itertools.count()
_outcomes: Counter[str] = Counter()
# Response times (ms) of requests the server admitted (any answer but 20015), per endpoint: locust's own
# percentiles mix them with the instant 20015 refusals, which hide how long admitted work waits.
_admitted_ms: dict[str, list[float]] = {}
_acks = ACKS.open("a")


class ImageCloudUser(HttpUser):
    wait_time = between(0.1, 0.5)

    def _post(self, endpoint: str, data: dict[str, str], files: Any = None) -> dict[str, Any] | None:
        with self.client.post(
            f"/{endpoint}", data=data, files=files, catch_response=True, name=endpoint
        ) as r:
            if r.status_code != 200:
                r.failure(f"HTTP {r.status_code}")
                _outcomes[f"{endpoint} HTTP {r.status_code}"] += 1
                return None
            body: dict[str, Any] = r.json()
            code = body.get("returncode")
            _outcomes[f"{endpoint} {code}"] += 1
            if code != 20015:
                _admitted_ms.setdefault(endpoint, []).append(float(r.request_meta["response_time"]))
            if code == 20015:
                if "Retry-After" not in r.headers:
                    r.failure("20015 without Retry-After")
                else:
                    r.success()
            elif code != 0:
                r.failure(f"returncode {code}")
            return body

    @task(6)
    def find_image(self) -> None:
        photo = random.choice(PHOTOS)
        body = self._post("FindImage", AUTH, files={"image": ("photo.jpg", photo, "image/jpeg")})
        if body is not None and body.get("returncode") == 0:
            _outcomes["FindImage matched" if body.get("identifier") else "FindImage no match"] += 1

    @task(3)
    def get_images(self) -> None:
        self._post("GetImages", {**AUTH, "position": str(random.randrange(10_000)), "count": "50"})

    @task(1)
    def add_image(self) -> None:
        identifier = f"L{os.getpid()}x{next(_serial)}"
        target = random.choice(NEW_TARGETS)
        body = self._post(
            "AddImage", {**AUTH, "identifier": identifier}, files={"image": ("t.jpg", target, "image/jpeg")}
        )
        if body is not None and body.get("returncode") == 0:
            _acks.write(identifier + "\n")
            _acks.flush()


@events.quitting.add_listener  # type: ignore[untyped-decorator]
def _write_outcomes(**_kwargs: Any) -> None:
    OUTCOMES.write_text(json.dumps(dict(_outcomes), indent=2, sort_keys=True))
    ADMITTED.write_text(json.dumps(_admitted_ms))
