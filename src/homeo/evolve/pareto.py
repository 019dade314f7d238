"""NSGA-II's ranking: fast non-dominated sorting and crowding distance.

Every objective is maximised; negate one to minimise it (a cost becomes
`-cost`). A point dominates another when it is no worse on every objective and
better on at least one. Front 0 is the Pareto front; later fronts are what is
left once the earlier ones are removed. Crowding distance favours points far
from their neighbours on a front, so selection keeps the front spread out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Point = Sequence[float]


def dominates(a: Point, b: Point) -> bool:
    """True when `a` is no worse than `b` on every objective and better on one."""
    if len(a) != len(b):
        raise ValueError(f"points have {len(a)} and {len(b)} objectives; they must match")
    return all(x >= y for x, y in zip(a, b, strict=True)) and any(
        x > y for x, y in zip(a, b, strict=True))


def non_dominated_sort(points: Sequence[Point]) -> list[list[int]]:
    """The indices of `points` in fronts, best first (Deb et al. 2002, O(M N^2))."""
    dominated_by: list[list[int]] = [[] for _ in points]
    counts = [0] * len(points)
    fronts: list[list[int]] = [[]]
    for i, p in enumerate(points):
        for j, q in enumerate(points):
            if i == j:
                continue
            if dominates(p, q):
                dominated_by[i].append(j)
            elif dominates(q, p):
                counts[i] += 1
        if counts[i] == 0:
            fronts[0].append(i)
    while fronts[-1]:
        following: list[int] = []
        for i in fronts[-1]:
            for j in dominated_by[i]:
                counts[j] -= 1
                if counts[j] == 0:
                    following.append(j)
        fronts.append(sorted(following))
    return fronts[:-1]


def pareto_front(points: Sequence[Point]) -> list[int]:
    """The indices of the points no other point dominates."""
    return non_dominated_sort(points)[0] if points else []


def crowding_distance(points: Sequence[Point], front: Sequence[int]) -> dict[int, float]:
    """Each index of `front` and its crowding distance (infinite at the extremes)."""
    distance = {i: 0.0 for i in front}
    if len(front) <= 2:
        return {i: math.inf for i in front}
    for m in range(len(points[front[0]])):
        ordered = sorted(front, key=lambda i: (points[i][m], i))
        low, high = points[ordered[0]][m], points[ordered[-1]][m]
        distance[ordered[0]] = distance[ordered[-1]] = math.inf
        if high == low:
            continue
        for before, here, after in zip(ordered, ordered[1:], ordered[2:]):
            distance[here] += (points[after][m] - points[before][m]) / (high - low)
    return distance


def select(points: Sequence[Point], k: int) -> list[int]:
    """NSGA-II survivor selection: the `k` best indices by front, then by
    crowding distance (ties broken by index, so selection is deterministic)."""
    chosen: list[int] = []
    for front in non_dominated_sort(points):
        if len(chosen) + len(front) <= k:
            chosen.extend(front)
            continue
        distance = crowding_distance(points, front)
        chosen.extend(sorted(front, key=lambda i: (-distance[i], i))[: k - len(chosen)])
        break
    return chosen


def ranks(points: Sequence[Point]) -> tuple[list[int], list[float]]:
    """Each point's front number and crowding distance, for tournament selection."""
    rank = [0] * len(points)
    crowd = [0.0] * len(points)
    for number, front in enumerate(non_dominated_sort(points)):
        for i, d in crowding_distance(points, front).items():
            rank[i], crowd[i] = number, d
    return rank, crowd
