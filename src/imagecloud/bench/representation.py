"""`imagecloud bench representation`: which share of verified correspondences a large-scale index keeps.

The go/no-go figure of a candidate representation for 1M targets: of the photo↔cover correspondences that
geometric verification accepts (the product's own analysis and :func:`~imagecloud.vision.verify.verify`),
which share does the representation still retrieve when the index holds 1M targets' worth of real
descriptors, and where does the right cover then rank by votes.

Ground truth. The data set's covers are analysed like enrolled targets (and self-tested, so every
keypoint's re-find count is known); its photos are analysed like FindImage photos and verified against
their own cover: the inliers are the correspondences a representation should retrieve.

Distractors. Images rendered from real photos (crops, perspective, scale, 2-4 photo mosaics, colour
changes), analysed like targets; all kept descriptors of each are stored (cached under ``--work``), and
the first ``--rated`` are self-tested as well. Descriptor density is what decides whether a cover's
descriptor is still among a photo descriptor's nearest neighbours, so the benchmark fills the index with
*all* descriptors of the rendered images and groups them into pseudo-targets of the subset size (image
``i``'s descriptors ``m*S .. (m+1)*S-1`` in spread order are one pseudo-target): 40k images give 40M
real descriptors, 300k targets' worth of 128-descriptor subsets. A check in the report compares that
density with that of real per-target subsets at equal descriptor counts.

Index. A binary IVF with a two-level coarse quantizer (``top`` k-means centroids, each split into
sub-centroids in proportion to its population; a descriptor is assigned among the sub-centroids of its
``top_probe`` nearest top centroids), the candidate's per-target subset planted beside the distractors,
k nearest neighbours per photo descriptor within a Hamming bound, one vote per (photo descriptor,
target). The quantizer is trained once on the largest distractor set and shared by every size, so the
probe loss does not depend on the size and the neighbour loss is measured at growing densities.
"""

from __future__ import annotations

import csv
import json
import math
import multiprocessing
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import faiss
import numpy as np

from imagecloud.bench import machine
from imagecloud.bench.corpus import render_distractor, start_worker
from imagecloud.bench.dataset import images_in
from imagecloud.index.quantizer import two_level_cells
from imagecloud.recognition.settings import RecognizerSettings
from imagecloud.vision.decode import decode_image
from imagecloud.vision.features import FeatureExtractor, Features
from imagecloud.vision.rating import self_test
from imagecloud.vision.verify import verify

BITS = 256
CODE = BITS // 8
KEEP = RecognizerSettings().analysis.features.keep  # descriptors stored per target
KP_BITS = 10  # index ids: (target << KP_BITS) | keypoint
assert KEEP <= 1 << KP_BITS


# ---------------------------------------------------------------------------------------- ground truth


@dataclass(frozen=True, eq=False)
class GroundTruth:
    """Covers (descriptors in spread order, self-test re-find counts), photos, verified correspondences."""

    cover_desc: list[np.ndarray]  # uint8 (n_i, 32) per cover
    cover_refound: list[np.ndarray]  # int (n_i,) views each keypoint was re-found in
    photo_desc: list[np.ndarray]  # uint8 (m_j, 32) per photo
    photo_cover: np.ndarray  # int (photos,): the cover each photo shows
    pairs: list[tuple[np.ndarray, np.ndarray]]  # verified (photo keypoint, cover keypoint) per photo

    def save(self, path: Path) -> None:
        arrays: dict[str, Any] = {"photo_cover": self.photo_cover, "covers": np.int64(len(self.cover_desc))}
        for i, (d, r) in enumerate(zip(self.cover_desc, self.cover_refound, strict=True)):
            arrays[f"cd{i}"], arrays[f"cr{i}"] = d, r
        for j, (d, (q, t)) in enumerate(zip(self.photo_desc, self.pairs, strict=True)):
            arrays[f"pd{j}"], arrays[f"pq{j}"], arrays[f"pt{j}"] = d, q, t
        np.savez(path, **arrays)

    @classmethod
    def load(cls, path: Path) -> GroundTruth:
        with np.load(path) as z:
            covers = int(z["covers"])
            photos = len(z["photo_cover"])
            return cls(
                cover_desc=[z[f"cd{i}"] for i in range(covers)],
                cover_refound=[z[f"cr{i}"] for i in range(covers)],
                photo_desc=[z[f"pd{j}"] for j in range(photos)],
                photo_cover=z["photo_cover"],
                pairs=[(z[f"pq{j}"], z[f"pt{j}"]) for j in range(photos)],
            )


