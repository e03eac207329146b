"""`imagecloud bench scale`: recognition speed, recall and memory with 10k … 1M targets in one channel.

Targets. The development set's 100 covers are planted among distractors: images rendered from real photos
(the ``--source`` folders and the first half of the dataset's distractor photos; single photos and mosaics,
cropped, recoloured and warped) and analysed exactly like an enrolled target, in parallel, cached in
``--work`` (:mod:`imagecloud.bench.corpus`). Only when ``--real`` caps how many are rendered are the rest
*word-level variants* of the rendered ones: a distractor's visual words with a share replaced by words
drawn from the corpus' own word frequencies, verified (if they ever reach verification) against their
source's features. They cost no analysis but a ranking sees them as unnaturally alike, so they are reported
separately.

Queries. The 200 real photos of the covers (recall@1, and top-k of the word ranking alone) and the second
half of the distractor photos, which are never enrolled (any answer is a false match). With ``--negatives``
(exact and subset indexes), each set's ``enrol`` photos are enrolled among the distractors, in place of as
many of them, and its ``query`` photos are queried and reported per set: different photos of subjects like
the enrolled ones, where a larger channel must not raise the false-match rate.

Measurements, each in a fresh process: restart to ready (vocabulary + saved index), index RAM per target
from the process RSS before and after, FindImage server-side time on one core (photo analysis plus
search plus verification, as in the service), and the search p99 while a second thread adds 10 targets/s.
A 1k-target run with the exact index, in the same benchmark, is the recall baseline.
"""

from __future__ import annotations

import csv
import hashlib
import json
import multiprocessing
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from imagecloud.bench import machine
from imagecloud.bench.corpus import Pool
from imagecloud.bench.dataset import NegativeSet, images_in
from imagecloud.errors import ImageCloudError
from imagecloud.index.tiered import TierSettings
from imagecloud.index.words import Vocabulary, WordIndex, WordSettings
from imagecloud.recognition.settings import RecognizerSettings, with_overrides
from imagecloud.service.recognizer import Recognizer
from imagecloud.vision.features import Features

PLANTED_BASE = 1  # planted covers get target ids 1..100
DISTRACTOR_BASE = 1000  # distractor j gets id 1000 + j
NEGATIVE_BASE = 10**12  # the k-th enrolled photo of negative set s gets id NEGATIVE_BASE * (s + 1) + k
SCOPE = 1
VARIANT_SWAP = 0.15  # share of a real distractor's words a variant replaces


# ---------------------------------------------------------------------------------------- the corpus


def _words_job(args: tuple[str, str, int, int]) -> tuple[int, np.ndarray, np.ndarray]:
    vocab_path, work, start, stop = args
    pool = Pool(Path(work))
    index = WordIndex(Vocabulary.load(Path(vocab_path)))
    words = [index.words_of(Features.from_bytes(pool.blob(i)).descriptors) for i in range(start, stop)]
    lens = np.fromiter((len(w) for w in words), np.int64, len(words))
    return start, lens, np.concatenate(words).astype(np.int32)


def _pool_words(work: Path, vocab_path: Path, n: int, workers: int) -> tuple[np.ndarray, np.ndarray]:
    """Words of every real distractor (cached): ``(offsets, words)``."""
    cache = work / f"pool-words-{Vocabulary.load(vocab_path).digest}.npz"
    if cache.exists():
        with np.load(cache) as z:
            if len(z["offsets"]) - 1 >= n:
                return z["offsets"], z["words"]
    step = 2000
    jobs = [(str(vocab_path), str(work), s, min(n, s + step)) for s in range(0, n, step)]
    parts: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    with multiprocessing.Pool(workers) as pool:
        for start, lens, words in pool.imap_unordered(_words_job, jobs):
            parts[start] = (lens, words)
    lens = np.concatenate([parts[s][0] for s in sorted(parts)])
    words = np.concatenate([parts[s][1] for s in sorted(parts)])
    offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    np.savez(cache, offsets=offsets, words=words)
    return offsets, words


