"""Coarse quantizers of the binary IVF index: how its lists are trained, and how a descriptor finds its lists.

A scope's inverted file cuts its rows into ``nlist`` lists around binary centroids; a vote scans the lists
of each photo descriptor's ``nprobe`` nearest centroids. Two costs follow from ``nlist``:

* **Training.** One k-means over all 256 bits costs time proportional to sample x lists, i.e. to the square
  of the lists: at 16,384 lists that is hours of one core. Above ``flat`` lists the centroids are trained in
  two levels (:func:`two_level_centroids`): ~sqrt(nlist) top cells, each split by its own k-means.
* **Finding the lists.** Comparing a descriptor with every centroid costs ~1.5 ns per centroid, and a scan
  of the lists ~3 ns per row, so for a scope of ``rows`` rows a vote costs about
  ``nlist + 2 * nprobe * rows / nlist`` row-equivalents: with every centroid compared, lists cannot usefully
  outnumber ~sqrt(2 * nprobe * rows). With ``top_probe`` > 0 the centroids are grouped under ~sqrt(nlist)
  top cells (a k-means of the centroids themselves) and a descriptor is compared with the top cells and then
  with the centroids of its ``top_probe`` nearest cells only (:class:`CoarseQuantizer`), so a large scope
  can have short lists. It misses some nearest centroids, and with them some votes: at 100,000 targets of
  the subset index (20M rows) it made photos of nothing 30-40% cheaper and found 1-4 fewer of 200 covers
  (docs/RECOGNITION.md, section 3b), so the index settings leave it off by default.

Rows are added to their list by the same search, so a row and a query descriptor that resemble it meet in
the same list whenever they share their nearest centroid among those compared.
"""

from __future__ import annotations

import math

import faiss
import numpy as np

BITS = 256


class CoarseQuantizer:
    """A scope's centroids (``flat``, the FAISS index an IVF segment is built and saved with) and the search
    for a descriptor's nearest ones: among all of them (``top_probe`` 0), or among the centroids of its
    ``top_probe`` nearest top cells.

    Read-only once built, so searches share it without a lock.
    """

    def __init__(self, flat: faiss.IndexBinaryFlat, top_probe: int = 0, seed: int = 1) -> None:
        self.flat = flat
        self.nlist = int(flat.ntotal)
        self.top_probe = top_probe
        self._top: faiss.IndexBinaryFlat | None = None
        self._cells: list[faiss.IndexBinaryFlat] = []
        self._members: list[np.ndarray] = []  # centroid numbers of each top cell, in the cell's order
        if top_probe > 0:
            centroids = flat_codes(flat)
            top = binary_kmeans(centroids, max(1, min(256, math.isqrt(self.nlist))), seed)
            self._top = faiss.IndexBinaryFlat(BITS)
            self._top.add(top)
            _, cell = self._top.search(centroids, 1)
            cell = cell.ravel()
            for c in range(len(top)):
                members = np.nonzero(cell == c)[0]
                index = faiss.IndexBinaryFlat(BITS)
                if len(members):
                    index.add(np.ascontiguousarray(centroids[members]))
                self._cells.append(index)
                self._members.append(members.astype(np.int64))

    @property
    def two_level(self) -> bool:
        return self._top is not None

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Distances and numbers of each descriptor's ``k`` nearest centroids, nearest first (-1: none)."""
        if self._top is None:
            dist, lists = self.flat.search(query, k)
            return dist, lists
        n, probe = len(query), min(self.top_probe, len(self._cells))
        _, top = self._top.search(query, probe)
        dist = np.full((n, probe * k), np.iinfo(np.int32).max, np.int32)
        lists = np.full((n, probe * k), -1, np.int64)
        for j in range(probe):
            # The descriptors whose j-th nearest cell is c are searched against c's centroids in one call.
            col = top[:, j]
            order = np.argsort(col, kind="stable")
            bounds = np.searchsorted(col[order], np.arange(len(self._cells) + 1))
            for c in np.nonzero(np.diff(bounds))[0].tolist():
                cell = self._cells[c]
                kk = min(k, int(cell.ntotal))
                if kk == 0:
                    continue
                rows = order[bounds[c] : bounds[c + 1]]
                d, local = cell.search(query[rows], kk)
                dist[rows, j * k : j * k + kk] = d
                lists[rows, j * k : j * k + kk] = np.where(
                    local >= 0, self._members[c][np.maximum(local, 0)], -1
                )
        if probe > 1:
            best = np.argsort(dist, axis=1, kind="stable")[:, :k]
            dist = np.take_along_axis(dist, best, axis=1)
            lists = np.take_along_axis(lists, best, axis=1)
        return dist[:, :k], lists[:, :k]

    def assign(self, rows: np.ndarray) -> np.ndarray:
        """The list of each row: its nearest centroid, found as a query descriptor finds its lists."""
        _, lists = self.search(rows, 1)
        return np.ascontiguousarray(lists[:, 0], dtype=np.int64)


