"""Recognition for an API server whose index lives in shards on a Ray cluster (it holds no index itself).

* Photos and targets are analysed here, in the API server's own worker threads.
* An add, remove or channel deletion goes to the one shard that holds the channel
  (:mod:`imagecloud.cluster.placement`) and returns only once that shard has done it, so a photo sent to
  *any* API server right after the answer sees the change. A call the shard does not answer within
  ``timeout`` raises :class:`imagecloud.errors.SystemBusy` (20015), and the shard is asked to
  :meth:`imagecloud.cluster.shard.Shard.resync` the target after the lost call, so whatever the caller
  then commits or rolls back is what the shard ends up holding.
* A search goes to every shard holding one of its channels at once; each returns its plausible views, and
  the answer is decided here over all of them (the competition check sees every shard's candidates). Over
  several shards it goes in two steps, the first round of each search first (see ``_findings``). If any of
  those shards does not answer in time the search answers 20015: never a silent miss.

The shards are detached, named actors in the cluster's namespace: the first API server to start creates
them, the others find them, and Ray restarts one whose process or node dies (it then reloads from the
database). Their names carry the shard count, so servers started with different counts refuse to mix.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from imagecloud.cluster.placement import shard_of
from imagecloud.cluster.shard import Shard, ShardInfo, ShardPlan, describe, photo_for_shards
from imagecloud.errors import SystemBusy
from imagecloud.recognition.findings import Findings, View
from imagecloud.recognition.search import Match, matches_of
from imagecloud.recognition.settings import RecognizerSettings
from imagecloud.service.recognizer import Analysing
from imagecloud.storage.featurestore import FeatureStore
from imagecloud.vision.analysis import Analyser, QueryAnalysis

log = logging.getLogger(__name__)

_PREFIX = "imagecloud-shard-"


@dataclass(frozen=True)
class ClusterSettings:
    address: str  # a Ray cluster address ("auto": the cluster this machine's `ray start` joined)
    shards: int = 2
    namespace: str = "imagecloud"
    timeout: float = 5.0  # seconds a shard may take to answer a search, add or remove
    start_timeout: float = 3600.0  # seconds to wait for the shards to load at start-up
    reconcile_seconds: float = 30.0


def shard_name(number: int, count: int) -> str:
    return f"{_PREFIX}{number}-of-{count}"


class ClusterRecognizer(Analysing):
    """:class:`imagecloud.service.recognizer.Recognition` over index shards (see the module docstring);
    photos and targets are analysed in this process (:class:`imagecloud.service.recognizer.Analysing`)."""

    def __init__(self, settings: RecognizerSettings, cluster: ClusterSettings, database_url: str) -> None:
        self.settings = settings
        self.cluster = cluster
        self.database_url = database_url
        self.analyser = Analyser(settings.analysis)
        self._shards: list[Any] = []  # actor handles, by shard number
        self._connecting = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=max(2, cluster.shards), thread_name_prefix="shards")

    # ----------------------------------------------------------------------------- start and stop
    def start(self, store: FeatureStore) -> None:
        """Join the cluster, create the shards that do not run yet, and wait until every one has loaded."""
        del store  # each shard reads the database itself
        import ray

        self._connect()
        deadline = time.monotonic() + self.cluster.start_timeout
        for number, shard in enumerate(self._shards):
            info = ray.get(shard.info.remote(), timeout=max(1.0, deadline - time.monotonic()))
            log.info("index shard %d of %d: %d targets", number, self.cluster.shards, info.targets)

    def _connect(self) -> None:
        """Join the cluster and get (or create) the shard actors, without waiting for them to load."""
        import ray

        with self._connecting:
            if not self._shards:
                self._join(ray)

    def _join(self, ray: Any) -> None:
        _join_cluster(self.cluster.address, self.cluster.namespace)
        self._refuse_other_counts()
        self._shards = [self._create(ray, n) for n in range(self.cluster.shards)]

    def _create(self, ray: Any, number: int) -> Any:
        """The shard's actor: the running one if there is one, else a new one on a node of its own.

        A shard is pinned to its node, and restarted there when its process dies. When the node itself is
        lost, Ray gives the actor up (it cannot be scheduled there any more) and the next call that finds
        it so creates it anew on a node that is alive, where it reloads from the database.
        """
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        nodes = sorted(node["NodeID"] for node in ray.nodes() if node["Alive"])
        return (
            ray.remote(Shard)
            .options(
                name=shard_name(number, self.cluster.shards),
                lifetime="detached",  # outlives the server that created it; the others find it by name
                get_if_exists=True,
                max_restarts=-1,
                num_cpus=0,  # searches are few and short; the box's cores are the vision workers'
                max_concurrency=4,
                # Ray's own SPREAD and soft node affinity were both seen to put two shards on one of two
                # nodes; a hard affinity puts shard n on the n-th node.
                scheduling_strategy=NodeAffinitySchedulingStrategy(nodes[number % len(nodes)], soft=False),
            )
            .remote(self._plan(number))
        )

    def _plan(self, number: int) -> ShardPlan:
        seconds = self.cluster.reconcile_seconds
        return ShardPlan(
            number=number,
            count=self.cluster.shards,
            database_url=self.database_url,
            settings=self.settings,
            reconcile_seconds=seconds,
            grace_seconds=max(2 * seconds, 4 * self.cluster.timeout),
        )

    def _refuse_other_counts(self) -> None:
        ours = {shard_name(n, self.cluster.shards) for n in range(self.cluster.shards)}
        others = [name for name in _shard_names() if name not in ours]
        if others:
            raise RuntimeError(
                f"the cluster runs other index shards ({', '.join(others)}) than the {self.cluster.shards} "
                "this server was started with: stop them first (imagecloud cluster stop) or use their count"
            )

    def stop(self) -> None:
        self._pool.shutdown(wait=False)

    def dependencies(self) -> dict[str, dict[str, Any]]:
        """Each shard, and whether it answers now (``/readyz``).

        The index counts as up while any shard answers: a load balancer that took every API server out of
        rotation for one lost shard would stop the channels of all the others too. Each shard's own state
        is listed, and ``degraded`` says that some channels answer 20015.
        """
        shards: list[dict[str, Any]] = []
        for number in range(len(self._shards)):  # none before the start-up connected
            try:
                info = self._call(number, "info", timeout=min(2.0, self.cluster.timeout))
                shards.append({**describe(info), "ok": True})
            except SystemBusy:
                shards.append({"shard": number, "ok": False})
        up = sum(shard["ok"] for shard in shards)
        return {
            "index": {
                "backend": "ray",
                "address": self.cluster.address,
                "ok": up > 0,
                "degraded": up < len(shards),
                "shards": shards,
            }
        }

    def infos(self) -> list[ShardInfo]:
        return [self._call(number, "info") for number in range(len(self._shards))]

    # ----------------------------------------------------------------------------- changes
    def add(self, scope: int, target_id: int, features_blob: bytes) -> None:
        self._change(scope, target_id, "add", scope, target_id, features_blob)

    def remove(self, scope: int, target_id: int) -> None:
        self._change(scope, target_id, "remove", scope, target_id)

    def drop_scope(self, scope: int) -> None:
        self._call(self.shard_of(scope), "drop_channel", scope)

    def _change(self, scope: int, target_id: int, method: str, *args: Any) -> None:
        number = self.shard_of(scope)
        try:
            self._call(number, method, *args)
        except SystemBusy:
            # Queued behind the lost call, whenever the shard runs again: it then holds the target exactly
            # if the row exists (the caller commits or rolls back in the meantime).
            self._shards[number].resync.remote(target_id)
            raise

    def shard_of(self, scope: int) -> int:
        return shard_of(scope, self.cluster.shards)

    # ----------------------------------------------------------------------------- searches
    def search(self, query: QueryAnalysis, scopes: Sequence[int], max_results: int = 1) -> list[Match]:
        wanted = max(1, max_results)
        answers = self._findings(query, scopes, wanted).answers(query.width, query.height)
        return matches_of(answers, wanted, _held)

    def similar(self, query: QueryAnalysis, scopes: Sequence[int], limit: int) -> list[Match]:
        wanted = max(1, limit)
        found = self._findings(query, scopes, wanted, upload=True)
        return matches_of(found.lookalikes(), wanted, _held)

    def _findings(
        self, query: QueryAnalysis, scopes: Sequence[int], wanted: int, *, upload: bool = False
    ) -> Findings:
        """Every shard's plausible views of the photo, merged.

        One shard is asked for its whole search. Several are first asked for their searches' cheap first
        round only: one process voting over all the channels stops after that round once the photo is
        settled, and so does this, instead of waiting for the shards that do not hold the print to finish
        a search of nothing. Only if no shard settled it are they all asked for the whole search (which
        repeats the first round: a shard keeps no state between calls).
        """
        by_shard: dict[int, list[int]] = {}
        for scope in scopes:
            by_shard.setdefault(self.shard_of(scope), []).append(scope)
        photo = photo_for_shards(query)
        overlap = self.settings.search.acceptance.overlap
        if len(by_shard) > 1:
            first = Findings(overlap=overlap, views=self._gather(by_shard, photo, wanted, True, upload))
            if first.accepted >= wanted:
                return first
        return Findings(overlap=overlap, views=self._gather(by_shard, photo, wanted, False, upload))

    def _gather(
        self,
        by_shard: dict[int, list[int]],
        photo: QueryAnalysis,
        wanted: int,
        first_round: bool,
        upload: bool,
    ) -> list[View]:
        calls = [
            self._pool.submit(self._call, number, "find", photo, sorted(own), wanted, first_round, upload)
            for number, own in sorted(by_shard.items())
        ]
        views: list[View] = []
        for call in calls:
            views.extend(call.result())  # a shard that does not answer: SystemBusy, never a silent miss
        return views

    # ----------------------------------------------------------------------------- calls
    def _call(self, number: int, method: str, *args: Any, timeout: float | None = None) -> Any:
        import ray
        from ray.exceptions import ActorDiedError, ActorUnschedulableError, GetTimeoutError, RayError

        self._connect()
        shard = self._shards[number]
        ref = getattr(shard, method).remote(*args)
        try:
            return ray.get(ref, timeout=self.cluster.timeout if timeout is None else timeout)
        except RayError as error:
            if isinstance(error, GetTimeoutError) and method in ("find", "info"):
                with contextlib.suppress(Exception):  # best effort: the shard may be gone altogether
                    ray.cancel(ref)  # a search nobody waits for need not run when the shard is back
            if isinstance(error, ActorDiedError | ActorUnschedulableError):
                self._revive(ray, number, shard)
            raise SystemBusy(f"index shard {number} does not answer ({type(error).__name__})") from error

    def _revive(self, ray: Any, number: int, dead: Any) -> None:
        """A new actor for a shard Ray gave up (its node was lost); it loads while callers hear 20015."""
        with self._connecting:
            if self._shards[number] is not dead:  # another thread got there first
                return
            with contextlib.suppress(Exception):
                ray.kill(dead, no_restart=True)  # frees the name if Ray has not yet
            self._shards[number] = self._create(ray, number)
            log.warning("index shard %d is being recreated on a live node", number)

    @property
    def restored(self) -> int:
        return 0

    def __len__(self) -> int:
        return sum(info.targets for info in self.infos())


def _held(_target: int) -> bool:
    # The shards return only views of targets they hold; the service drops any whose row is gone.
    return True


def _join_cluster(address: str, namespace: str) -> Any:
    """This process joined to the cluster (once: Ray keeps one connection per process)."""
    import ray

    if not ray.is_initialized():
        ray.init(address=address, namespace=namespace, logging_level=logging.WARNING)
    return ray


def _shard_names() -> list[str]:
    """The index shards running in this process's namespace, whatever their count."""
    from ray.util import list_named_actors

    return sorted(name for name in list_named_actors(all_namespaces=False) if name.startswith(_PREFIX))


def running_shards(address: str, namespace: str, timeout: float = 10.0) -> list[tuple[str, ShardInfo | None]]:
    """The index shards the cluster runs in ``namespace``, each with its state (None: not answering)."""
    ray = _join_cluster(address, namespace)
    found: list[tuple[str, ShardInfo | None]] = []
    for name in _shard_names():
        try:
            found.append((name, ray.get(ray.get_actor(name).info.remote(), timeout=timeout)))
        except Exception:  # a shard restarting or gone: reported as not answering
            found.append((name, None))
    return found


def stop_shards(address: str, namespace: str) -> list[str]:
    """End every index shard of ``namespace`` (they are rebuilt from the database when servers start)."""
    ray = _join_cluster(address, namespace)
    names = _shard_names()
    for name in names:
        ray.kill(ray.get_actor(name), no_restart=True)
    return names