def _distractor_words(
    offsets: np.ndarray, words: np.ndarray, n_real: int, count: int, vocab_size: int
) -> Iterator[tuple[int, int, np.ndarray]]:
    """``(target, scope, words)`` of ``count`` distractors: real ones first, then variants."""
    freq = np.bincount(words, minlength=vocab_size).astype(np.float64) + 0.1
    cdf = np.cumsum(freq / freq.sum())
    rng = np.random.default_rng(7)
    for j in range(count):
        base = j % n_real
        w = words[offsets[base] : offsets[base + 1]].astype(np.int64)
        if j >= n_real:
            w = w.copy()
            swap = rng.random(len(w)) < VARIANT_SWAP
            w[swap] = np.minimum(np.searchsorted(cdf, rng.random(int(swap.sum()))), vocab_size - 1)
            w = np.unique(w)
        yield DISTRACTOR_BASE + j, SCOPE, w


# ---------------------------------------------------------------------------------------- measuring


# Shared by the scale, shards and tenants benchmarks.


def rss_bytes() -> int:
    """This process's resident anonymous memory: what it allocated, not the pages of files it read (the
    distractor pool is read through a memory map, whose pages the kernel may drop at any time)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    return 0


def percentiles(ms: Sequence[float]) -> dict[str, float]:
    """p50, p95, p99 and mean of times in milliseconds, rounded for a report."""
    if not ms:
        return {}
    a = np.asarray(ms)
    return {f"p{q}": round(float(np.percentile(a, q)), 1) for q in (50, 95, 99)} | {
        "mean": round(float(a.mean()), 1)
    }


def dataset_photos(dataset: Path) -> tuple[list[tuple[Path, int]], list[Path], list[Path]]:
    """(cover photo, planted id) pairs, distractor photos to enrol from, distractor photos to query."""
    targets = images_in(dataset / "targets")
    ids = {p.stem: PLANTED_BASE + i for i, p in enumerate(targets)}
    with open(dataset / "queries.csv") as f:
        photos = [(dataset / row["query"], ids[row["target"]]) for row in csv.DictReader(f)]
    distractors = images_in(dataset / "distractors")
    half = len(distractors) // 2
    return photos, distractors[:half], distractors[half:]


def planted_covers(dataset: Path, recognizer: Recognizer) -> dict[int, bytes]:
    """Features of the dataset's covers, by planted id, analysed as AddImage does."""
    targets = images_in(dataset / "targets")
    return {
        PLANTED_BASE + i: recognizer.analyse_target(p.read_bytes()).features_blob
        for i, p in enumerate(targets)
    }


def index_folder(
    work: Path,
    size: int,
    settings: Mapping[str, Any] | None = None,
    kind: str = "subset",
    negatives: Sequence[str] = (),
) -> Path:
    """Where the ``kind`` index of ``size`` targets is saved. The exact and subset indexes have one folder
    per set of recognition settings and of enrolled negative sets (``negatives``, their names), since a
    saved index is reused only by the settings and targets it was built with; the word index is built once
    by ``prepare``, with its defaults."""
    if (not settings and not negatives) or kind == "words":
        return work / f"index-{size}"
    key: Any = dict(settings or {})
    if negatives:
        key = {"settings": key, "negatives": list(negatives)}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
    return work / f"index-{size}-{digest}"


def negatives_file(work: Path, negatives: Sequence[NegativeSet]) -> Path:
    """Where ``prepare`` keeps the analysed enrol photos and the query list of these negative sets."""
    names = json.dumps([str(n.root.resolve()) for n in negatives])
    return work / f"negatives-{hashlib.sha256(names.encode()).hexdigest()[:10]}.json"


