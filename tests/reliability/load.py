"""Load test driver: enrol a channel, start a real server, run locust against it, check nothing was lost.

The benchmark (about 10 minutes on 2 cores: seeding 10k targets once, then 5 minutes of load; the data
directory is kept, so reruns skip the seeding):

    make bench-load
    # = .venv/bin/python -m tests.reliability.load --seed --targets 10000 --users 32 --duration 300 \\
    #       --data-dir build/load-10k --report bench/results/reliability/load-10k.json

The default suite runs a short version of the same code (test_load.py).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select, update

from imagecloud.bench.machine import describe as describe_machine
from imagecloud.config import Settings
from imagecloud.errors import IdentifierTaken
from imagecloud.service import build_service
from imagecloud.service.service import Service, Upload
from imagecloud.storage import Channel, Target, TargetFeatures
from imagecloud.storage.blobs import new_blob_key
from imagecloud.vision.decode import decode_image
from imagecloud.vision.features import FeatureExtractor
from tests import imagegen
from tests.api.images import photo
from tests.server import ServerProcess

USER = "load"
CHANNEL = "load"
LOCUSTFILE = Path(__file__).with_name("locustfile.py")


def _identifier(n: int) -> str:
    return f"t{n:05d}"


def _poster(n: int) -> bytes:
    return imagegen.encode(imagegen.poster(100_000 + n, 240, 320))


def _seed(
    service: Service, extractor: FeatureExtractor, channel_id: int, identifier: str, data: bytes
) -> None:
    """A target stored the way AddImage stores it (file, row, features), minus the rating's simulated views,
    which cost ~5x the rest: enough for a load test, where level and matchratio play no part."""
    image = decode_image(
        data,
        max_pixels=service.settings.max_pixels,
        working_size=service.recognizer.settings.analysis.target_working_size,
    )
    features = extractor.extract(image.gray, image.scale, image.width, image.height)
    insert_target(service, channel_id, identifier, data, features.to_bytes(), (image.width, image.height))


def insert_target(
    service: Service, channel_id: int, identifier: str, data: bytes, features: bytes, size: tuple[int, int]
) -> None:
    """The file, row and features AddImage would store for ``data``, without analysing or rating it."""
    key = new_blob_key()
    service.blobs.put(key, data)
    with service.db.session() as session:
        target = Target(
            channel_id=channel_id,
            identifier=identifier,
            meta=None,
            level=3,
            matchratio=0.5,
            width=size[0],
            height=size[1],
            size_bytes=len(data),
            content_type="image/jpeg",
            blob_key=key,
        )
        session.add(target)
        session.flush()
        session.add(TargetFeatures(target_id=target.id, data=features))
        session.execute(
            update(Channel).where(Channel.id == channel_id).values(target_count=Channel.target_count + 1)
        )


def enrol(data_dir: Path, targets: int, workers: int = 2, *, rated: bool = True) -> tuple[str, str]:
    """Bring the channel to ``targets`` targets (through the service's own AddImage when ``rated``, else
    seeded without the rating); returns the account's key and how the channel was filled."""
    service = build_service(Settings(data_dir=data_dir, rate_limit_per_second=0))
    # Schema only: AddImage's index entries would die with this process, and the server loads its own.
    service.db.migrate()
    key = service.rotate_key(USER) if service.user_exists(USER) else service.create_user(USER)
    if not any(info.name == CHANNEL for info in service.list_channels(owner=USER)):
        service.create_channel(CHANNEL, USER)
    with service.db.session() as session:
        have = set(
            session.scalars(
                select(Target.identifier)
                .join(Channel, Channel.id == Target.channel_id)
                .where(Channel.name == CHANNEL)
            )
        )
    missing = [n for n in range(targets) if _identifier(n) not in have]
    # Targets added by an earlier run's AddImage traffic are removed, so every run starts from the same
    # channel and the server's memory at start and end can be compared between runs.
    leftovers = sorted(have - {_identifier(n) for n in range(targets)})
    for identifier in leftovers:
        service.remove_image(USER, key, CHANNEL, identifier)
    have -= set(leftovers)
    done = 0
    lock = threading.Lock()
    extractor = FeatureExtractor(service.recognizer.settings.analysis.features)
    with service.db.session() as session:
        channel_id = session.scalars(select(Channel.id).where(Channel.name == CHANNEL)).one()

    def add(n: int) -> None:
        nonlocal done
        data = _poster(n)
        if rated:
            with contextlib.suppress(IdentifierTaken):
                service.add_image(USER, key, CHANNEL, _identifier(n), None, Upload(len(data), lambda: data))
        else:
            _seed(service, extractor, channel_id, _identifier(n), data)
        with lock:
            done += 1
            if done % 500 == 0:
                print(f"enrolled {len(have) + done} of {targets}", flush=True)

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(add, missing))
    service.db.dispose()
    how = "AddImage (service)" if rated else "seeded: file + row + features, no rating"
    removed = f", {len(leftovers)} left by earlier runs removed" if leftovers else ""
    return key, f"{len(have)} present before this run, {len(missing)} added now ({how}){removed}"


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def _percentiles(stats_csv: Path) -> dict[str, Any]:
    rows = {}
    with stats_csv.open() as handle:
        for row in csv.DictReader(handle):
            rows[row["Name"]] = {
                "requests": int(row["Request Count"]),
                "failures": int(row["Failure Count"]),
                "rps": round(float(row["Requests/s"]), 2),
                "p50_ms": float(row["50%"]),
                "p90_ms": float(row["90%"]),
                "p95_ms": float(row["95%"]),
                "p99_ms": float(row["99%"]),
                "max_ms": round(float(row["Max Response Time"]), 1),
            }
    return rows


