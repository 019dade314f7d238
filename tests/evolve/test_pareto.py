"""NSGA-II ranking on hand-checked points: fronts, crowding, survivor selection."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from homeo.evolve.pareto import (crowding_distance, dominates, non_dominated_sort,
                                 pareto_front, ranks, select)


def test_dominance_needs_no_worse_everywhere_and_better_somewhere() -> None:
    assert dominates((1, 1), (0, 1))
    assert not dominates((1, 1), (1, 1))
    assert not dominates((1, 0), (0, 1))
    with pytest.raises(ValueError, match="objectives"):
        dominates((1,), (1, 2))


def test_fronts_of_score_up_cost_down() -> None:
    # (score, -cost): a and b trade off, c is dominated by b, d by everything but e.
    points = [(0.9, -10.0), (0.5, -2.0), (0.4, -3.0), (0.1, -9.0), (0.05, -20.0)]
    assert non_dominated_sort(points) == [[0, 1], [2], [3], [4]]
    assert pareto_front(points) == [0, 1]
    assert pareto_front([]) == []


def test_front_matches_brute_force_on_random_points() -> None:
    rng = random.Random(7)
    for _ in range(20):
        points = [(rng.randint(0, 5), rng.randint(0, 5)) for _ in range(15)]
        expected = [i for i, p in enumerate(points)
                    if not any(dominates(q, p) for q in points)]
        fronts = non_dominated_sort(points)
        assert fronts[0] == expected
        assert sorted(itertools.chain(*fronts)) == list(range(len(points)))
        for earlier, later in zip(fronts, fronts[1:]):
            # Everything on a later front is dominated by something on the one before.
            assert all(any(dominates(points[i], points[j]) for i in earlier) for j in later)


def test_crowding_distance_is_infinite_at_the_ends_and_normalised_inside() -> None:
    points = [(0.0, 4.0), (1.0, 3.0), (3.0, 1.0), (4.0, 0.0)]
    distance = crowding_distance(points, [0, 1, 2, 3])
    assert distance[0] == distance[3] == math.inf
    assert distance[1] == pytest.approx(3 / 4 + 3 / 4)
    assert distance[2] == pytest.approx(3 / 4 + 3 / 4)
    assert crowding_distance(points, [0, 1]) == {0: math.inf, 1: math.inf}


def test_selection_takes_whole_fronts_then_the_least_crowded() -> None:
    # Front 0 has five points; 1 is hemmed in by 0 and 2 (distance 0.3 + 0.3), while
    # 2 reaches from 1 to 3 (0.5 + 0.5), so 1 goes first.
    points = [(0.0, 4.0), (1.0, 3.0), (1.2, 2.8), (3.0, 1.0), (4.0, 0.0), (0.0, 0.0)]
    assert select(points, 6) == [0, 1, 2, 3, 4, 5]
    assert sorted(select(points, 4)) == [0, 2, 3, 4]
    assert sorted(select(points, 2)) == [0, 4]
    rank, crowd = ranks(points)
    assert rank == [0, 0, 0, 0, 0, 1]
    assert crowd[0] == math.inf
    assert crowd[1] == pytest.approx(0.6) and crowd[2] == pytest.approx(1.0)