def enrol_negatives(negatives: Sequence[NegativeSet], recognizer: Recognizer) -> list[dict[str, Any]]:
    """Each set's ``enrol`` photos analysed as AddImage does (by target id, features as hex; a photo AddImage
    would refuse is counted, not enrolled) and its ``query`` photos."""
    sets = []
    for s, negative in enumerate(negatives):
        enrolled: dict[str, str] = {}
        refused = 0
        for k, path in enumerate(negative.enrol):
            try:
                blob = recognizer.analyse_target(path.read_bytes()).features_blob
            except ImageCloudError:
                refused += 1
                continue
            enrolled[str(NEGATIVE_BASE * (s + 1) + k)] = blob.hex()
        sets.append(
            {
                "name": negative.name,
                "enrolled": enrolled,
                "refused": refused,
                "queries": [str(p) for p in negative.queries],
            }
        )
    return sets


def measure(
    dataset: Path,
    work: Path,
    size: int,
    kind: str,
    mixed_seconds: float,
    overrides: Mapping[str, Any] | None = None,
    negatives: Path | None = None,
) -> dict[str, Any]:
    """Runs in a fresh process: open the saved index, time queries, measure RSS and mixed load.

    ``kind``: "exact", "subset" or "words", the index serving the channel. ``overrides``: recognition
    settings by path (as in the service's ``recognition`` table) applied on top of the defaults.
    ``negatives``: the file ``prepare`` wrote for the negative sets to enrol and query (exact and subset).
    """
    photos, _, held_out = dataset_photos(dataset)
    pool = Pool(work)
    planted_blobs = json.loads((work / "planted.json").read_text())
    planted = {int(k): bytes.fromhex(v) for k, v in planted_blobs.items()}
    negative_sets: list[dict[str, Any]] = json.loads(negatives.read_text()) if negatives else []
    names = [n["name"] for n in negative_sets]
    for n in negative_sets:  # enrolled beside the covers, in place of as many distractors
        planted |= {int(k): bytes.fromhex(v) for k, v in n["enrolled"].items()}
    folder = index_folder(work, size, overrides, kind, names)
    meta = json.loads((folder / "meta.json").read_text())
    n_real = int(meta["real"])

    def source(ids: Sequence[int]) -> dict[int, bytes]:
        out = {}
        for t in ids:
            out[t] = planted[t] if t in planted else pool.blob((t - DISTRACTOR_BASE) % n_real)
        return out

    tiers = TierSettings(
        large_min_targets=10**9 if kind == "exact" else 1, large="words" if kind == "words" else "subset"
    )
    settings = with_overrides(RecognizerSettings(index=tiers), overrides or {})
    rss0 = rss_bytes()
    started = time.perf_counter()
    recognizer = Recognizer(settings, feature_source=source, index_dir=folder)
    if kind != "words":
        if kind == "subset":
            recognizer.open_words({SCOPE: size}, np.zeros(0, np.int64))  # marks the channel as large

        def items() -> Iterator[tuple[int, int, bytes]]:
            yield from ((SCOPE, t, b) for t, b in planted.items())
            for j in range(size - len(planted)):
                yield SCOPE, DISTRACTOR_BASE + j, pool.blob(j)

        recognizer.load(items())
        recognizer.wait_idle()  # the service answers once its index is built; so does this
    else:
        live = np.array(meta["ids"], np.int64) if "ids" in meta else None
        ids = (
            live
            if live is not None
            else np.concatenate(
                [
                    np.arange(PLANTED_BASE, PLANTED_BASE + len(planted)),
                    DISTRACTOR_BASE + np.arange(size - len(planted)),
                ]
            )
        )
        missing = recognizer.open_words({SCOPE: size}, ids)
        assert not missing, f"saved index lacks {len(missing)} targets"
    ready_s = time.perf_counter() - started
    rss1 = rss_bytes()
    words = recognizer.words

    # Queries, one at a time on one core (the vision pool runs one search per core).
    found = wrong = 0
    ranks: list[int] = []
    rank_ms: list[float] = []
    real_ms: list[float] = []
    for path, truth in photos:
        data = path.read_bytes()
        t0 = time.perf_counter()
        query = recognizer.analyse_query(data)
        matches = recognizer.search(query, [SCOPE])
        real_ms.append((time.perf_counter() - t0) * 1000)
        if matches:
            found += matches[0].target_id == truth
            wrong += matches[0].target_id != truth
        if words is not None:
            t0 = time.perf_counter()
            words.search(query.features.descriptors, [SCOPE], 20)  # the ranking alone, as the service asks
            rank_ms.append((time.perf_counter() - t0) * 1000)
            hits = words.search(query.features.descriptors, [SCOPE], 300)
            ids_ranked = [h.target for h in hits]
            ranks.append(ids_ranked.index(truth) if truth in ids_ranked else 10**6)
    held_ms, held_answered = _photos_of_nothing(recognizer, held_out)
    false = len(held_answered)
    negative_results = []
    for n in negative_sets:
        set_ms, answered = _photos_of_nothing(recognizer, [Path(p) for p in n["queries"]])
        negative_results.append(
            {
                "set": n["name"],
                "enrolled": len(n["enrolled"]),
                "refused": n["refused"],
                "queries": len(n["queries"]),
                "false_matches": len(answered),
                "answered": answered,
                "find_ms": percentiles(set_ms),
            }
        )

    postings = words.posting_stats() if words is not None else {}  # before the mixed load adds targets
    mixed = _mixed_load(recognizer, photos, pool, n_real, mixed_seconds) if mixed_seconds > 0 else {}
    r = np.asarray(ranks) if ranks else np.zeros(0)
    return {
        "targets": size,
        "index": kind,
        "settings": dict(overrides or {}),
        "real_distractors": min(n_real, size - len(planted)),
        "variant_distractors": max(0, size - len(planted) - n_real),
        "restart_to_ready_s": round(ready_s, 2),
        "index_rss_bytes_per_target": round((rss1 - rss0) / size, 1),
        "index_rss_mib": round((rss1 - rss0) / 2**20, 1),
        "recall_at_1": round(found / len(photos), 4),
        "wrong": wrong,
        "false_matches": false,
        "distractor_queries": len(held_out),
        "negative_sets": negative_results,
        "word_rank_topk": {str(k): round(float((r < k).mean()), 4) for k in (1, 10, 50, 300)}
        if len(r)
        else {},
        "find_ms_real_photos": percentiles(real_ms),
        "find_ms_distractor_photos": percentiles(held_ms),
        "find_ms_all": percentiles(real_ms + held_ms),
        "word_ranking_ms": percentiles(rank_ms),
        "posting_stats": postings,
        "mixed_load": mixed,
    }


