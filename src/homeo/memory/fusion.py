"""Reciprocal rank fusion (Cormack, Clarke and Büttcher, 2009): each list
gives an item 1 / (k + rank); the sums rank the fused list. Ranks, not
scores, are added, so bm25 and cosine need no common scale."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TypeVar

K = 60  # the paper's constant: dampens the weight of the very first ranks

T = TypeVar("T", bound=Hashable)


def reciprocal_rank_fusion(rankings: Sequence[Sequence[T]], k: int = K) -> list[tuple[T, float]]:
    """Items of all `rankings` (each best first), fused, best first; ties keep
    the order in which the items first appeared."""
    scores: dict[T, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda pair: -pair[1])
