"""Reciprocal rank fusion (Cormack, Clarke and Büttcher, 2009): each list
gives an item 1 / (k + rank); the sums rank the fused list. Ranks, not
scores, are added, so bm25 and cosine need no common scale."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TypeVar

K = 60  # the paper's constant: dampens the weight of the very first ranks

# What hybrid search uses, chosen by bench/fusion_tuning.py on half of the
# labelled set (tests/memory/data) and checked on the other half: a small k
# trusts the first ranks of each list more, and full text counts a fifth of
# vectors, so its matches on ordinary words push a right answer down less.
HYBRID_K = 5
HYBRID_TEXT_WEIGHT = 0.2

T = TypeVar("T", bound=Hashable)


def reciprocal_rank_fusion(rankings: Sequence[Sequence[T]], k: int = K,
                           weights: Sequence[float] | None = None) -> list[tuple[T, float]]:
    """Items of all `rankings` (each best first), fused, best first; ties keep
    the order in which the items first appeared. `weights`: one per ranking
    (default 1 each), multiplying what its ranks give."""
    if weights is not None and len(weights) != len(rankings):
        raise ValueError(f"{len(weights)} weights for {len(rankings)} rankings")
    scores: dict[T, float] = {}
    for index, ranking in enumerate(rankings):
        weight = 1.0 if weights is None else weights[index]
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
    return sorted(scores.items(), key=lambda pair: -pair[1])
