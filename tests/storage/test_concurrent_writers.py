"""Counters, quotas and statistics stay exact with several processes writing to one database at once.

Each writer is a process of its own with its own connections, data directory and in-process locks, as
several servers sharing a PostgreSQL database would be: only the database can keep them from
overshooting a quota or losing a count. All start together at a barrier so that their writes overlap.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import pytest

from imagecloud.config import Settings
from imagecloud.errors import IdentifierTaken, QuotaExceeded
from imagecloud.service import build_service
from imagecloud.service.recognizer import TargetAnalysis
from imagecloud.storage import Database, searches, targets
from imagecloud.storage import matches as match_counts
from tests import imagegen
from tests.backends import Backend

WRITERS = 4
ADDS_EACH = 5
QUOTA = 7
COUNTS_EACH = 25


def _settings(data_dir: Path, url: str) -> Settings:
    # Blob files and previews are per process; the database is the one all writers share.
    return Settings(data_dir=data_dir, database_url=url or f"sqlite:///{data_dir.parent / 'shared.db'}")


def _add_all(
    data_dir: Path, url: str, channel: str, writer: int, analysis: TargetAnalysis, data: bytes, start: Barrier
) -> dict[str, int]:
    """One writer's adds to the shared channel: how many were stored and how many met a full channel."""
    service = build_service(_settings(data_dir, url))
    found, _present = service.import_channel(channel)
    outcome = {"added": 0, "full": 0}
    start.wait()
    for n in range(ADDS_EACH):
        try:
            service.add_analysed(found, f"w{writer}_{n}", None, data, analysis)
            outcome["added"] += 1
        except QuotaExceeded:
            outcome["full"] += 1
    service.db.dispose()
    return outcome


def _add_one(
    data_dir: Path, url: str, channel: str, analysis: TargetAnalysis, data: bytes, start: Barrier
) -> str:
    """Every writer adds the same identifier: "added" or "taken"."""
    service = build_service(_settings(data_dir, url))
    found, _present = service.import_channel(channel)
    start.wait()
    try:
        service.add_analysed(found, "contested", None, data, analysis)
        outcome = "added"
    except IdentifierTaken:
        outcome = "taken"
    service.db.dispose()
    return outcome


def _count_all(url: str, channel_id: int, user_id: int, start: Barrier) -> None:
    """Statistics writes of one process: every search finds the same identifier, so all hit one row."""
    db = Database(url)
    day = dt.datetime.now(dt.UTC).date()
    start.wait()
    for n in range(COUNTS_EACH):
        with db.session() as session:
            match_counts.record(session, day, channel_id, "popular")
        with db.session() as session:
            searches.record(session, day, user_id, "", found=n % 5 != 0)
    db.dispose()


def _report(target: Any, arguments: tuple[Any, ...], results: Queue[Any]) -> None:
    try:
        results.put(("ok", target(*arguments)))
    except BaseException as error:
        results.put(("failed", repr(error)))
        raise


def _run(target: Any, argument_lists: list[tuple[Any, ...]]) -> list[Any]:
    """Run ``target`` once per argument tuple, each in a fresh process, all released by one barrier."""
    # Not a plain fork of the test process, which runs threads (a forked copy may hold a lock for ever);
    # the fork server imports the service once, so each writer starts in a moment.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    start = context.Barrier(len(argument_lists))
    results: Queue[Any] = context.Queue()
    processes = [
        context.Process(target=_report, args=(target, (*arguments, start), results))
        for arguments in argument_lists
    ]
    for process in processes:
        process.start()
    # Read before joining: a child exits only once what it put on the queue has been taken.
    outcomes = [results.get(timeout=300) for _ in processes]
    for process in processes:
        process.join()
    assert all(status == "ok" for status, _ in outcomes), outcomes
    return [value for _, value in outcomes]


@pytest.fixture
def shared(backend: Backend, tmp_path: Path) -> tuple[Settings, str]:
    """The database the writers share, migrated, with one user owning one channel of quota ``QUOTA``."""
    url = backend.database_url()
    settings = _settings(tmp_path / "parent", url)
    service = build_service(settings)
    service.db.migrate()
    service.create_user("crowd")
    service.create_channel("crowded", "crowd", QUOTA)
    service.db.dispose()
    return settings, url


def test_writers_at_a_quota_never_overshoot_it(shared: tuple[Settings, str], tmp_path: Path) -> None:
    settings, url = shared
    data = imagegen.encode(imagegen.poster(3), "jpeg")
    service = build_service(settings)
    analysis = service.recognizer.analyse_target(data)

    outcomes = _run(
        _add_all, [(tmp_path / f"writer{n}", url, "crowded", n, analysis, data) for n in range(WRITERS)]
    )

    assert sum(outcome["added"] for outcome in outcomes) == QUOTA
    assert sum(outcome["full"] for outcome in outcomes) == WRITERS * ADDS_EACH - QUOTA
    (info,) = service.list_channels()
    channel, _present = service.import_channel("crowded")
    with service.db.session() as session:
        assert info.count == len(targets.identifiers_of(session, channel.id)) == QUOTA
    service.db.dispose()


def test_one_identifier_from_several_writers_is_stored_once(
    shared: tuple[Settings, str], tmp_path: Path
) -> None:
    """The losers hear 20016, as from one server, even when their own check found the identifier free."""
    settings, url = shared
    data = imagegen.encode(imagegen.poster(4), "jpeg")
    service = build_service(settings)
    analysis = service.recognizer.analyse_target(data)

    outcomes = _run(
        _add_one, [(tmp_path / f"writer{n}", url, "crowded", analysis, data) for n in range(WRITERS)]
    )

    assert sorted(outcomes) == ["added"] + ["taken"] * (WRITERS - 1)
    (info,) = service.list_channels()
    assert info.count == 1
    service.db.dispose()


def test_concurrent_statistics_lose_no_count(shared: tuple[Settings, str]) -> None:
    settings, _url = shared
    service = build_service(settings)
    channel, _present = service.import_channel("crowded")
    day = dt.datetime.now(dt.UTC).date()

    _run(_count_all, [(settings.resolved_database_url, channel.id, channel.owner_id)] * WRITERS)

    with service.db.session() as session:
        assert match_counts.per_identifier(session, channel.id, day, day) == [
            (day, "popular", WRITERS * COUNTS_EACH)
        ]
        (searched,) = searches.per_day(session, channel.owner_id, day, day, None)
    assert (searched["count"], searched["nomatch"]) == (WRITERS * COUNTS_EACH, WRITERS * COUNTS_EACH // 5)
    service.db.dispose()
