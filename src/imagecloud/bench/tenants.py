"""`imagecloud bench scale --tenants N`: does a small channel stay small-scale on a crowded server?

One owner's channel holds the development set's 100 covers and ``channel_distractors`` photos of its first
half of distractors. It is searched in two recognizers side by side, in one process: one holding that
channel alone, one holding it beside ``others`` targets of other owners, in channels of ``others_per_channel``
(``bench scale``'s corpus: images rendered from real photos, analysed like targets and cached in ``--work``,
:mod:`imagecloud.bench.corpus`). Every photo is analysed once and searched in both, in alternating
order, so the two are timed under the same load. Queried: the 200 cover photos (recall@1 in the channel) and
the second half of the distractor photos (photos of nothing enrolled).

Searches are scoped to the caller's channels, and every channel is an index of its own
(:mod:`imagecloud.index.binary`), so the other owners' targets should cost nothing; this measures it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from imagecloud.bench import machine
from imagecloud.bench.corpus import Pool
from imagecloud.bench.scale import dataset_photos, percentiles, planted_covers, render_sources, rss_bytes
from imagecloud.errors import FeatureInsufficient
from imagecloud.service.recognizer import Recognizer
from imagecloud.vision.analysis import QueryAnalysis

CHANNEL = 1
CHANNEL_DISTRACTOR_BASE = 500  # the channel's own distractors get ids 500, 501, ...
OTHERS_BASE = 1_000_000  # other owners' targets get ids 1,000,000 + j


def run(
    dataset: Path,
    work: Path,
    out: Path,
    others: int,
    *,
    others_per_channel: int = 1_000,
    channel_distractors: int = 100,
    workers: int = 1,
    sources: Sequence[Path] = (),
) -> dict[str, Any]:
    """Build both recognizers, search every photo in each, write ``report.json`` and ``report.md``."""
    photos, enrol_from, held_out = dataset_photos(dataset)
    work.mkdir(parents=True, exist_ok=True)
    pool = Pool(work)
    pool.grow(render_sources(dataset, sources), others, workers)
    alone = Recognizer()
    channel = dict(planted_covers(dataset, alone))
    for j, path in enumerate(enrol_from[:channel_distractors]):
        try:
            channel[CHANNEL_DISTRACTOR_BASE + j] = alone.analyse_target(path.read_bytes()).features_blob
        except FeatureInsufficient:
            continue
    alone.load((CHANNEL, t, blob) for t, blob in channel.items())
    alone.wait_idle()
    rss_before = rss_bytes()
    crowded = Recognizer()
    crowded.load((CHANNEL, t, blob) for t, blob in channel.items())
    started = time.perf_counter()
    crowded.load((2 + j // others_per_channel, OTHERS_BASE + j, pool.blob(j)) for j in range(others))
    crowded.wait_idle()
    load_s = time.perf_counter() - started
    rss_others = rss_bytes() - rss_before

    covers = [(alone.analyse_query(p.read_bytes()), target) for p, target in photos]
    nothing = [alone.analyse_query(p.read_bytes()) for p in held_out]
    for rec in (alone, crowded):  # first searches fill caches: not timed
        for q, _ in covers[:10]:
            rec.search(q, [CHANNEL])
    results = {name: _empty() for name in ("alone", "crowded")}
    _alternate(alone, crowded, covers, nothing, results)
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine.describe(),
        "channel_targets": len(channel),
        "others": others,
        "others_per_channel": others_per_channel,
        "others_load_seconds": round(load_s, 1),
        "others_rss_mb": round(rss_others / 2**20),
        "cover_photos": len(covers),
        "photos_of_nothing": len(nothing),
        "runs": {name: _summary(r) for name, r in results.items()},
    }
    for kind in ("covers", "nothing"):
        p50 = {name: run[f"{kind}_ms"]["p50"] for name, run in report["runs"].items()}
        report[f"p50_ratio_{kind}"] = round(p50["crowded"] / p50["alone"], 3)
    out.mkdir(parents=True, exist_ok=True)
    (out / "tenants.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "tenants.md").write_text(markdown(report))
    return report


def _empty() -> dict[str, list[Any]]:
    return {"covers_ms": [], "nothing_ms": [], "right": [], "wrong": [], "false": []}


def _alternate(
    alone: Recognizer,
    crowded: Recognizer,
    covers: Sequence[tuple[QueryAnalysis, int]],
    nothing: Sequence[QueryAnalysis],
    results: dict[str, dict[str, list[Any]]],
) -> None:
    """Each photo searched in both, the order swapped from photo to photo."""
    pairs = (("alone", alone), ("crowded", crowded))
    photos: list[tuple[QueryAnalysis, int | None]] = [*covers, *((q, None) for q in nothing)]
    for i, (q, target) in enumerate(photos):
        for name, rec in pairs if i % 2 == 0 else pairs[::-1]:
            started = time.perf_counter()
            found = rec.search(q, [CHANNEL])
            ms = 1000 * (time.perf_counter() - started)
            answer = found[0].target_id if found else None
            r = results[name]
            if target is None:  # a photo of nothing enrolled
                r["nothing_ms"].append(ms)
                r["false"].append(answer is not None)
            else:
                r["covers_ms"].append(ms)
                r["right"].append(answer == target)
                r["wrong"].append(answer not in (None, target))


def _summary(r: dict[str, list[Any]]) -> dict[str, Any]:
    return {
        "recall_at_1": round(float(np.mean(r["right"])), 4),
        "wrong": int(np.sum(r["wrong"])),
        "false_matches": int(np.sum(r["false"])),
        "covers_ms": percentiles(r["covers_ms"]),
        "nothing_ms": percentiles(r["nothing_ms"]),
    }


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    a, c = report["runs"]["alone"], report["runs"]["crowded"]
    lines = [
        "# A small channel on a crowded server",
        "",
        f"Run {report['date']} on {m['cpu']} ({m['cores']} cores, {m['memory_gib']} GiB), "
        f"Python {m['python']}.",
        "",
        f"One channel of {report['channel_targets']} targets (the 100 covers and distractor photos), "
        f"searched alone and beside {report['others']:,} targets of other owners in channels of "
        f"{report['others_per_channel']:,} (loaded in {report['others_load_seconds']} s, "
        f"{report['others_rss_mb']} MB of RSS). Search time in this process, photo analysis excluded "
        "(it is the same in both); each photo searched in both, in alternating order.",
        "",
        "| | channel alone | beside the other owners | ratio |",
        "|---|---|---|---|",
        f"| recall@1, {report['cover_photos']} cover photos | {100 * a['recall_at_1']:.1f}% | "
        f"{100 * c['recall_at_1']:.1f}% | |",
        f"| wrong identifiers | {a['wrong']} | {c['wrong']} | |",
        f"| false matches, {report['photos_of_nothing']} photos of nothing | {a['false_matches']} | "
        f"{c['false_matches']} | |",
        f"| search p50 / p95, cover photos | {a['covers_ms']['p50']} / {a['covers_ms']['p95']} ms | "
        f"{c['covers_ms']['p50']} / {c['covers_ms']['p95']} ms | {report['p50_ratio_covers']} |",
        f"| search p50 / p95, photos of nothing | {a['nothing_ms']['p50']} / {a['nothing_ms']['p95']} ms | "
        f"{c['nothing_ms']['p50']} / {c['nothing_ms']['p95']} ms | {report['p50_ratio_nothing']} |",
        "",
    ]
    return "\n".join(lines)