def _admitted_percentiles(times_ms: dict[str, list[float]]) -> dict[str, Any]:
    """Latency of the requests the server admitted (answered other than 20015), per endpoint."""
    report: dict[str, Any] = {}
    for endpoint, times in sorted(times_ms.items()):
        ordered = sorted(times)

        def at(q: float, ordered: list[float] = ordered) -> float:
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)

        report[endpoint] = {
            "requests": len(ordered),
            "p50_ms": at(0.50),
            "p90_ms": at(0.90),
            "p95_ms": at(0.95),
            "p99_ms": at(0.99),
            "max_ms": round(ordered[-1], 1),
        }
    return report


def run(
    data_dir: Path, *, targets: int, users: int, duration: int, photos: int = 60, rated: bool = True
) -> dict[str, Any]:
    started = time.monotonic()
    key, enrolment = enrol(data_dir, targets, rated=rated)
    enrol_seconds = time.monotonic() - started
    work = data_dir / "load-run"
    for sub in ("photos", "adds"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    step = max(1, targets // photos)
    for n in range(0, targets, step):
        view = photo(imagegen.poster(100_000 + n, 240, 320), seed=n, size=(640, 480))[0]
        (work / "photos" / f"{n:05d}.jpg").write_bytes(view)
    for n in range(40):
        (work / "adds" / f"{n:03d}.jpg").write_bytes(imagegen.encode(imagegen.poster(900_000 + n, 240, 320)))
    acks = work / "acks.txt"
    acks.write_text("")
    outcomes = work / "outcomes.json"
    admitted = work / "admitted.json"

    server = ServerProcess(data_dir, env={"IMAGECLOUD_RATE_LIMIT_PER_SECOND": "0"})
    # Loading the index of a 10k-target channel takes minutes on 2 cores; readiness waits for it.
    server.start(timeout=1800)
    assert server.process is not None
    pid = server.process.pid
    try:
        rss_start = _rss_mib(pid)
        index_at_start = _metric(server, "imagecloud_index_targets")
        samples: list[float] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(2.0):
                samples.append(_rss_mib(pid))

        sampler = threading.Thread(target=sample)
        sampler.start()
        env = {
            **os.environ,
            "IMAGECLOUD_LOAD_USERNAME": USER,
            "IMAGECLOUD_LOAD_SECRETKEY": key,
            "IMAGECLOUD_LOAD_CHANNEL": CHANNEL,
            "IMAGECLOUD_LOAD_PHOTOS": str(work / "photos"),
            "IMAGECLOUD_LOAD_ADDS": str(work / "adds"),
            "IMAGECLOUD_LOAD_ACKS": str(acks),
            "IMAGECLOUD_LOAD_OUTCOMES": str(outcomes),
            "IMAGECLOUD_LOAD_ADMITTED": str(admitted),
        }
        locust = Path(sys.executable).with_name("locust")
        command = [str(locust), "-f", str(LOCUSTFILE), "--headless", "--host", server.url]
        command += ["-u", str(users), "-r", str(users), "-t", f"{duration}s", "--csv", str(work / "locust")]
        command += ["--only-summary", "--exit-code-on-error", "0", "--stop-timeout", "30"]
        load_started = time.monotonic()
        subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        load_seconds = time.monotonic() - load_started
        stop.set()
        sampler.join()
        rss_end = _rss_mib(pid)
        index_size = _metric(server, "imagecloud_index_targets")
    finally:
        server.stop()

    acked = [line for line in acks.read_text().splitlines() if line]
    service = build_service(Settings(data_dir=data_dir))
    with service.db.session() as session:
        stored = set(
            session.scalars(
                select(Target.identifier)
                .join(Channel, Channel.id == Target.channel_id)
                .where(Channel.name == CHANNEL)
            )
        )
    service.db.dispose()
    lost = [ident for ident in acked if ident not in stored]
    stats = _percentiles(work / "locust_stats.csv")
    counted = json.loads(outcomes.read_text())
    errors = {k: v for k, v in counted.items() if not k.endswith((" 0", " 20015", "matched", "no match"))}
    return {
        "targets_in_channel_at_start": index_at_start,
        "enrolment": enrolment,
        "enrol_seconds": round(enrol_seconds, 1),
        "users": users,
        "duration_seconds": round(load_seconds, 1),
        "requests": stats,
        "admitted": _admitted_percentiles(json.loads(admitted.read_text())),
        "outcomes": counted,
        "errors_other_than_20015": sum(errors.values()),
        "busy_20015": sum(v for k, v in counted.items() if k.endswith(" 20015")),
        "adds_acknowledged": len(acked),
        "writes_lost": len(lost),
        "index_targets_at_end": index_size,
        "rows_at_end": len(stored),
        "server_rss_mib": {
            "start": round(rss_start, 1),
            "end": round(rss_end, 1),
            "max": round(max(samples, default=rss_end), 1),
            "every_30s": [round(x) for x in samples[::15]],
        },
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "machine": describe_machine(),
    }


def _metric(server: ServerProcess, name: str) -> float:
    for line in httpx.get(f"{server.url}/metrics", timeout=30).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return -1.0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--targets", type=int, default=10_000)
    parser.add_argument("--users", type=int, default=32)
    parser.add_argument("--duration", type=int, default=300, help="seconds of load")
    parser.add_argument("--data-dir", type=Path, default=Path("build/load-10k"))
    parser.add_argument("--report", type=Path)
    parser.add_argument(
        "--seed",
        action="store_true",
        help="enrol without the rating (about 5x faster; level/matchratio fixed)",
    )
    args = parser.parse_args()
    report = run(
        args.data_dir, targets=args.targets, users=args.users, duration=args.duration, rated=not args.seed
    )
    text = json.dumps(report, indent=2)
    print(text)
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(text + "\n")


if __name__ == "__main__":
    main()
