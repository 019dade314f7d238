"""Vectors as bytes (little-endian float32), and exact nearest-neighbour search
with numpy over an in-process copy of a collection's vectors.

The copy is rebuilt from the store whenever the collection's version moved
(any write, by this process or another), so it never disagrees with the
store: the store is the truth, and a restart simply rebuilds it.

A collection of at least `ann_min` chunks also gets an approximate index
(HNSW, hnswlib, the `ann` extra), built from that copy on a background
thread and brought up to date with each new version (new chunks added,
deleted ones marked). A search uses it only when it is as of the version the
search reads; until then, exact search answers. It lives in memory only: a
restart builds it again from the store, so a crash can never leave it behind
the store."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from homeo.memory.store import VectorTable

FLOAT32 = np.dtype("<f4")


def to_bytes(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype=FLOAT32).tobytes()


def normalized(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1, so a dot product is the cosine similarity."""
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=-1, keepdims=True)
    return matrix / np.where(norms == 0, 1, norms)


def top_k(matrix: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The rows of `matrix` nearest to `query` by dot product: (rows, scores), best first."""
    if len(matrix) == 0 or k <= 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
    scores = matrix @ query
    if k < len(scores):
        rows = np.argpartition(-scores, k)[:k]
        rows = rows[np.argsort(-scores[rows], kind="stable")]
    else:
        rows = np.argsort(-scores, kind="stable")
    return rows, scores[rows]


ANN_MIN = 20_000  # below this many chunks exact search is about as fast (bench/memory_search.py)


def ann_available() -> bool:
    """Whether hnswlib (the `ann` extra) is installed; without it, search is exact."""
    try:
        import hnswlib  # noqa: F401
    except ImportError:
        return False
    return True


# HNSW's shape (bench/memory_search.py measures recall@10 against exact search
# on two kinds of vectors): links per node, and the breadth of the search that
# builds them. More links cost memory and build time; they lift recall most on
# vectors that vary in many directions at once.
M = 16
EF_CONSTRUCTION = 200


EF_AT_10K = 128  # hnswlib's ef for a collection of 10k vectors or fewer
EF_MAX = 1000


def search_ef(count: int, k: int) -> int:
    """How broad a search is (hnswlib's ef) for `k` results from `count`
    vectors: HNSW's recall at one ef falls as the collection grows, so ef
    doubles with each tenfold growth past 10k, and is at least 2k."""
    grown = EF_AT_10K * 2.0 ** max(0.0, float(np.log10(max(count, 1) / 10_000)))
    return int(min(EF_MAX, max(2 * k, grown)))


class ApproximateIndex:
    """HNSW over a collection's vectors (inner product: they are unit length),
    labelled by chunk id. `ef`: how broad each search is; None chooses it from
    the collection's size and k (`search_ef`)."""

    def __init__(self, dimensions: int, *, m: int = M, ef_construction: int = EF_CONSTRUCTION,
                 ef: int | None = None, threads: int = 1) -> None:
        try:
            import hnswlib
        except ImportError as exc:
            raise ImportError("the approximate index needs hnswlib: pip install 'homeo[ann]'"
                              ) from exc
        self.dimensions = dimensions
        self.version: str | None = None
        self.m = m
        self.ef = ef
        self.threads = threads
        self._index: Any = hnswlib.Index(space="ip", dim=dimensions)
        self._index.init_index(max_elements=1024, M=m, ef_construction=ef_construction)
        self._index.set_num_threads(threads)
        self._ids = np.empty(0, dtype=np.int64)  # the live labels, sorted

    def ef_for(self, k: int) -> int:
        """The ef a search for `k` results uses."""
        if self.ef is not None:
            return max(self.ef, k)
        return search_ef(len(self._ids), k)

    def sync(self, loaded: LoadedVectors) -> None:
        """Make the index hold exactly `loaded`'s chunks."""
        ids = np.sort(loaded.ids)
        for gone in np.setdiff1d(self._ids, ids, assume_unique=True):
            self._index.mark_deleted(int(gone))
        new = ~np.isin(loaded.ids, self._ids, assume_unique=True)
        if new.any():
            needed = self._index.get_current_count() + int(new.sum())
            if needed > self._index.get_max_elements():
                self._index.resize_index(max(needed, 2 * self._index.get_max_elements()))
            self._index.add_items(loaded.matrix[new], loaded.ids[new],
                                  num_threads=self.threads)
        self._ids = ids
        self.version = loaded.version

    def search(self, query: np.ndarray, k: int) -> list[tuple[int, float]]:
        k = min(k, len(self._ids))
        if k <= 0:
            return []
        self._index.set_ef(self.ef_for(k))
        labels, distances = self._index.knn_query(query, k=k, num_threads=1)
        # hnswlib's inner-product distance is 1 - dot.
        return [(int(label), float(1.0 - distance))
                for label, distance in zip(labels[0], distances[0], strict=True)]


@dataclass(frozen=True, slots=True)
class LoadedVectors:
    version: str
    model: str | None
    dimensions: int | None
    ids: np.ndarray  # chunk ids, one per row
    matrix: np.ndarray  # (chunks, dimensions) float32
    approximate: ApproximateIndex | None = field(default=None, compare=False)

    @classmethod
    def of(cls, table: VectorTable) -> LoadedVectors:
        width = table.dimensions or 0
        matrix = np.frombuffer(b"".join(table.vectors), dtype=FLOAT32)
        return cls(table.version, table.model, table.dimensions,
                   np.asarray(table.ids, dtype=np.int64),
                   matrix.reshape(len(table.ids), width) if width else matrix.reshape(0, 0))

    def search(self, query: np.ndarray, k: int) -> list[tuple[int, float]]:
        """The approximate index's answer when it is as of this version, else exact."""
        if self.approximate is not None and self.approximate.version == self.version:
            return self.approximate.search(query, k)
        return self.exact(query, k)

    def exact(self, query: np.ndarray, k: int) -> list[tuple[int, float]]:
        rows, scores = top_k(self.matrix, query, k)
        return [(int(self.ids[row]), float(score)) for row, score in zip(rows, scores,
                                                                         strict=True)]


class VectorIndex:
    """The loaded vectors of each (tenant, collection) this process searched,
    and the approximate indexes of the large ones.

    `ann_min`: the fewest chunks that get an approximate index (None: never).
    `background`: build and update those indexes on a thread of their own
    (False: inside `load`, as tests and benchmarks want). `ef`: fixed search
    breadth (None: chosen per collection size, `search_ef`)."""

    def __init__(self, *, ann_min: int | None = ANN_MIN, background: bool = True,
                 ef: int | None = None, threads: int = 1) -> None:
        """`threads`: how many build an approximate index (1: one core stays
        free for searches while a large collection is indexed)."""
        self.ann_min = ann_min if ann_available() else None
        self.ef = ef
        self.threads = threads
        self._loaded: dict[tuple[str, str], LoadedVectors] = {}
        self._approximate: dict[tuple[str, str], ApproximateIndex] = {}
        self._lock = threading.Lock()
        self._builder = (ThreadPoolExecutor(max_workers=1, thread_name_prefix="ann")
                         if background else None)

    def cached(self, tenant_id: str, collection: str, version: str) -> LoadedVectors | None:
        """The collection's vectors, if this process holds them as of `version`."""
        with self._lock:
            loaded = self._loaded.get((tenant_id, collection))
        return loaded if loaded is not None and loaded.version == version else None

    def load(self, tenant_id: str, collection: str,
             table: VectorTable | None) -> LoadedVectors | None:
        """Hold `table` (read from the store) for the collection; None: it is gone."""
        key = (tenant_id, collection)
        fresh = None if table is None else LoadedVectors.of(table)
        with self._lock:
            approximate = self._approximate.get(key)
            if fresh is None or (approximate is not None
                                 and approximate.dimensions != fresh.dimensions):
                self._approximate.pop(key, None)  # gone, or re-embedded: start again
                approximate = None
            if fresh is None:
                self._loaded.pop(key, None)
                return None
            loaded = self._loaded[key] = LoadedVectors(
                fresh.version, fresh.model, fresh.dimensions, fresh.ids, fresh.matrix,
                approximate)
        if self.ann_min is not None and len(loaded.ids) >= self.ann_min and loaded.dimensions:
            if self._builder is None:
                self._sync(key, loaded)
            else:
                self._builder.submit(self._sync, key, loaded)
        with self._lock:
            return self._loaded.get(key)

    def _sync(self, key: tuple[str, str], loaded: LoadedVectors) -> None:
        with self._lock:
            if self._loaded.get(key) is not loaded:
                return  # a newer version came meanwhile: its own sync follows
            approximate = self._approximate.get(key)
        if approximate is None:
            assert loaded.dimensions is not None
            approximate = ApproximateIndex(loaded.dimensions, ef=self.ef, threads=self.threads)
        approximate.sync(loaded)
        with self._lock:
            current = self._loaded.get(key)
            if current is None or current.dimensions != approximate.dimensions:
                return
            self._approximate[key] = approximate
            if current.version == loaded.version:
                self._loaded[key] = LoadedVectors(
                    current.version, current.model, current.dimensions, current.ids,
                    current.matrix, approximate)

    def close(self) -> None:
        if self._builder is not None:
            self._builder.shutdown(wait=False, cancel_futures=True)