def _photos_of_nothing(
    recognizer: Recognizer, paths: Sequence[Path]
) -> tuple[list[float], list[dict[str, Any]]]:
    """FindImage time of each photo (ms), and the photos answered anyway: photo, target id, score."""
    ms: list[float] = []
    answered: list[dict[str, Any]] = []
    for path in paths:
        data = path.read_bytes()
        t0 = time.perf_counter()
        try:
            query = recognizer.analyse_query(data)
            matches = recognizer.search(query, [SCOPE])
        except ImageCloudError:  # too few keypoints: the service answers 20013, not a match
            matches = []
        ms.append((time.perf_counter() - t0) * 1000)
        if matches:
            answered.append({"photo": str(path), "target": matches[0].target_id, "score": matches[0].score})
    return ms, answered


def _mixed_load(
    recognizer: Recognizer, photos: list[tuple[Path, int]], pool: Pool, n_real: int, seconds: float
) -> dict[str, Any]:
    """Search p99 read-only, then with a thread adding 10 targets/s, back to back in one process."""
    queries = [recognizer.analyse_query(p.read_bytes()) for p, _ in photos[:60]]

    def run(with_adds: bool) -> tuple[list[float], int]:
        stop = threading.Event()
        added = 0

        def adder() -> None:
            nonlocal added
            next_id = 10**8 + (10**6 if with_adds else 0)
            while not stop.is_set():
                t0 = time.perf_counter()
                recognizer.add(SCOPE, next_id + added, pool.blob(added % n_real))
                added += 1
                time.sleep(max(0.0, 0.1 - (time.perf_counter() - t0)))

        thread = threading.Thread(target=adder, daemon=True)
        if with_adds:
            thread.start()
        times: list[float] = []
        end = time.perf_counter() + seconds
        i = 0
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            recognizer.search(queries[i % len(queries)], [SCOPE])
            times.append((time.perf_counter() - t0) * 1000)
            i += 1
        stop.set()
        if with_adds:
            thread.join()
        return times, added

    read_only, _ = run(False)
    with_adds, added = run(True)
    ro, wa = percentiles(read_only), percentiles(with_adds)
    return {
        "seconds_each": seconds,
        "read_only_search_ms": ro,
        "with_adds_search_ms": wa,
        "adds_per_second": round(added / seconds, 1),
        "p99_ratio": round(wa["p99"] / ro["p99"], 2) if ro.get("p99") else None,
    }


