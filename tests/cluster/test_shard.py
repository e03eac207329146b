"""One index shard in this process, on a real SQLite file written by a real service (no Ray needed).

The shard must end up holding exactly the committed targets of its channels, whatever its callers told it:
reconcile repairs what a dead caller or a reload left behind, resync follows a call that was lost, and
neither touches a target a caller told about within the grace period.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from imagecloud.cluster.placement import shard_of
from imagecloud.cluster.shard import Shard, ShardPlan, photo_for_shards
from imagecloud.config import Settings
from imagecloud.recognition.settings import RecognizerSettings, with_overrides
from imagecloud.service import Service, Upload, build_service
from imagecloud.storage import channels, targets
from tests import imagegen

_seeds = itertools.count(700)


def _upload(data: bytes) -> Upload:
    return Upload(size=len(data), read=lambda: data)


class World:
    """A service that commits targets, and what a photo of each looks like."""

    def __init__(self, data_dir: Path) -> None:
        self.service: Service = build_service(Settings(data_dir=data_dir, second_pass="off"))
        self.service.start()
        self.key = self.service.create_user("owner")
        self.photos: dict[str, bytes] = {}

    def channel(self, name: str) -> int:
        self.service.create_channel(name, "owner")
        with self.service.db.session() as session:
            found = channels.by_name(session, name)
            assert found is not None
            return found.id

    def add(self, channel: str, identifier: str) -> int:
        seed = next(_seeds)
        poster = imagegen.poster(seed)
        self.service.add_image("owner", self.key, channel, identifier, None, _upload(imagegen.encode(poster)))
        self.photos[identifier] = imagegen.encode(imagegen.photo(poster, seed, tilt_deg=15.0).image)
        with self.service.db.session() as session:
            found = targets.by_identifier(session, self.channel_id(channel), identifier)
            assert found is not None
            return found.id

    def channel_id(self, name: str) -> int:
        with self.service.db.session() as session:
            found = channels.by_name(session, name)
            assert found is not None
            return found.id

    def features(self, target_id: int) -> bytes:
        with self.service.db.session() as session:
            data = targets.features(session, target_id)
            assert data is not None
            return data

    def found_by(self, shard: Shard, identifier: str, scopes: list[int]) -> set[int]:
        """Target ids of the views the shard reports for a photo of ``identifier``, accepted ones."""
        query = self.service.recognizer.analyse_query(self.photos[identifier])
        views = shard.find(photo_for_shards(query), scopes, 1)
        return {view.key[1] for view in views if view.assessment.accepted}


def _shard(world: World, count: int = 1, number: int = 0, grace: float = 0.0, **search: Any) -> Shard:
    settings = with_overrides(RecognizerSettings(), {"search": {"second_pass": "off", **search}})
    plan = ShardPlan(
        number=number,
        count=count,
        database_url=world.service.settings.resolved_database_url,
        settings=settings,
        reconcile_seconds=0,  # the tests reconcile themselves
        grace_seconds=grace,
    )
    return Shard(plan)


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path / "data")


def test_loads_only_its_channels(world: World) -> None:
    ids = [world.channel(f"chan{i}") for i in range(6)]
    for i in range(6):
        world.add(f"chan{i}", f"poster{i}")
    shards = [_shard(world, count=2, number=n) for n in (0, 1)]
    for shard in shards:
        held = {c for c in ids if shard.places(c)}
        assert held == {c for c in ids if shard_of(c, 2) == shard.plan.number}
        assert len(shard.recognizer) == len(held)
    assert sum(len(shard.recognizer) for shard in shards) == 6


def test_reconcile_adds_a_committed_target_it_was_not_told_about(world: World) -> None:
    channel = world.channel("chan")
    shard = _shard(world)
    target = world.add("chan", "late")  # committed after the shard loaded, the shard never told
    assert world.found_by(shard, "late", [channel]) == set()
    assert shard.reconcile() == (1, 0)
    assert world.found_by(shard, "late", [channel]) == {target}
    assert shard.reconcile() == (0, 0)


def test_reconcile_removes_a_target_whose_row_never_committed(world: World) -> None:
    channel = world.channel("chan")
    target = world.add("chan", "real")
    shard = _shard(world)
    ghost = target + 1000  # told by a caller that died before its commit
    shard.add(channel, ghost, world.features(target))
    assert world.found_by(shard, "real", [channel]) == {target, ghost}
    assert shard.reconcile() == (0, 1)
    assert world.found_by(shard, "real", [channel]) == {target}


def test_reconcile_leaves_what_a_caller_just_told_it(world: World) -> None:
    channel = world.channel("chan")
    target = world.add("chan", "real")
    shard = _shard(world, grace=60.0)
    ghost = target + 1000  # an add whose commit may be on its way
    shard.add(channel, ghost, world.features(target))
    shard.remove(channel, target)  # a remove whose commit may be on its way
    assert shard.reconcile() == (0, 0)
    assert world.found_by(shard, "real", [channel]) == {ghost}


def test_resync_follows_the_row(world: World) -> None:
    channel = world.channel("chan")
    target = world.add("chan", "real")
    shard = _shard(world, grace=60.0)
    shard.remove(channel, target)  # the caller's call was lost and its DELETE rolled back: the row stays
    shard.resync(target)
    assert world.found_by(shard, "real", [channel]) == {target}
    ghost = target + 1000
    shard.add(channel, ghost, world.features(target))  # the caller's INSERT rolled back: no row
    shard.resync(ghost)
    assert world.found_by(shard, "real", [channel]) == {target}


def test_find_reports_rival_views_for_the_caller_to_decide(world: World) -> None:
    channel = world.channel("chan")
    target = world.add("chan", "real")
    shard = _shard(world)
    twin = target + 1000
    shard.add(channel, twin, world.features(target))  # the same print enrolled twice
    query = world.service.recognizer.analyse_query(world.photos["real"])
    views = shard.find(photo_for_shards(query), [channel], 1)
    assert {view.key[1] for view in views} == {target, twin}  # both reported, none decided here


def test_first_round_alone_settles_a_clear_photo(world: World) -> None:
    """What a search over several shards asks of each first: a clear photo of a print is accepted there."""
    channel = world.channel("chan")
    target = world.add("chan", "real")
    world.add("chan", "other")
    shard = _shard(world)
    query = world.service.recognizer.analyse_query(world.photos["real"])
    views = shard.find(photo_for_shards(query), [channel], 1, first_round=True)
    assert {view.key[1] for view in views if view.assessment.accepted} == {target}
