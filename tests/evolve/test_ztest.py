"""The two-proportion z statistic, against values worked by hand."""

from __future__ import annotations

import pytest

from homeo.evolve.stats import two_proportion_z


def test_z_of_two_rates() -> None:
    # 40/100 vs 60/100: pooled 0.5, se = sqrt(0.25 * 0.02) = 0.0707107; z = 0.2 / se.
    assert two_proportion_z(40, 100, 60, 100) == pytest.approx(2.828427, rel=1e-6)
    assert two_proportion_z(60, 100, 40, 100) == pytest.approx(-2.828427, rel=1e-6)
    assert two_proportion_z(5, 10, 5, 10) == 0.0


def test_no_z_without_data_or_variance() -> None:
    assert two_proportion_z(0, 0, 3, 10) is None
    assert two_proportion_z(10, 10, 20, 20) is None
    assert two_proportion_z(0, 10, 0, 20) is None
