"""`imagecloud bench scale --shards N`: what going through index shards on a Ray cluster costs.

The same targets, in the same database, are searched by the in-process index of one server and by ``N``
shards on a Ray cluster, in one process and one run, photo by photo in alternation (so the machine's load
falls on both alike):

* ``N`` channels, each placed on a shard of its own; the development set's covers are spread over them and
  distractors analysed from real photos (as in :mod:`imagecloud.bench.scale`) fill each to its size;
* every cover photo is searched in its cover's channel (one shard answers) and in all channels (every
  shard answers, and the views are merged here), and as many photos of nothing enrolled likewise;
* reported: FindImage search time (analysis excluded: the same in both) p50/p95 for each way, the
  overhead as the median of the per-photo differences, recall@1 and whether every answer is identical,
  and each shard's resident memory.

The database is PostgreSQL (``--database``): shards and servers of a cluster must share one.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from imagecloud.bench import machine
from imagecloud.bench.corpus import Pool
from imagecloud.bench.scale import dataset_photos, percentiles, planted_covers, render_sources, rss_bytes
from imagecloud.cluster.placement import shard_of
from imagecloud.cluster.recognizer import ClusterRecognizer, ClusterSettings, stop_shards
from imagecloud.recognition.search import Match
from imagecloud.recognition.settings import RecognizerSettings, with_overrides
from imagecloud.service.recognizer import Recognizer
from imagecloud.storage import Database, Target, channels, targets, users
from imagecloud.storage.blobs import new_blob_key
from imagecloud.storage.featurestore import FeatureStore
from imagecloud.vision.analysis import QueryAnalysis

Search = Callable[[QueryAnalysis, Sequence[int]], list[Match]]


def _fill(db: Database, pool: Pool, planted: dict[int, bytes], size: int, shards: int) -> dict[str, Any]:
    """A fresh user with one channel per shard holding ``size`` targets in all; returns the layout."""
    tag = uuid.uuid4().hex[:8]
    chans: dict[int, int] = {}  # shard -> channel id
    with db.session() as session:
        users.insert(session, f"bench{tag}", "-")
        session.flush()
        owner = users.by_name(session, f"bench{tag}")
        assert owner is not None
        k = 0
        while len(chans) < shards:
            channel = channels.insert(session, f"bench-{tag}-{k}", owner.id, 10**9)
            session.flush()
            chans.setdefault(shard_of(channel.id, shards), channel.id)
            k += 1
    order = [chans[s] for s in range(shards)]
    cover_of: dict[int, int] = {}  # planted id -> target id
    channel_of: dict[int, int] = {}  # target id -> channel id
    blobs = list(planted.items())
    distractors = size - len(blobs)
    started = time.monotonic()
    with db.session() as session:
        for i, (planted_id, blob) in enumerate(blobs):
            target_id = _insert(session, order[i % shards], f"cover{planted_id}", blob)
            cover_of[planted_id] = target_id
            channel_of[target_id] = order[i % shards]
    for start in range(0, distractors, 2000):
        with db.session() as session:
            for j in range(start, min(distractors, start + 2000)):
                _insert(session, order[j % shards], f"d{j:07d}", pool.blob(j % len(pool)))
    print(f"  {size} targets stored in {time.monotonic() - started:.0f} s", flush=True)
    return {"channels": order, "cover_of": cover_of, "channel_of": channel_of, "owner": f"bench{tag}"}


def _insert(session: Any, channel_id: int, identifier: str, blob: bytes) -> int:
    target = Target(
        channel_id=channel_id,
        identifier=identifier,
        meta=None,
        level=3,
        matchratio=1.0,
        width=640,
        height=480,
        size_bytes=0,
        content_type="image/jpeg",
        blob_key=new_blob_key(),
    )
    return targets.insert(session, target, blob)


def _answer(matches: list[Match]) -> int | None:
    return matches[0].target_id if matches else None


def _time(search: Search, query: QueryAnalysis, scopes: Sequence[int]) -> tuple[float, int | None]:
    started = time.perf_counter()
    answer = _answer(search(query, scopes))
    return (time.perf_counter() - started) * 1000, answer


def measure(
    dataset: Path,
    work: Path,
    database_url: str,
    size: int,
    shards: int,
    cluster_address: str,
    queries: int,
) -> dict[str, Any]:
    settings = with_overrides(RecognizerSettings(), {"search": {"second_pass": "off"}})
    photos, _, held_out = dataset_photos(dataset)
    pool = Pool(work)
    db = Database(database_url)
    db.migrate()
    local = Recognizer(settings)
    planted = planted_covers(dataset, local)
    layout = _fill(db, pool, planted, size, shards)
    mine = set(layout["channels"])
    store = FeatureStore(db, placed=lambda channel: channel in mine)

    rss_before = rss_bytes()
    started = time.monotonic()
    local.start(store)
    local.wait_idle()
    local_load_s = time.monotonic() - started
    local_rss = rss_bytes() - rss_before

    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    import ray

    if not ray.is_initialized():
        if cluster_address:
            ray.init(address=cluster_address, namespace=namespace, logging_level=logging.ERROR)
        else:  # a one-node cluster of this process's own, on the loopback interface
            ray.init(
                address="local",
                namespace=namespace,
                logging_level=logging.ERROR,
                _node_ip_address="127.0.0.1",
            )
    cluster = ClusterRecognizer(
        settings,
        ClusterSettings(address=cluster_address or "auto", shards=shards, namespace=namespace, timeout=60),
        database_url,
    )
    started = time.monotonic()
    cluster.start(store)
    cluster_load_s = time.monotonic() - started
    infos = cluster.infos()

    analysed = [(local.analyse_query(p.read_bytes()), planted_id) for p, planted_id in photos[:queries]]
    nothing = [(local.analyse_query(p.read_bytes()), None) for p in held_out[:queries]]
    rows: dict[str, dict[str, list[float]]] = {}
    answers: dict[str, dict[str, list[int | None]]] = {}
    searches: dict[str, Search] = {"in-process": local.search, "cluster": cluster.search}
    for kind, items in (("covers", analysed), ("nothing", nothing)):
        for scope_kind in ("one channel", "all channels"):
            key = f"{kind}, {scope_kind}"
            rows[key] = {name: [] for name in searches}
            answers[key] = {name: [] for name in searches}
            for i, (query, planted_id) in enumerate(items):
                if scope_kind == "one channel":
                    own = layout["channel_of"][layout["cover_of"][planted_id]] if planted_id else None
                    scopes = [own] if own is not None else [layout["channels"][i % shards]]
                else:
                    scopes = list(layout["channels"])
                order = list(searches) if i % 2 == 0 else list(reversed(searches))
                for name in order:
                    ms, answer = _time(searches[name], query, scopes)
                    rows[key][name].append(ms)
                    answers[key][name].append(answer)
    stop_shards(cluster_address or "auto", namespace)
    ray.shutdown()
    with db.session() as session:  # the next size starts from an empty database again
        users.delete(session, layout["owner"])

    result: dict[str, Any] = {
        "targets": size,
        "shards": shards,
        "per_shard": size // shards,
        "load_s": {"in-process": round(local_load_s, 1), "cluster": round(cluster_load_s, 1)},
        "in_process_index_rss_mb": round(local_rss / 2**20),
        "shard_rss_mb": [round(info.rss_bytes / 2**20) for info in infos],
        "shard_targets": [info.targets for info in infos],
        "ways": {},
    }
    truth = [layout["cover_of"][p] for _, p in analysed]
    for key in rows:
        a, b = np.asarray(rows[key]["in-process"]), np.asarray(rows[key]["cluster"])
        same = sum(x == y for x, y in zip(answers[key]["in-process"], answers[key]["cluster"], strict=True))
        way: dict[str, Any] = {
            "in-process": percentiles(list(a)),
            "cluster": percentiles(list(b)),
            "overhead_p50_ms": round(float(np.median(b - a)), 1),
            "identical_answers": f"{same}/{len(a)}",
        }
        if key.startswith("covers"):
            for name in searches:
                hits = sum(x == t for x, t in zip(answers[key][name], truth, strict=True))
                way[f"recall_{name}"] = round(100 * hits / len(truth), 1)
        else:
            for name in searches:
                way[f"answered_{name}"] = sum(x is not None for x in answers[key][name])
        result["ways"][key] = way
    db.dispose()
    return result


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Index shards on a Ray cluster: overhead against one process",
        "",
        "Machine: {cpu}, {cores} cores, {memory_gib} GiB, Python {python}, OpenCV {opencv}.".format(
            **report["machine"]
        ),
        f"Command: `{report['command']}`.",
        "",
        "| targets | shards | search | in-process p50 / p95 ms | cluster p50 / p95 ms | overhead p50 ms "
        "| recall@1 in-process / cluster | identical answers |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in report["runs"]:
        for key, way in run["ways"].items():
            recall = (
                f"{way['recall_in-process']}% / {way['recall_cluster']}%"
                if "recall_in-process" in way
                else f"answered {way['answered_in-process']} / {way['answered_cluster']}"
            )
            lines.append(
                f"| {run['targets']:,} | {run['shards']} | {key} | {way['in-process']['p50']} / "
                f"{way['in-process']['p95']} | {way['cluster']['p50']} / {way['cluster']['p95']} | "
                f"{way['overhead_p50_ms']} | {recall} | {way['identical_answers']} |"
            )
    lines += [
        "",
        "| targets | shards | load s in-process / cluster | index RSS MB in-process | shard RSS MB |",
    ]
    lines.append("|---|---|---|---|---|")
    for run in report["runs"]:
        lines.append(
            f"| {run['targets']:,} | {run['shards']} | {run['load_s']['in-process']} / "
            f"{run['load_s']['cluster']} | {run['in_process_index_rss_mb']} | "
            f"{', '.join(str(x) for x in run['shard_rss_mb'])} |"
        )
    return "\n".join(lines) + "\n"


def run(
    dataset: Path,
    work: Path,
    out: Path,
    database_url: str,
    sizes: Sequence[int],
    shards: int,
    cluster_address: str,
    queries: int,
    workers: int,
    sources: Sequence[Path] = (),
) -> dict[str, Any]:
    import json

    work.mkdir(parents=True, exist_ok=True)
    pool = Pool(work)
    pool.grow(render_sources(dataset, sources), max(sizes), workers)
    runs = []
    for size in sizes:
        print(f"measuring {size} targets on {shards} shards", flush=True)
        runs.append(measure(dataset, work, database_url, size, shards, cluster_address, queries))
    report = {
        "machine": machine.describe(),
        "command": f"imagecloud bench scale {dataset} --shards {shards} --sizes "
        + ",".join(str(s) for s in sizes),
        "cpus": os.cpu_count(),
        "runs": runs,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "shards.json").write_text(json.dumps(report, indent=1))
    (out / "shards.md").write_text(markdown(report))
    return report
