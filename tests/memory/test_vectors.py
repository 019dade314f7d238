"""The in-process vector index: exact search, and the approximate (HNSW) index
kept in step with each version of a collection."""

from __future__ import annotations

import numpy as np

from homeo.memory.store import VectorTable
from homeo.memory.vectors import (
    EF_AT_10K,
    EF_MAX,
    ApproximateIndex,
    VectorIndex,
    normalized,
    search_ef,
    to_bytes,
)


def ids(found: list[tuple[int, float]]) -> list[int]:
    return [i for i, _ in found]


def table(version: str, ids: list[int], matrix: np.ndarray) -> VectorTable:
    return VectorTable(version, "m", matrix.shape[1], ids, [to_bytes(row) for row in matrix])


def test_the_approximate_index_follows_each_version_and_agrees_with_exact() -> None:
    rng = np.random.default_rng(3)
    matrix = normalized(rng.standard_normal((600, 8)))
    index = VectorIndex(ann_min=100, background=False)
    loaded = index.load("t", "c", table("v1", list(range(1, 601)), matrix))
    assert loaded is not None and loaded.approximate is not None
    assert loaded.approximate.version == "v1"
    for row in (0, 17, 599):
        assert ids(loaded.search(matrix[row], 5)) == ids(loaded.exact(matrix[row], 5))
        assert loaded.search(matrix[row], 1)[0][0] == row + 1
    # Chunks 1-100 deleted, 700-749 added: the index holds exactly the new version.
    added = normalized(rng.standard_normal((50, 8)))
    kept = list(range(101, 601)) + list(range(700, 750))
    loaded = index.load("t", "c", table("v2", kept, np.vstack([matrix[100:], added])))
    assert loaded is not None and loaded.approximate is not None
    assert loaded.approximate.version == "v2"
    assert ids(loaded.search(matrix[0], 10)) == ids(loaded.exact(matrix[0], 10))
    assert all(i > 100 for i, _ in loaded.search(matrix[0], 10))
    assert loaded.search(added[3], 1)[0][0] == 703


def test_small_collections_and_other_dimensions_use_exact_search() -> None:
    rng = np.random.default_rng(4)
    index = VectorIndex(ann_min=100, background=False)
    small = index.load("t", "c", table("v1", list(range(50)), normalized(
        rng.standard_normal((50, 8)))))
    assert small is not None and small.approximate is None
    big = index.load("t", "c", table("v2", list(range(200)), normalized(
        rng.standard_normal((200, 8)))))
    assert big is not None and big.approximate is not None
    # Re-embedded with another dimension: the old index is dropped, a new one built.
    other = normalized(rng.standard_normal((200, 4)))
    loaded = index.load("t", "c", table("v3", list(range(200)), other))
    assert loaded is not None and loaded.approximate is not None
    assert loaded.approximate.dimensions == 4
    assert loaded.search(other[9], 1)[0][0] == 9
    assert index.load("t", "c", None) is None and index.cached("t", "c", "v3") is None


def test_search_breadth_grows_with_the_collection_and_k() -> None:
    assert search_ef(1_000, 10) == search_ef(10_000, 10) == EF_AT_10K
    assert search_ef(100_000, 10) == 2 * EF_AT_10K
    assert search_ef(1_000_000, 10) == 4 * EF_AT_10K
    assert search_ef(1_000, 200) == 400  # never under 2k
    assert search_ef(10**12, 10) == EF_MAX
    fixed = ApproximateIndex(4, ef=30)
    assert (fixed.ef_for(10), fixed.ef_for(50)) == (30, 50)