# ---------------------------------------------------------------------------------------- driver


def render_sources(dataset: Path, sources: Sequence[Path]) -> list[Path]:
    """The photos distractors are rendered from: the ``sources`` folders', then the dataset's enrol half.

    A source folder without images is an error, not an empty contribution: a mistyped ``--source`` would
    otherwise render the whole corpus from the dataset's few hundred photos.
    """
    _, enrol_from, _ = dataset_photos(dataset)
    photos: list[Path] = []
    for folder in sources:
        found = images_in(folder)
        if not found:
            raise ValueError(f"{folder} holds no JPEG or PNG files to render distractors from")
        photos += found
    return photos + enrol_from


def prepare(
    dataset: Path,
    work: Path,
    sizes: Sequence[int],
    real: int,
    workers: int,
    sources: Sequence[Path] = (),
    word_index: bool = True,
    negatives: Sequence[NegativeSet] = (),
) -> None:
    """Render and analyse ``real`` distractors (at most the largest size) and the ``negatives``' enrol
    photos; with ``word_index``, train the vocabulary, build and save one word index per size."""
    work.mkdir(parents=True, exist_ok=True)
    largest = max(sizes)
    n_real = min(real, largest)
    pool = Pool(work)
    print(f"rendering and analysing {n_real} distractors", flush=True)
    pool.grow(render_sources(dataset, sources), n_real, workers)
    recognizer = Recognizer()
    planted = planted_covers(dataset, recognizer)
    (work / "planted.json").write_text(json.dumps({str(k): v.hex() for k, v in planted.items()}))
    enrolled = negatives_file(work, negatives)
    if negatives and not enrolled.exists():
        print("analysing the negative sets' enrol photos", flush=True)
        enrolled.write_text(json.dumps(enrol_negatives(negatives, recognizer)))
    if not word_index:
        return
    vocab_path = work / "vocabulary.npz"
    settings = WordSettings()
    if not vocab_path.exists():
        print("training the vocabulary", flush=True)
        rng = np.random.default_rng(0)
        per = max(1, TierSettings().vocabulary_sample // n_real)
        sample = []
        for i in range(n_real):
            d = Features.from_bytes(pool.blob(i)).descriptors
            sample.append(d[rng.permutation(len(d))[:per]])
        Vocabulary.train(np.concatenate(sample), settings).save(vocab_path)
    vocab = Vocabulary.load(vocab_path)
    print("quantising distractors", flush=True)
    offsets, words = _pool_words(work, vocab_path, n_real, workers)
    for size in sizes:
        folder = work / f"index-{size}"
        if (folder / "meta.json").exists():
            continue
        print(f"building the {size}-target index", flush=True)
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(vocab_path, folder / "vocabulary.npz")
        index = WordIndex(vocab, settings)
        started = time.perf_counter()
        planted_words = [
            (t, SCOPE, index.words_of(Features.from_bytes(b).descriptors)) for t, b in planted.items()
        ]
        index.load(planted_words)
        index.load(_distractor_words(offsets, words, n_real, size - len(planted), len(vocab)))
        index.wait_idle()
        build_s = time.perf_counter() - started
        index.save(folder / "words")
        disk = sum(f.stat().st_size for f in (folder / "words").iterdir())
        meta = {"real": n_real, "build_s": round(build_s, 1), "index_disk_bytes": disk}
        (folder / "meta.json").write_text(json.dumps(meta))


def run(
    dataset: Path,
    work: Path,
    out: Path,
    sizes: Sequence[int],
    real: int,
    workers: int,
    mixed_seconds: float,
    baseline: int = 1000,
    exact: bool = True,
    sources: Sequence[Path] = (),
    large: Sequence[str] = ("subset", "words"),
    settings: Mapping[str, Any] | None = None,
    negatives: Sequence[NegativeSet] = (),
) -> dict[str, Any]:
    """``real``: distractors rendered and analysed, the rest word-level variants; 0 renders them all.

    ``large``: the large-scale indexes measured at every size ("subset", "words"). ``settings``:
    recognition settings by path applied in every measuring process (the word index is still built with
    its defaults); the exact and subset indexes are saved in a folder of their own per set of settings and
    of ``negatives`` (sets whose enrol photos are enrolled and query photos queried; not with words).
    """
    settings = dict(settings or {})
    with_overrides(RecognizerSettings(), settings)  # an unknown name fails here, before any work
    real = real if real > 0 else max([*sizes, baseline])
    if exact and baseline > real:  # the baseline is built from rendered distractors only
        raise ValueError(f"the {baseline}-target baseline needs --real of at least {baseline}")
    if negatives and "words" in large:
        raise ValueError(
            "negative sets are measured on the exact and subset indexes: leave words out of --large"
        )
    covers = len(images_in(dataset / "targets"))
    needed = covers + sum(len(n.enrol) for n in negatives)
    smallest = min([*sizes, *([baseline] if exact else [])])
    if needed > smallest:
        raise ValueError(f"{smallest} targets cannot hold the {needed} covers and negative enrol photos")
    prepare(dataset, work, sizes, real, workers, sources, word_index="words" in large, negatives=negatives)
    names = [n.name for n in negatives]
    neg_file = str(negatives_file(work, negatives)) if negatives else ""
    results = []
    # The exact index at ``baseline`` targets is the recall baseline. Sizes below the service's
    # large_min_targets are measured on both indexes: the exact one is what the service uses there, the word
    # index shows how its ranking holds up as the channel grows.
    switch = TierSettings().large_min_targets
    # (Exact and subset runs need that many real distractors: variants exist as words only.)
    exact_sizes = [baseline, *(s for s in sizes if s < switch and s != baseline and s <= real)]
    runs = [(s, "exact") for s in exact_sizes if exact]
    runs += [(s, kind) for s in sizes for kind in large if kind == "words" or s <= real]
    for size, kind in runs:
        folder = index_folder(work, size, settings, kind, names)
        if kind != "words":
            folder.mkdir(parents=True, exist_ok=True)
            if not (folder / "meta.json").exists():
                (folder / "meta.json").write_text(json.dumps({"real": min(real, size)}))
        print(f"measuring {size} targets ({kind} index)", flush=True)
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "imagecloud.bench.scale",
                str(dataset),
                str(work),
                str(size),
                kind,
                str(mixed_seconds if kind != "exact" else 0),
                json.dumps(settings),
                neg_file,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        meta = json.loads((folder / "meta.json").read_text())
        if kind == "words":  # the folder's build figures are the word index's
            result |= {k: v for k, v in meta.items() if k != "real"}
        if "index_disk_bytes" in result:
            result["index_disk_bytes_per_target"] = round(result["index_disk_bytes"] / size, 1)
        results.append(result)
        print(json.dumps(result), flush=True)
    report = {
        "machine": machine.describe(),
        "dataset": str(dataset.name),
        "settings": settings,
        "runs": results,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text(markdown(report))
    return report


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        f"# Scale benchmark ({report['dataset']})",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Python {m['python']}, "
        f"OpenCV {m['opencv']}. FindImage time is server-side on one core: photo analysis, search, "
        "verification, and the second pass for photos that match nothing at first (all distractor photos). "
        "Word ranking is the word index's search alone.",
        *(
            [
                "",
                "Recognition settings: " + ", ".join(f"`{k}` = {v!r}" for k, v in _paths(report["settings"])),
            ]
            if report.get("settings")
            else []
        ),
        "",
        "| targets | index | real / variant distractors | recall@1 | wrong | false matches | "
        "word rank top-1/10/50/300 | find p50 / p95 ms, cover photos | "
        "find p50 / p95 ms, distractor photos | word ranking p50 / p95 ms | "
        "RAM bytes/target (anonymous RSS) | restart s | mixed-load search p99 ms "
        "(read-only → with adds) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["runs"]:
        rp, dp = r["find_ms_real_photos"], r["find_ms_distractor_photos"]
        topk = r.get("word_rank_topk") or {}
        tk = " / ".join(f"{100 * topk[k]:.1f}" for k in ("1", "10", "50", "300")) if topk else "-"
        wr = r.get("word_ranking_ms") or {}
        ranking = f"{wr['p50']} / {wr['p95']}" if wr else "-"
        mix = r.get("mixed_load") or {}
        mixed = (
            f"{mix['read_only_search_ms']['p99']} → {mix['with_adds_search_ms']['p99']} (x{mix['p99_ratio']})"
            if mix
            else "-"
        )
        lines.append(
            f"| {r['targets']:,} | {r['index']} | {r['real_distractors']:,} / {r['variant_distractors']:,} | "
            f"{100 * r['recall_at_1']:.1f}% | {r['wrong']} | "
            f"{r['false_matches']}/{r['distractor_queries']} | {tk} | "
            f"{rp['p50']} / {rp['p95']} | {dp['p50']} / {dp['p95']} | {ranking} | "
            f"{r['index_rss_bytes_per_target']:,} | {r['restart_to_ready_s']} | {mixed} |"
        )
    sets = [(r, n) for r in report["runs"] for n in r.get("negative_sets") or []]
    if sets:
        lines += [
            "",
            "Photos of nothing enrolled, per negative set (its enrol photos enrolled among the distractors):",
            "",
            "| targets | index | set | enrolled | photos | false matches | find p50 / p95 ms |",
            "|---|---|---|---|---|---|---|",
        ]
        for r, n in sets:
            share = 100 * n["false_matches"] / max(1, n["queries"])
            ms = n["find_ms"]
            lines.append(
                f"| {r['targets']:,} | {r['index']} | {n['set']} | {n['enrolled']} | {n['queries']} | "
                f"{n['false_matches']} ({share:.1f}%) | {ms.get('p50')} / {ms.get('p95')} |"
            )
    lines.append("")
    return "\n".join(lines)


def _paths(settings: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested settings as (dotted path, value) pairs."""
    out: list[tuple[str, Any]] = []
    for key, value in settings.items():
        if isinstance(value, Mapping):
            out += _paths(value, f"{prefix}{key}.")
        else:
            out.append((f"{prefix}{key}", value))
    return out


def settings_from(pairs: Sequence[str]) -> dict[str, Any]:
    """``["index.subset.index.top_probe=2", ...]`` as nested settings (values stay strings: the settings
    convert them to their types). A malformed pair, an unknown name or a wrong value raises ValueError."""
    out: dict[str, Any] = {}
    for pair in pairs:
        path, sep, value = pair.partition("=")
        if not sep or not path:
            raise ValueError(f"a setting is PATH=VALUE, not {pair!r}")
        *groups, name = path.strip().split(".")
        node = out
        for group in groups:
            node = node.setdefault(group, {})
            if not isinstance(node, dict):
                raise ValueError(f"{path}: {group} is a value, not a group")
        node[name] = value.strip()
    with_overrides(RecognizerSettings(), out)  # names and values checked here, before any work
    return out


def _main(argv: list[str]) -> None:
    dataset, work, size, kind, mixed, *rest = argv
    overrides = json.loads(rest[0]) if rest else {}
    negatives = Path(rest[1]) if len(rest) > 1 and rest[1] else None
    result = measure(Path(dataset), Path(work), int(size), kind, float(mixed), overrides, negatives)
    print(json.dumps(result))


if __name__ == "__main__":
    _main(sys.argv[1:])
