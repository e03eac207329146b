"""One index shard: the in-process index (:class:`imagecloud.service.recognizer.Recognizer`) of the channels
placed on it, loaded from the database, searched and updated by the API servers.

It knows nothing of Ray: :mod:`imagecloud.cluster.recognizer` runs it as an actor, and tests may run it in
process. Everything it takes and returns is plain data.

**Why it holds what the database holds.** An API server tells the owning shard of every add and remove
before it commits (and is acknowledged only once the shard holds or no longer holds the target), so the
shard is normally exact. Three things can still make it differ from the committed rows, and a periodic
*reconcile* repairs each from the database, the source of truth:

* an API server that dies between telling the shard and committing leaves a target the database never got
  (a *ghost*; harmless meanwhile, since the API server drops search hits whose row is gone);
* an API server whose call timed out tells the shard to :meth:`Shard.resync` the target, which it does
  after the timed-out call, from the row as it is then;
* a shard that restarts while an add is between its acknowledgement and the commit reloads without it.

Targets the shard was told about within the last ``grace`` seconds are left alone by a reconcile: their add
or remove may be committing right now.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from imagecloud.cluster.placement import shard_of
from imagecloud.recognition.findings import View
from imagecloud.recognition.settings import RecognizerSettings
from imagecloud.service.recognizer import Recognizer
from imagecloud.storage.database import Database
from imagecloud.storage.featurestore import FeatureStore
from imagecloud.vision.analysis import QueryAnalysis

log = logging.getLogger(__name__)

_FIRST_RECONCILE_SECONDS = 5.0


@dataclass(frozen=True)
class ShardPlan:
    """Everything a shard needs to (re)build itself: which shard it is, and where the truth is."""

    number: int
    count: int
    database_url: str
    settings: RecognizerSettings
    # Seconds between reconciles with the database (0: never; tests call reconcile themselves).
    reconcile_seconds: float = 30.0
    # Targets told about more recently than this are left to the caller that told (see the module docstring).
    grace_seconds: float = 60.0


@dataclass(frozen=True)
class ShardInfo:
    number: int
    count: int
    targets: int
    pid: int
    incarnation: str  # new at every (re)start of the shard
    ready_seconds: float  # how long the last (re)start took to load the index
    rss_bytes: int  # resident memory of the shard's process


class Shard:
    """One shard's index; every method is thread-safe."""

    def __init__(self, plan: ShardPlan) -> None:
        started = time.monotonic()
        self.plan = plan
        self.incarnation = uuid.uuid4().hex
        self.db = Database(plan.database_url)
        self.store = FeatureStore(self.db, placed=self.places)
        self.recognizer = Recognizer(plan.settings)
        self._write_lock = threading.Lock()  # one change at a time; a reconcile's changes included
        self._touched: dict[int, float] = {}  # target -> when a caller last added, removed or resynced it
        held = self.store.live()
        self.recognizer.start(self.store)
        # Ready means searched as it will be from now on: the IVF segments built, not some rows still in
        # exact segments (which answer slightly differently, and slower at scale).
        self.recognizer.wait_idle()
        self._held: dict[int, int] = held  # target -> channel, for every target the index holds
        self.ready_seconds = time.monotonic() - started
        log.info("shard %d of %d ready: %d targets", plan.number, plan.count, len(held))
        self._stopping = threading.Event()
        if plan.reconcile_seconds > 0:
            threading.Thread(target=self._reconcile_forever, daemon=True, name="reconcile").start()

    def places(self, channel_id: int) -> bool:
        return shard_of(channel_id, self.plan.count) == self.plan.number

    # ----------------------------------------------------------------------------- told by API servers
    def add(self, channel_id: int, target_id: int, features_blob: bytes) -> str:
        """Hold ``target_id``; returns this shard's incarnation."""
        with self._write_lock:
            self._touch(target_id)
            self._add(channel_id, target_id, features_blob)
        return self.incarnation

    def remove(self, channel_id: int, target_id: int) -> str:
        with self._write_lock:
            self._touch(target_id)
            self._remove(target_id, channel_id)
        return self.incarnation

    def drop_channel(self, channel_id: int) -> str:
        with self._write_lock:
            self.recognizer.drop_scope(channel_id)
            gone = [t for t, c in self._held.items() if c == channel_id]
            for target_id in gone:
                self._touch(target_id)
                del self._held[target_id]
        return self.incarnation

    def resync(self, target_id: int) -> str:
        """Hold ``target_id`` exactly if its row exists now (after a caller lost track of a change)."""
        with self._write_lock:
            self._touch(target_id)
            rows = list(self.store.stream(ids=[target_id]))
            if rows and self.places(rows[0][0]):
                self._add(*rows[0])
            else:
                self._remove(target_id)
        return self.incarnation

    # ----------------------------------------------------------------------------- searches
    def find(
        self,
        query: QueryAnalysis,
        scopes: Sequence[int],
        wanted: int,
        first_round: bool = False,
        upload: bool = False,
    ) -> list[View]:
        """Every plausible view of this shard's targets in the photo (accepted or not), for the caller to
        merge with other shards' and decide (:class:`imagecloud.recognition.findings.Findings`); with
        ``first_round``, those of the search's cheap first round only; ``upload`` as in
        :meth:`imagecloud.recognition.search.Searcher.find`."""
        searcher = self.recognizer.searcher
        findings = searcher.find(query, scopes, wanted, first_round=first_round, upload=upload)
        holds = self.recognizer.index.holds
        return [view for view in findings.views if holds(view.key[1])]

    def info(self) -> ShardInfo:
        return ShardInfo(
            number=self.plan.number,
            count=self.plan.count,
            targets=len(self.recognizer),
            pid=os.getpid(),
            incarnation=self.incarnation,
            ready_seconds=self.ready_seconds,
            rss_bytes=_rss_bytes(),
        )

    # ----------------------------------------------------------------------------- repair
    def reconcile(self) -> tuple[int, int]:
        """Make the index hold exactly the committed targets of this shard's channels, except those told
        about within the grace period. Returns (targets added, targets removed)."""
        started = time.monotonic()
        live = self.store.live()
        with self._write_lock:
            held = dict(self._held)
        missing = [t for t in live if t not in held and self._settled(t, started)]
        ghosts = [t for t in held if t not in live and self._settled(t, started)]
        added = removed = 0
        for channel_id, target_id, blob in self.store.stream(ids=missing) if missing else ():
            with self._write_lock:  # checked again: a caller may have told about it meanwhile
                if target_id not in self._held and self._settled(target_id, started):
                    self._add(channel_id, target_id, blob)
                    added += 1
        for target_id in ghosts:
            with self._write_lock:
                if target_id in self._held and self._settled(target_id, started):
                    self._remove(target_id)
                    removed += 1
        if added or removed:
            log.warning("shard %d reconciled: %d targets added, %d removed", self.plan.number, added, removed)
        return added, removed

    def _reconcile_forever(self) -> None:
        # The first one soon: an add acknowledged by the previous incarnation of this shard may have been
        # committed just after this one read the database.
        wait = min(self.plan.reconcile_seconds, _FIRST_RECONCILE_SECONDS)
        while not self._stopping.wait(wait):
            wait = self.plan.reconcile_seconds
            try:
                self.reconcile()
            except Exception:  # the database may be away for a while: try again next time
                log.exception("shard %d: reconcile failed", self.plan.number)

    def stop(self) -> None:
        self._stopping.set()
        self.db.dispose()

    # ----------------------------------------------------------------------------- internals
    def _settled(self, target_id: int, since: float) -> bool:
        return since - self._touched.get(target_id, -math.inf) > self.plan.grace_seconds

    def _touch(self, target_id: int) -> None:
        self._touched[target_id] = time.monotonic()
        if len(self._touched) > 100_000:  # forget what is long settled
            horizon = time.monotonic() - self.plan.grace_seconds
            self._touched = {t: at for t, at in self._touched.items() if at > horizon}

    def _add(self, channel_id: int, target_id: int, blob: bytes) -> None:
        self.recognizer.add(channel_id, target_id, blob)
        self._held[target_id] = channel_id

    def _remove(self, target_id: int, channel_id: int | None = None) -> None:
        known = self._held.pop(target_id, channel_id)
        if known is not None:
            self.recognizer.remove(known, target_id)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def photo_for_shards(query: QueryAnalysis) -> QueryAnalysis:
    """The photo's analysis without what a search does not read (the working image), to send it cheaply."""
    return replace(query, gray=np.zeros((0, 0), np.uint8))


def describe(info: ShardInfo) -> dict[str, Any]:
    return {
        "shard": info.number,
        "targets": info.targets,
        "pid": info.pid,
        "incarnation": info.incarnation,
        "ready_seconds": round(info.ready_seconds, 2),
        "rss_mb": round(info.rss_bytes / 2**20),
    }