def flat_codes(index: faiss.IndexBinaryFlat) -> np.ndarray:
    """A copy of the codes a flat binary index holds, one row per vector."""
    codes: np.ndarray = faiss.vector_to_array(index.xb)  # type: ignore[attr-defined]
    return codes.reshape(int(index.ntotal), index.code_size)


def binary_kmeans(codes: np.ndarray, k: int, seed: int, niter: int = 10) -> np.ndarray:
    """``k`` binary centroids of ``codes``: k-means on the bits as 0/1 floats, centroids rounded to bits."""
    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    if len(codes) <= k:
        return codes[:k].copy()
    km = faiss.Kmeans(BITS, k, niter=niter, seed=seed, verbose=False, min_points_per_centroid=1)
    km.train(np.unpackbits(codes, axis=1).astype(np.float32))
    return np.packbits(np.asarray(km.centroids) > 0.5, axis=1)


def _centroids_per_cell(sizes: np.ndarray, nlist: int) -> np.ndarray:
    """How many of ``nlist`` centroids each top cell of a two-level quantizer gets, given how many sample
    rows fell into each (``sizes``): at least one per cell, the rest by the largest remainders of each
    cell's share of the sample."""
    share = sizes.astype(np.float64) / sizes.sum() * (nlist - len(sizes))
    alloc: np.ndarray = np.floor(share).astype(np.int64) + 1
    rest = nlist - int(alloc.sum())
    if rest > 0:
        alloc[np.argsort(-(share - np.floor(share)))[:rest]] += 1
    return alloc


def two_level_centroids(sample: np.ndarray, nlist: int, seed: int = 1) -> np.ndarray:
    """At most ``nlist`` binary centroids trained in two levels (:func:`two_level_cells`) with about
    sqrt(nlist) top cells, at most 256."""
    _, parts = two_level_cells(sample, nlist, max(1, min(256, math.isqrt(nlist))), seed)
    return np.ascontiguousarray(np.concatenate(parts), dtype=np.uint8)


def two_level_cells(
    sample: np.ndarray, nlist: int, top: int, seed: int = 1
) -> tuple[np.ndarray, list[np.ndarray]]:
    """``top`` k-means cells over the sample, and each cell's own k-means centroids, at most ``nlist`` in all
    (:func:`_centroids_per_cell`); a cell the sample left empty keeps its own centroid."""
    sample = np.ascontiguousarray(sample, dtype=np.uint8)
    top = min(top, nlist)
    rng = np.random.default_rng(seed)
    top_codes = binary_kmeans(sample[rng.permutation(len(sample))[: top * 100]], top, seed)
    cells = faiss.IndexBinaryFlat(BITS)
    cells.add(top_codes)
    _, cell = cells.search(sample, 1)
    cell = cell.ravel()
    alloc = _centroids_per_cell(np.bincount(cell, minlength=len(top_codes)), nlist)
    parts = []
    for c in range(len(top_codes)):
        members = sample[cell == c]
        parts.append(
            top_codes[c : c + 1] if len(members) == 0 else binary_kmeans(members, int(alloc[c]), seed + c)
        )
    return top_codes, parts