def ground_truth(dataset: Path) -> GroundTruth:
    """Analyse the covers and photos as the service does and verify each photo against its cover."""
    full = RecognizerSettings()
    settings = full.analysis
    target_extractor = FeatureExtractor(settings.features)
    photo_extractor = FeatureExtractor(settings.query_features)
    covers = images_in(dataset / "targets")
    index = {p.stem: i for i, p in enumerate(covers)}
    cover_feats: list[Features] = []
    refound: list[np.ndarray] = []
    for path in covers:
        img = decode_image(
            path.read_bytes(), max_pixels=settings.max_pixels, working_size=settings.target_working_size
        )
        feats = target_extractor.extract(img.gray, img.scale, img.width, img.height)
        cover_feats.append(feats)
        refound.append(self_test(img.gray, feats, img.scale, target_extractor).counts.astype(np.int8))
    photo_desc: list[np.ndarray] = []
    photo_cover: list[int] = []
    pairs: list[tuple[np.ndarray, np.ndarray]] = []
    with open(dataset / "queries.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        cover = index[Path(row["target"]).stem]
        img = decode_image(
            (dataset / row["query"]).read_bytes(),
            max_pixels=settings.max_pixels,
            working_size=settings.query_working_size,
        )
        feats = photo_extractor.extract(img.gray, img.scale, img.width, img.height)
        geometry = verify(feats, cover_feats[cover], full.search.verify)
        photo_desc.append(feats.descriptors)
        photo_cover.append(cover)
        if geometry is None:
            pairs.append((np.zeros(0, np.int64), np.zeros(0, np.int64)))
        else:
            pairs.append((geometry.query_idx.astype(np.int64), geometry.target_idx.astype(np.int64)))
    return GroundTruth(
        cover_desc=[f.descriptors for f in cover_feats],
        cover_refound=refound,
        photo_desc=photo_desc,
        photo_cover=np.asarray(photo_cover, np.int64),
        pairs=pairs,
    )


# ---------------------------------------------------------------------------------------- distractors


def _analyse(job: tuple[int, bool]) -> tuple[np.ndarray, np.ndarray | None]:
    seed, rated = job
    extractor = FeatureExtractor(RecognizerSettings().analysis.features)
    gray = render_distractor(seed)
    feats = extractor.extract(gray, 1.0, gray.shape[1], gray.shape[0])
    counts = self_test(gray, feats, 1.0, extractor).counts.astype(np.int8) if rated and len(feats) else None
    return feats.descriptors, counts


class Distractors:
    """Descriptors of rendered distractor images, cached in ``folder`` (a fixed-width memory-mapped file).

    Image ``i`` holds ``counts[i]`` descriptors in spread order; the first ``rated`` images also have their
    self-test re-find counts.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.meta_path = folder / "meta.json"
        meta = (
            json.loads(self.meta_path.read_text()) if self.meta_path.exists() else {"images": 0, "rated": 0}
        )
        self.images: int = int(meta["images"])
        self.rated: int = int(meta["rated"])

    def __len__(self) -> int:
        return self.images

    def descriptors(self) -> np.ndarray:
        """uint8 (images, KEEP, 32), zero rows past each image's count (memory-mapped)."""
        return np.asarray(np.memmap(self.folder / "desc.u8", np.uint8, "r", shape=(self.images, KEEP, CODE)))

    def counts(self) -> np.ndarray:
        return np.asarray(np.load(self.folder / "counts.npy")[: self.images])

    def refound(self) -> np.ndarray:
        """int8 (rated, KEEP): views each keypoint of the rated images was re-found in."""
        return np.asarray(np.load(self.folder / "refound.npy")[: self.rated])

    def grow(self, photos: Sequence[Path], images: int, rated: int, workers: int) -> None:
        """Render and analyse images up to ``images`` (resumes; the first ``rated`` are self-tested)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        have = self.images
        if have >= images:
            return
        if have and rated > self.rated and have > self.rated:
            raise ValueError("cannot add self-tests to images analysed before; use a new work folder")
        counts = list(np.load(self.folder / "counts.npy")[:have]) if have else []
        refound = list(np.load(self.folder / "refound.npy")[: self.rated]) if self.rated else []
        jobs = [(i, i < rated) for i in range(have, images)]
        started = time.monotonic()
        with (
            open(self.folder / "desc.u8", "ab") as f,
            multiprocessing.Pool(workers, start_worker, ([str(p) for p in photos],)) as pool,
        ):
            f.truncate(have * KEEP * CODE)
            for k, (desc, found) in enumerate(pool.imap(_analyse, jobs, chunksize=8), 1):
                block = np.zeros((KEEP, CODE), np.uint8)
                block[: len(desc)] = desc[:KEEP]
                f.write(block.tobytes())
                counts.append(min(len(desc), KEEP))
                if found is not None:
                    row = np.zeros(KEEP, np.int8)
                    row[: len(found)] = found[:KEEP]
                    refound.append(row)
                if k % 1000 == 0 or k == len(jobs):
                    f.flush()
                    self._save(have + k, counts, refound)
                    rate = k / (time.monotonic() - started)
                    print(f"  distractor images analysed: {have + k}/{images} ({rate:.1f}/s)", flush=True)

    def _save(self, images: int, counts: list[Any], refound: list[np.ndarray]) -> None:
        np.save(self.folder / "counts.npy", np.asarray(counts, np.int16))
        if refound:
            np.save(self.folder / "refound.npy", np.stack(refound))
        self.images, self.rated = images, len(refound)
        self.meta_path.write_text(json.dumps({"images": images, "rated": len(refound)}))


# ---------------------------------------------------------------------------------------- coarse quantizer


def _unpack(codes: np.ndarray) -> np.ndarray:
    return np.unpackbits(codes, axis=1).astype(np.float32)


def _flat(codes: np.ndarray) -> faiss.IndexBinaryFlat:
    index = faiss.IndexBinaryFlat(BITS)
    index.add(np.ascontiguousarray(codes, dtype=np.uint8))
    return index


class TwoLevelQuantizer:
    """``nlist`` binary centroids in two levels: ``top`` k-means cells, each split by its own k-means.

    A vector is assigned among the sub-centroids of its ``top_probe`` nearest top centroids: about
    ``top + top_probe * nlist / top`` distances instead of ``nlist``.
    """

    def __init__(self, top: np.ndarray, subs: list[np.ndarray]) -> None:
        self.top_codes = top
        self.sub_codes = subs
        self.top = _flat(top)
        self.subs = [_flat(s) for s in subs]
        self.offsets = np.concatenate([[0], np.cumsum([len(s) for s in subs])]).astype(np.int64)
        self.nlist = int(self.offsets[-1])

    @classmethod
    def train(cls, sample: np.ndarray, nlist: int, top: int, seed: int = 1) -> TwoLevelQuantizer:
        return cls(*two_level_cells(sample, nlist, top, seed))

    def centroids(self) -> np.ndarray:
        return np.concatenate(self.sub_codes)

    def assign(self, x: np.ndarray, nprobe: int, top_probe: int) -> tuple[np.ndarray, np.ndarray]:
        """(distances, lists) of the ``nprobe`` nearest sub-centroids found under ``top_probe`` top cells."""
        x = np.ascontiguousarray(x, dtype=np.uint8)
        n = len(x)
        top_probe = min(top_probe, len(self.subs))
        _, cells = self.top.search(x, top_probe)
        dist = np.full((n, top_probe * nprobe), BITS + 1, np.int32)
        lists = np.full((n, top_probe * nprobe), -1, np.int64)
        flat_cells = cells.ravel()
        order = np.argsort(flat_cells, kind="stable")
        bounds = np.searchsorted(flat_cells[order], np.arange(len(self.subs) + 1))
        for c in range(len(self.subs)):
            sel = order[bounds[c] : bounds[c + 1]]
            if len(sel) == 0:
                continue
            rows, cols = np.divmod(sel, top_probe)
            kk = min(nprobe, self.subs[c].ntotal)
            d, i = self.subs[c].search(x[rows], kk)
            slots = cols[:, None] * nprobe + np.arange(kk)[None, :]
            dist[rows[:, None], slots] = d
            lists[rows[:, None], slots] = i + self.offsets[c]
        best = np.argsort(dist, axis=1, kind="stable")[:, :nprobe]
        return np.take_along_axis(dist, best, axis=1), np.take_along_axis(lists, best, axis=1)

    def save(self, path: Path) -> None:
        arrays: dict[str, Any] = {f"s{i}": s for i, s in enumerate(self.sub_codes)}
        np.savez(path, top=self.top_codes, **arrays)

    @classmethod
    def load(cls, path: Path) -> TwoLevelQuantizer:
        with np.load(path) as z:
            top = z["top"]
            return cls(top, [z[f"s{i}"] for i in range(len(top))])


def ivf(quantizer: TwoLevelQuantizer, codes: np.ndarray, ids: np.ndarray, lists: np.ndarray) -> Any:
    """A FAISS binary IVF holding ``codes`` under ``ids`` in the already assigned ``lists``."""
    flat = _flat(quantizer.centroids())
    index: Any = faiss.IndexBinaryIVF(flat, BITS, quantizer.nlist)
    index.own_fields = False
    index._flat = flat  # keep the Python object (and its memory) alive with the index
    step = 1 << 21
    for a in range(0, len(codes), step):
        c = np.ascontiguousarray(codes[a : a + step], dtype=np.uint8)
        i = np.ascontiguousarray(ids[a : a + step], dtype=np.int64)
        assign = np.ascontiguousarray(lists[a : a + step], dtype=np.int64)
        index.add_core(len(c), faiss.swig_ptr(c), faiss.swig_ptr(i), faiss.swig_ptr(assign))
    return index


# ---------------------------------------------------------------------------------------- the experiment

DISTRACTOR_BASE = 1000  # image ids: covers 0.., distractor image i is DISTRACTOR_BASE + i
KMAX = 10  # neighbours searched per photo descriptor; smaller k are prefixes
FASTSCAN_IMAGES = 3000  # distractor images whose descriptors time the fast-scan comparison


@dataclass(frozen=True)
class Subset:
    """Which descriptors of a target are indexed: the first ``size`` in spread order, or the ``size``
    re-found in most self-test views (ties in spread order)."""

    pick: str  # "first" | "refound"
    size: int

    @property
    def name(self) -> str:
        return f"{self.pick}-{self.size}"

    @classmethod
    def parse(cls, name: str) -> Subset:
        pick, _, size = name.partition("-")
        if pick not in ("first", "refound") or not size.isdigit():
            raise ValueError(f"a subset is first-N or refound-N, not {name!r}")
        return cls(pick, int(size))

    def of(self, count: int, refound: np.ndarray | None) -> np.ndarray:
        if self.pick == "first" or refound is None:
            return np.arange(min(count, self.size))
        order = np.lexsort((np.arange(count), -refound[:count].astype(np.int64)))
        return np.sort(order[: self.size])


def _ids(image: int | np.ndarray, keypoint: np.ndarray) -> np.ndarray:
    return (np.asarray(image, np.int64) << KP_BITS) | keypoint.astype(np.int64)


@dataclass(frozen=True, eq=False)
class Rows:
    """Index rows: codes, ids ((image << KP_BITS) | keypoint) and assigned lists."""

    codes: np.ndarray
    ids: np.ndarray
    lists: np.ndarray


def cover_rows(gt: GroundTruth, subset: Subset, quantizer: TwoLevelQuantizer, top_probe: int) -> Rows:
    parts = [subset.of(len(d), r) for d, r in zip(gt.cover_desc, gt.cover_refound, strict=True)]
    codes = np.concatenate([d[p] for d, p in zip(gt.cover_desc, parts, strict=True)])
    ids = np.concatenate([_ids(c, p) for c, p in enumerate(parts)])
    _, lists = quantizer.assign(codes, 1, top_probe)
    return Rows(codes, ids, lists[:, 0])


def distractor_rows(distractors: Distractors, images: int, subset: Subset | None, lists: np.ndarray) -> Rows:
    """All descriptors of the first ``images`` distractor images (``subset`` None), or each image's subset.

    ``lists`` is the assignment of every stored descriptor slot, (images, KEEP).
    """
    desc = distractors.descriptors()
    counts = distractors.counts()[:images].astype(np.int64)
    if subset is None:
        keep = np.arange(KEEP)[None, :] < counts[:, None]
    else:
        keep = np.zeros((images, KEEP), bool)
        refound = distractors.refound() if subset.pick == "refound" else None
        if refound is not None and len(refound) < images:
            raise ValueError(f"only {len(refound)} distractor images are self-tested")
        for i in range(images):
            keep[i, subset.of(int(counts[i]), None if refound is None else refound[i])] = True
    img, kp = np.nonzero(keep)
    codes = np.empty((len(img), CODE), np.uint8)
    step = 2000
    for a in range(0, images, step):
        sel = (img >= a) & (img < a + step)
        codes[sel] = np.asarray(desc[a : a + step])[img[sel] - a, kp[sel]]
    return Rows(codes, _ids(DISTRACTOR_BASE + img, kp), lists[:images][img, kp].astype(np.int64))


def assign_distractors(
    distractors: Distractors, quantizer: TwoLevelQuantizer, top_probe: int, images: int
) -> np.ndarray:
    """The list of every stored descriptor slot of the first ``images``, (images, KEEP) int32 (-1: empty)."""
    desc = distractors.descriptors()
    counts = distractors.counts()[:images].astype(np.int64)
    out = np.full((images, KEEP), -1, np.int32)
    step = 1000
    for a in range(0, images, step):
        block = np.asarray(desc[a : min(images, a + step)]).reshape(-1, CODE)
        _, lists = quantizer.assign(block, 1, top_probe)
        out[a : a + step] = lists[:, 0].reshape(-1, KEEP)
    out[np.arange(KEEP)[None, :] >= counts[:, None]] = -1
    return out


@dataclass(frozen=True, eq=False)
class Neighbours:
    """The KMAX nearest rows of every photo descriptor (per photo), and the photo's probed lists."""

    dist: list[np.ndarray]  # int32 (m_j, KMAX)
    ids: list[np.ndarray]  # int64 (m_j, KMAX)
    probed: list[np.ndarray]  # int64 (m_j, nprobe)
    cpu_ms: np.ndarray  # per photo: coarse assignment + search, one core


@dataclass(frozen=True, eq=False)
class Probes:
    """Each photo's nearest lists (the most asked for; smaller nprobe are prefixes) and what they cost."""

    dist: list[np.ndarray]
    lists: list[np.ndarray]
    cpu_ms: np.ndarray


def probes(quantizer: TwoLevelQuantizer, gt: GroundTruth, nprobe: int, top_probe: int) -> Probes:
    dist, lists, cpu = [], [], []
    for x in gt.photo_desc:
        t = time.thread_time()
        d, li = quantizer.assign(x, nprobe, top_probe)
        cpu.append((time.thread_time() - t) * 1000)
        dist.append(d)
        lists.append(li)
    return Probes(dist, lists, np.asarray(cpu))


def search(index: Any, gt: GroundTruth, probed: Probes, nprobe: int) -> Neighbours:
    """KMAX nearest rows per photo descriptor in ``nprobe`` lists; the time includes the coarse step."""
    index.nprobe = nprobe
    dist, ids, lists, cpu = [], [], [], []
    for x, dq, lq, assign_ms in zip(gt.photo_desc, probed.dist, probed.lists, probed.cpu_ms, strict=True):
        dq = np.ascontiguousarray(dq[:, :nprobe])
        lq = np.ascontiguousarray(lq[:, :nprobe])
        t = time.thread_time()
        d, i = index.search_preassigned(np.ascontiguousarray(x), KMAX, lq, dq)
        cpu.append((time.thread_time() - t) * 1000 + assign_ms)
        dist.append(d)
        ids.append(i)
        lists.append(lq)
    return Neighbours(dist, ids, lists, np.asarray(cpu))


def merge(a: Neighbours, b: Neighbours) -> Neighbours:
    """The KMAX nearest over two sets of rows searched with the same probes (like the index's segments)."""
    dist, ids = [], []
    for da, ia, db, ib in zip(a.dist, a.ids, b.dist, b.ids, strict=True):
        d = np.concatenate([np.where(ia >= 0, da, BITS + 1), np.where(ib >= 0, db, BITS + 1)], axis=1)
        i = np.concatenate([ia, ib], axis=1)
        order = np.argsort(d, axis=1, kind="stable")[:, :KMAX]
        dist.append(np.take_along_axis(d, order, axis=1))
        ids.append(np.take_along_axis(i, order, axis=1))
    return Neighbours(dist, ids, a.probed, a.cpu_ms + b.cpu_ms)


def score(
    gt: GroundTruth,
    found: Neighbours,
    subset: Subset,
    cover_lists: dict[int, np.ndarray],
    k: int,
    max_distance: int,
    group: int | None,
) -> dict[str, Any]:
    """Go/no-go figures of one setting.

    ``group``: distractor rows are grouped into pseudo-targets of this many consecutive keypoints (all
    descriptors of an image indexed); None: every distractor image is one target (its subset indexed).
    """
    per = math.ceil(KEEP / group) if group else 1
    pairs = in_subset = probed = retrieved = 0
    ranks: list[float] = []
    true_votes: list[int] = []
    best_other: list[int] = []
    for j, (q, t) in enumerate(gt.pairs):
        cover = int(gt.photo_cover[j])
        d, ids = found.dist[j][:, :k], found.ids[j][:, :k]
        ok = (ids >= 0) & (d <= max_distance)
        image = ids >> KP_BITS
        kp = ids & ((1 << KP_BITS) - 1)
        # Pseudo-targets: a cover is one target; a distractor image's consecutive keypoints are grouped.
        key = np.where(image < DISTRACTOR_BASE, image * per, image * per + kp // group) if group else image
        qi = np.nonzero(ok)[0]
        keys = key[ok]
        pair = np.unique(qi.astype(np.int64) * (1 << 40) + keys)  # one vote per (photo descriptor, target)
        uniq, votes = np.unique(pair & ((1 << 40) - 1), return_counts=True)
        mine = cover * per if group else cover
        at = np.searchsorted(uniq, mine)
        v = int(votes[at]) if at < len(uniq) and uniq[at] == mine else 0
        others = votes[uniq != mine]
        true_votes.append(v)
        best_other.append(int(others.max()) if len(others) else 0)
        ranks.append(1 + int((others >= v).sum()) if v > 0 else math.inf)
        if len(q) == 0:
            continue
        pairs += len(q)
        lists = cover_lists[cover]
        member = lists[t] >= 0
        in_subset += int(member.sum())
        qm, tm = q[member], t[member]
        probed += int((found.probed[j][qm] == lists[tm][:, None]).any(axis=1).sum())
        target_id = _ids(cover, tm)
        retrieved += int(((ids[qm] == target_id[:, None]) & ok[qm]).any(axis=1).sum())
    r = np.asarray(ranks)
    return {
        "subset": subset.name,
        "k": k,
        "max_distance": max_distance,
        "verified_pairs": pairs,
        "in_subset": in_subset / max(pairs, 1),
        "probed": probed / max(pairs, 1),
        "retrieved": retrieved / max(pairs, 1),
        "top1": float(np.mean(r <= 1)),
        "top10": float(np.mean(r <= 10)),
        "top20": float(np.mean(r <= 20)),
        "true_votes_p50": float(np.median(true_votes)),
        "best_other_votes_p50": float(np.median(best_other)),
    }


def cover_list_map(rows: Rows, gt: GroundTruth) -> dict[int, np.ndarray]:
    """Per cover: the list of each keypoint's row, -1 when the keypoint is not indexed."""
    out = {c: np.full(len(d), -1, np.int64) for c, d in enumerate(gt.cover_desc)}
    image = rows.ids >> KP_BITS
    kp = rows.ids & ((1 << KP_BITS) - 1)
    for c in out:
        sel = image == c
        out[c][kp[sel]] = rows.lists[sel]
    return out


def closer_counts(codes: np.ndarray, gt: GroundTruth, subset: Subset) -> np.ndarray:
    """Per verified pair whose cover keypoint is in ``subset``: rows of ``codes`` strictly closer to the photo
    descriptor than its cover descriptor (exact; counts above 255 are cut at 255)."""
    index = _flat(codes)
    out: list[np.ndarray] = []
    for j, (q, t) in enumerate(gt.pairs):
        if len(q) == 0:
            continue
        c = int(gt.photo_cover[j])
        keep = np.isin(t, subset.of(len(gt.cover_desc[c]), gt.cover_refound[c]))
        q, t = q[keep], t[keep]
        if len(q) == 0:
            continue
        x = gt.photo_desc[j][q]
        own = np.unpackbits(x ^ gt.cover_desc[c][t], axis=1).sum(axis=1)
        d, _ = index.search(np.ascontiguousarray(x), 255)
        out.append((d < own[:, None]).sum(axis=1))
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def quantizer_costs(
    quantizer: TwoLevelQuantizer, gt: GroundTruth, nprobe: int, top_probe: int, photos: int = 20
) -> dict[str, Any]:
    """CPU ms per photo (all its descriptors) and share of the exact nearest lists found, per quantizer."""
    flat = _flat(quantizer.centroids())
    hnsw = faiss.IndexBinaryHNSW(BITS, 32)
    started = time.perf_counter()
    hnsw.add(quantizer.centroids())
    hnsw_build_s = time.perf_counter() - started
    xs = [np.ascontiguousarray(x) for x in gt.photo_desc[:photos]]
    exact = []
    t = time.thread_time()
    for x in xs:
        exact.append(flat.search(x, nprobe)[1])
    out: dict[str, Any] = {
        "nlist": quantizer.nlist,
        "nprobe": nprobe,
        "exact_ms": (time.thread_time() - t) * 1000 / len(xs),
        "hnsw_build_s": hnsw_build_s,
    }

    def overlap(found: list[np.ndarray]) -> float:
        hits = sum(
            int((f[:, :, None] == e[:, None, :]).any(axis=2).sum()) for f, e in zip(found, exact, strict=True)
        )
        return hits / sum(int(e.size) for e in exact)

    t = time.thread_time()
    two = [quantizer.assign(x, nprobe, top_probe)[1] for x in xs]
    out[f"two_level_top{top_probe}_ms"] = (time.thread_time() - t) * 1000 / len(xs)
    out[f"two_level_top{top_probe}_found"] = overlap(two)
    for ef in (nprobe * 2, nprobe * 4):
        hnsw.hnsw.efSearch = ef
        t = time.thread_time()
        found = [hnsw.search(x, nprobe)[1] for x in xs]
        out[f"hnsw_ef{ef}_ms"] = (time.thread_time() - t) * 1000 / len(xs)
        out[f"hnsw_ef{ef}_found"] = overlap(found)
    return out


def _fit(xs: Sequence[float], ys: Sequence[float], at: float) -> float:
    """Straight line through (log10 x, y), read at ``at``: the trend of a share with the index size."""
    if len(xs) < 2:
        return float(ys[-1])
    a, b = np.polyfit(np.log10(np.asarray(xs, np.float64)), np.asarray(ys, np.float64), 1)
    return float(a) * math.log10(at) + float(b)


# ---------------------------------------------------------------------------------------- the benchmark


@dataclass(frozen=True)
class Plan:
    """What to measure. ``sizes`` are distractor image counts (all their descriptors are indexed)."""

    sizes: tuple[int, ...]
    subsets: tuple[Subset, ...]
    nprobes: tuple[int, ...] = (8, 16, 32)
    ks: tuple[int, ...] = (1, 3, 5, 10)
    max_distances: tuple[int, ...] = (48, 56, 64)
    nlist: int = 65_536
    top: int = 256
    top_probe: int = 8  # top cells a photo descriptor looks under
    add_top_probe: int = 2  # top cells an indexed descriptor looks under
    scale: int = 1_000_000  # targets the figures are extrapolated to
    train_per_list: int = 20


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _quantizer(work: Path, distractors: Distractors, plan: Plan, nlist: int) -> TwoLevelQuantizer:
    path = work / f"quantizer-{nlist}-{plan.top}.npz"
    if path.exists():
        return TwoLevelQuantizer.load(path)
    desc, counts = distractors.descriptors(), distractors.counts()
    rng = np.random.default_rng(5)
    want = min(nlist * plan.train_per_list, int(counts.sum()))
    images = np.sort(rng.choice(len(distractors), min(len(distractors), want // 200 + 1), replace=False))
    sample = np.concatenate([np.asarray(desc[i, : counts[i]]) for i in images])
    sample = sample[rng.permutation(len(sample))[:want]]
    started = time.perf_counter()
    quantizer = TwoLevelQuantizer.train(sample, nlist, plan.top)
    _log(
        f"quantizer {quantizer.nlist} lists trained on {len(sample):,} descriptors"
        f" in {time.perf_counter() - started:.0f} s"
    )
    quantizer.save(path)
    return quantizer


def _lists(
    work: Path, distractors: Distractors, quantizer: TwoLevelQuantizer, plan: Plan, images: int
) -> np.ndarray:
    path = work / f"lists-{quantizer.nlist}-{plan.top}-{plan.add_top_probe}-{images}.npy"
    if path.exists():
        return np.asarray(np.load(path))
    started = time.perf_counter()
    lists = assign_distractors(distractors, quantizer, plan.add_top_probe, images)
    _log(
        f"{int((lists >= 0).sum()):,} distractor descriptors assigned"
        f" in {time.perf_counter() - started:.0f} s"
    )
    np.save(path, lists)
    return lists


def _measure_size(
    gt: GroundTruth,
    quantizer: TwoLevelQuantizer,
    distractor: Rows,
    plan: Plan,
    group: bool,
    subsets: Sequence[Subset],
    label: dict[str, Any],
) -> list[dict[str, Any]]:
    index = ivf(quantizer, distractor.codes, distractor.ids, distractor.lists)
    rows_per_list = len(distractor.ids) / quantizer.nlist
    out = []
    covers = {s.name: cover_rows(gt, s, quantizer, plan.add_top_probe) for s in subsets}
    probed = probes(quantizer, gt, max(plan.nprobes), plan.top_probe)
    for nprobe in plan.nprobes:
        found = search(index, gt, probed, nprobe)
        for subset in subsets:
            rows = covers[subset.name]
            cover_index = ivf(quantizer, rows.codes, rows.ids, rows.lists)
            both = merge(found, search(cover_index, gt, probed, nprobe))
            lists = cover_list_map(rows, gt)
            for k in plan.ks:
                for max_distance in plan.max_distances:
                    s = score(gt, both, subset, lists, k, max_distance, subset.size if group else None)
                    out.append(
                        label
                        | s
                        | {
                            "nprobe": nprobe,
                            "nlist": quantizer.nlist,
                            "vectors": len(distractor.ids),
                            "rows_per_list": rows_per_list,
                            "search_cpu_ms_p50": float(np.median(found.cpu_ms)),
                            "search_cpu_ms_p95": float(np.percentile(found.cpu_ms, 95)),
                        }
                    )
        _log(f"  {label} nprobe {nprobe}: search p50 {np.median(found.cpu_ms):.1f} ms")
    return out


def run(
    dataset: Path,
    sources: Sequence[Path],
    work: Path,
    out: Path | None,
    images: int,
    rated: int,
    workers: int,
    plan: Plan,
    matched: bool = True,
    fastscan: bool = True,
) -> dict[str, Any]:
    """Ground truth, distractors, and every setting of ``plan``; writes ``report.json`` to ``out``."""
    cv2.setNumThreads(1)
    faiss.omp_set_num_threads(1)
    work.mkdir(parents=True, exist_ok=True)
    gt_path = work / "ground-truth.npz"
    if not gt_path.exists():
        ground_truth(dataset).save(gt_path)
    gt = GroundTruth.load(gt_path)
    distractors = Distractors(work / "distractors")
    photos = [p for folder in sources for p in images_in(folder)]
    distractors.grow(photos, images, rated, workers)
    sizes = tuple(s for s in plan.sizes if s <= len(distractors))
    report: dict[str, Any] = {
        "machine": machine.describe(),
        "dataset": str(dataset),
        "photos": len(gt.photo_desc),
        "verified_photos": int(sum(len(q) > 0 for q, _ in gt.pairs)),
        "verified_pairs": int(sum(len(q) for q, _ in gt.pairs)),
        "distractor_images": len(distractors),
        "rated_distractor_images": distractors.rated,
        "distractor_descriptors": int(distractors.counts().sum()),
        "plan": {**plan.__dict__, "subsets": [s.name for s in plan.subsets]},
        "runs": [],
    }

    def save() -> None:  # after every step, so a long run that is stopped still leaves its figures
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            (out / "report.json").write_text(json.dumps(report, indent=1, default=_json))

    quantizer = _quantizer(work, distractors, plan, plan.nlist)
    lists = _lists(work, distractors, quantizer, plan, max(sizes, default=0))
    # Density at growing sizes: all descriptors of the first ``size`` images, grouped into pseudo-targets.
    for size in sizes:
        rows = distractor_rows(distractors, size, None, lists)
        report["runs"] += _measure_size(
            gt, quantizer, rows, plan, True, plan.subsets, {"mode": "pool", "images": size}
        )
        del rows
        save()
    # Check of the pooled density: real per-target subsets of the most images, against pooled descriptors.
    largest = max(sizes, default=0)
    for subset in {s.size: s for s in plan.subsets if s.pick == "first"}.values():
        rows = distractor_rows(distractors, largest, subset, lists)
        report["runs"] += _measure_size(
            gt, quantizer, rows, plan, False, [subset], {"mode": "targets", "images": largest}
        )
        pooled = max(1, round(len(rows.ids) / KEEP))
        del rows
        rows = distractor_rows(distractors, pooled, None, lists)
        report["runs"] += _measure_size(
            gt, quantizer, rows, plan, True, [subset], {"mode": "pool", "images": pooled}
        )
        del rows
    report["extrapolated"] = _extrapolate(report, plan)
    save()
    report["quantizer"] = quantizer_costs(quantizer, gt, max(plan.nprobes), plan.top_probe)
    _log(f"quantizer costs {report['quantizer']}")
    report["density"] = _density(gt, distractors, plan)
    save()
    if matched:
        report["matched"] = _matched(work, gt, distractors, plan, sizes)
    save()
    if fastscan and sizes:
        # Lists as long as those of the extrapolated index with the largest subset (1M x 200 rows in 65,536
        # lists: ~3,050 rows each); a few thousand images' rows are enough to time a scan.
        images = min(largest, FASTSCAN_IMAGES)
        per_list = plan.scale * max(s.size for s in plan.subsets) / plan.nlist
        nlist = max(1, round(int(distractors.counts()[:images].sum()) / per_list))
        report["fastscan"] = fastscan_costs(gt, distractors, images, nlist)
    save()
    return report


def _json(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and math.isinf(value):
        return None
    raise TypeError(type(value))


def _density(gt: GroundTruth, distractors: Distractors, plan: Plan) -> list[dict[str, Any]]:
    """Rows closer than the cover descriptor per million rows, per kind of rows (exact search).

    Compares, at equal row counts from the self-tested images, each image's re-found subset, its first
    descriptors, and all descriptors of fewer images (the pooled rows the sizes above are filled with).
    """
    out: list[dict[str, Any]] = []
    if distractors.rated == 0:
        return out
    lists = np.zeros((len(distractors), KEEP), np.int32)
    for size in sorted({s.size for s in plan.subsets}):
        for kind in ("refound", "first", "pool"):
            if kind == "pool":
                images = max(1, round(distractors.rated * size / KEEP))
                rows = distractor_rows(distractors, images, None, lists)
            else:
                rows = distractor_rows(distractors, distractors.rated, Subset(kind, size), lists)
            counts = closer_counts(rows.codes, gt, Subset("refound", size))
            out.append(
                {
                    "size": size,
                    "rows": kind,
                    "vectors": len(rows.ids),
                    "closer_per_million": float(counts.mean() / len(rows.ids) * 1e6),
                    "pairs_with_closer": float(np.mean(counts > 0)),
                }
            )
    return out


def _matched(
    work: Path, gt: GroundTruth, distractors: Distractors, plan: Plan, sizes: Sequence[int]
) -> list[dict[str, Any]]:
    """The largest size again, with as many lists as make each list as long as at ``plan.scale`` targets.

    Rows per list (hence the scan cost per probe) then equal those of the 1M index with ``plan.nlist``
    lists; the lists are coarser than there, so the neighbours scanned are on average further away.
    """
    if not sizes:
        return []
    largest = max(sizes)
    vectors = int(distractors.counts()[:largest].sum())
    out: list[dict[str, Any]] = []
    for size in sorted({s.size for s in plan.subsets}):
        per_list = plan.scale * size / plan.nlist
        nlist = max(plan.top, round(vectors / per_list))
        quantizer = _quantizer(work, distractors, plan, nlist)
        lists = _lists(work, distractors, quantizer, plan, largest)
        rows = distractor_rows(distractors, largest, None, lists)
        subsets = [s for s in plan.subsets if s.size == size]
        out += _measure_size(
            gt,
            quantizer,
            rows,
            plan,
            True,
            subsets,
            {"mode": "matched", "images": largest, "list_target": per_list},
        )
        del rows
    return out


def fastscan_costs(
    gt: GroundTruth,
    distractors: Distractors,
    images: int,
    nlist: int,
    code_bytes: Sequence[int] = (32, 16),
    nprobes: Sequence[int] = (16, 32),
    photos: int = 40,
    max_distance: int = 56,
) -> list[dict[str, Any]]:
    """Scan cost of FAISS's SIMD fast-scan PQ codes against its binary IVF, at equal list lengths.

    All descriptors of the first ``images`` distractor images go into a binary IVF (popcount distances) and
    into an IVF-PQ fast-scan index over the descriptor bits as 0/1 floats (4-bit sub-quantizers, so
    ``code_bytes`` 32 has one sub-quantizer per 4 bits, 16 one per 8), each with ``nlist`` lists of its own.
    Per photo, thread CPU of the list scan alone (the coarse step is timed apart), and ``agreement``: the
    share of the binary index's k = 3 neighbours within ``max_distance`` that the fast-scan index
    also returns.
    """
    desc = distractors.descriptors()
    counts = distractors.counts()[:images]
    rows = np.concatenate([np.asarray(desc[i, : counts[i]]) for i in range(images)])
    ids = np.arange(len(rows), dtype=np.int64)
    sample = rows[np.random.default_rng(0).choice(len(rows), min(len(rows), nlist * 40), replace=False)]
    binary = faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(BITS), BITS, nlist)
    binary.train(sample)
    binary.add_with_ids(rows, ids)
    queries = [np.ascontiguousarray(x) for x in gt.photo_desc[:photos]]
    out: list[dict[str, Any]] = []
    for size in code_bytes:
        fast: Any = faiss.IndexIVFPQFastScan(faiss.IndexFlatL2(BITS), BITS, nlist, 2 * size, 4)
        fast.by_residual = False  # one lookup table per photo descriptor, as the binary scan needs none
        fast.train(_unpack(sample))
        for a in range(0, len(rows), 250_000):
            fast.add_with_ids(_unpack(rows[a : a + 250_000]), ids[a : a + 250_000])
        for nprobe in nprobes:
            binary.nprobe = fast.nprobe = nprobe
            coarse, scan_binary, scan_fast = [], [], []
            agree = total = 0
            for x in queries:
                t = time.thread_time()
                dq, lq = binary.quantizer.search(x, nprobe)
                coarse.append(time.thread_time() - t)
                t = time.thread_time()
                db, ib = binary.search_preassigned(x, 3, lq, dq)
                scan_binary.append(time.thread_time() - t)
                xf = _unpack(x)
                dqf, lqf = fast.quantizer.search(xf, nprobe)
                t = time.thread_time()
                _, i_fast = fast.search_preassigned(xf, 3, lqf, dqf)
                scan_fast.append(time.thread_time() - t)
                near = (ib >= 0) & (db <= max_distance)
                agree += int(((i_fast[:, :, None] == ib[:, None, :]).any(axis=1) & near).sum())
                total += int(near.sum())
            out.append(
                {
                    "images": images,
                    "rows": len(rows),
                    "rows_per_list": len(rows) / nlist,
                    "code_bytes": size,
                    "nprobe": nprobe,
                    "coarse_ms_p50": 1000 * float(np.median(coarse)),
                    "binary_scan_ms_p50": 1000 * float(np.median(scan_binary)),
                    "fastscan_scan_ms_p50": 1000 * float(np.median(scan_fast)),
                    "agreement": agree / max(total, 1),
                }
            )
            _log(f"fast-scan {out[-1]}")
        del fast
    return out


_FIGURES = ("retrieved", "top1", "top10", "top20")


def _extrapolate(report: dict[str, Any], plan: Plan) -> list[dict[str, Any]]:
    """Per setting: each figure's straight-line trend over log(targets' worth) at every measured size, read
    at ``plan.scale`` (the ranking figures move by about one photo in 200 between sizes: read them with
    that noise in mind)."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in report["runs"]:
        if r["mode"] == "pool":
            groups.setdefault((r["subset"], r["nprobe"], r["k"], r["max_distance"]), []).append(r)
    out = []
    for (subset, nprobe, k, max_distance), runs in groups.items():
        size = int(subset.split("-")[1])
        runs = sorted({r["vectors"]: r for r in runs}.values(), key=lambda r: r["vectors"])
        worth = [r["vectors"] / size for r in runs]
        entry: dict[str, Any] = {
            "subset": subset,
            "nprobe": nprobe,
            "k": k,
            "max_distance": max_distance,
            "from_targets": [round(w) for w in worth],
        }
        for figure in _FIGURES:
            entry[figure] = min(1.0, max(0.0, _fit(worth, [r[figure] for r in runs], plan.scale)))
            entry[f"{figure}_measured"] = runs[-1][figure]
        out.append(entry)
    return out


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def markdown(report: dict[str, Any], max_distance: int = 56) -> str:
    """The report's tables: quantizer, density check, every setting per size, and the extrapolation."""
    m = report["machine"]
    plan = report["plan"]
    lines = [
        "# Representation benchmark: verified correspondences kept at scale",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Python {m['python']}, "
        f"OpenCV {m['opencv']}. Photos: {report['photos']} ({report['verified_photos']} verified against "
        f"their cover, {report['verified_pairs']:,} inlier correspondences). Distractors: "
        f"{report['distractor_images']:,} rendered images, {report['distractor_descriptors']:,} descriptors "
        f"({report['rated_distractor_images']:,} self-tested). Index: {plan['nlist']:,} lists, two-level "
        f"quantizer ({plan['top']} top cells; photo descriptors look under {plan['top_probe']}, indexed ones "
        f"under {plan['add_top_probe']}).",
        "",
    ]
    q = report.get("quantizer")
    if q:
        lines += ["## Coarse quantizer (CPU ms per photo, share of the exact nearest lists found)", ""]
        lines += ["| quantizer | ms | found |", "|---|---|---|", f"| exact ({q['nlist']:,} centroids) | "]
        lines[-1] += f"{q['exact_ms']:.1f} | 100% |"
        for key, value in q.items():
            if key.endswith("_ms") and key != "exact_ms":
                name = key[: -len("_ms")]
                lines.append(f"| {name} | {value:.1f} | {_pct(q.get(name + '_found'))} |")
        lines.append("")
    if report.get("density"):
        lines += [
            "## Density check: rows closer than the cover descriptor, per million rows (exact search)",
            "",
            "| subset size | rows | vectors | closer per million | pairs with any closer |",
            "|---|---|---|---|---|",
        ]
        for d in report["density"]:
            lines.append(
                f"| {d['size']} | {d['rows']} | {d['vectors']:,} | {d['closer_per_million']:.2f} | "
                f"{_pct(d['pairs_with_closer'])} |"
            )
        lines.append("")
    header = (
        "| mode | images | vectors | rows/list | subset | nprobe | k | in subset | probed | retrieved "
        "| top-1 | top-10 | top-20 | votes cover / best other p50 | search p50 / p95 ms |"
    )
    lines += [f"## Every setting (max distance {max_distance})", "", header, "|" + "---|" * 15]
    for r in report["runs"] + report.get("matched", []):
        if r["max_distance"] != max_distance:
            continue
        lines.append(
            f"| {r['mode']} | {r['images']:,} | {r['vectors']:,} | {r['rows_per_list']:.0f} | "
            f"{r['subset']} | {r['nprobe']} | {r['k']} | {_pct(r['in_subset'])} | {_pct(r['probed'])} | "
            f"{_pct(r['retrieved'])} | {_pct(r['top1'])} | {_pct(r['top10'])} | {_pct(r['top20'])} | "
            f"{r['true_votes_p50']:.0f} / {r['best_other_votes_p50']:.0f} | "
            f"{r['search_cpu_ms_p50']:.1f} / {r['search_cpu_ms_p95']:.1f} |"
        )
    if report.get("fastscan"):
        lines += [
            "",
            "## Scan cost: binary IVF against fast-scan PQ over the descriptor bits (CPU ms per photo)",
            "",
            "| rows | rows/list | code bytes | nprobe | coarse | binary scan | fast-scan scan | agreement |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for f in report["fastscan"]:
            lines.append(
                f"| {f['rows']:,} | {f['rows_per_list']:.0f} | {f['code_bytes']} | {f['nprobe']} | "
                f"{f['coarse_ms_p50']:.1f} | {f['binary_scan_ms_p50']:.1f} | "
                f"{f['fastscan_scan_ms_p50']:.1f} | {_pct(f['agreement'])} |"
            )
    lines += [
        "",
        f"## Extrapolated to {plan['scale']:,} targets (trend over log(targets' worth), all sizes)",
        "",
        "| subset | nprobe | k | max distance | from targets' worth | retrieved (measured → predicted) "
        "| top-1 | top-10 | top-20 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for e in report["extrapolated"]:
        cells = " | ".join(f"{_pct(e[f + '_measured'])} → {_pct(e[f])}" for f in _FIGURES)
        worth = ", ".join(f"{w:,}" for w in e["from_targets"])
        lines.append(
            f"| {e['subset']} | {e['nprobe']} | {e['k']} | {e['max_distance']} | {worth} | {cells} |"
        )
    return "\n".join(lines) + "\n"
