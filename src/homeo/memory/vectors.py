"""Vectors as bytes (little-endian float32), and exact nearest-neighbour search
with numpy over an in-process copy of a collection's vectors.

The copy is rebuilt from the store whenever the collection's version moved
(any write, by this process or another), so it never disagrees with the
store: the store is the truth, and a restart simply rebuilds it."""

from __future__ import annotations

import threading
from dataclasses import dataclass

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


@dataclass(frozen=True, slots=True)
class LoadedVectors:
    version: str
    model: str | None
    dimensions: int | None
    ids: np.ndarray  # chunk ids, one per row
    matrix: np.ndarray  # (chunks, dimensions) float32

    @classmethod
    def of(cls, table: VectorTable) -> LoadedVectors:
        width = table.dimensions or 0
        matrix = np.frombuffer(b"".join(table.vectors), dtype=FLOAT32)
        return cls(table.version, table.model, table.dimensions,
                   np.asarray(table.ids, dtype=np.int64),
                   matrix.reshape(len(table.ids), width) if width else matrix.reshape(0, 0))

    def search(self, query: np.ndarray, k: int) -> list[tuple[int, float]]:
        rows, scores = top_k(self.matrix, query, k)
        return [(int(self.ids[row]), float(score)) for row, score in zip(rows, scores,
                                                                         strict=True)]


class VectorIndex:
    """The loaded vectors of each (tenant, collection) this process searched."""

    def __init__(self) -> None:
        self._loaded: dict[tuple[str, str], LoadedVectors] = {}
        self._lock = threading.Lock()

    def cached(self, tenant_id: str, collection: str, version: str) -> LoadedVectors | None:
        """The collection's vectors, if this process holds them as of `version`."""
        with self._lock:
            loaded = self._loaded.get((tenant_id, collection))
        return loaded if loaded is not None and loaded.version == version else None

    def load(self, tenant_id: str, collection: str,
             table: VectorTable | None) -> LoadedVectors | None:
        """Hold `table` (read from the store) for the collection; None: it is gone."""
        with self._lock:
            if table is None:
                self._loaded.pop((tenant_id, collection), None)
                return None
            loaded = self._loaded[(tenant_id, collection)] = LoadedVectors.of(table)
        return loaded
