"""Estimates with 95% confidence intervals: Wilson's interval for a rate,
Student's t for a mean, and percentiles by linear interpolation."""

from __future__ import annotations

import math
from collections.abc import Sequence

from pydantic import BaseModel

Z95 = 1.959963984540054
# Student's t two-sided 95% critical values for 1..30 degrees of freedom; past
# 30 the normal's 1.96 is within 4% and is used.
T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
       2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
       2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


class Estimate(BaseModel):
    """A figure from `n` observations, and its 95% confidence interval
    (`low` = `high` = `value` for one observation of a mean; all None for none)."""

    value: float | None = None
    low: float | None = None
    high: float | None = None
    n: int = 0


def wilson(successes: int, n: int) -> Estimate:
    """A rate's estimate with Wilson's score interval (sound at 0%, 100% and small n)."""
    if n == 0:
        return Estimate()
    rate = successes / n
    z2 = Z95 * Z95
    centre = (rate + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(rate * (1 - rate) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return Estimate(value=rate, low=max(0.0, centre - half), high=min(1.0, centre + half), n=n)


# Bounds for `mean`: a score in [0, 1]; a count or cost, never negative.
SCORE = (0.0, 1.0)
COUNT = (0.0, math.inf)


def mean(values: Sequence[float], bounds: tuple[float, float] = (-math.inf, math.inf)
         ) -> Estimate:
    """A mean's estimate with Student's t interval, cut to `bounds` (a score
    in [0, 1], a count that cannot be negative)."""
    n = len(values)
    if n == 0:
        return Estimate()
    average = math.fsum(values) / n
    if n == 1:
        return Estimate(value=average, low=average, high=average, n=1)
    variance = math.fsum((v - average) ** 2 for v in values) / (n - 1)
    critical = T95[n - 2] if n - 1 <= len(T95) else Z95
    half = critical * math.sqrt(variance / n)
    low, high = bounds
    return Estimate(value=average, low=max(average - half, low), high=min(average + half, high),
                    n=n)


def percentile(values: Sequence[float], share: float) -> float | None:
    """The `share` (0..1) percentile, interpolating linearly between the two
    nearest ranks (numpy's default); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    position = share * (len(ordered) - 1)
    below = math.floor(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


def two_proportion_z(successes_a: int, n_a: int, successes_b: int, n_b: int) -> float | None:
    """The pooled two-proportion z statistic of rate b minus rate a (positive:
    b succeeds more often); None when either sample is empty or the pooled
    rate is 0 or 1 (no variance to test against)."""
    if n_a == 0 or n_b == 0:
        return None
    pooled = (successes_a + successes_b) / (n_a + n_b)
    variance = pooled * (1 - pooled) * (1 / n_a + 1 / n_b)
    if variance == 0:
        return None
    return (successes_b / n_b - successes_a / n_a) / math.sqrt(variance)
