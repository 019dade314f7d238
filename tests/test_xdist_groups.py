"""The suite runs in two pytest-xdist processes with `--dist loadgroup`: tests
marked with one `xdist_group` (the chaos scenarios, local Ray, the injection
measurement) must run one after another in one process. pytest 9.1.1 moved a
node's id where pytest-xdist 3.8 no longer sets the group, and the groups
were silently split (pyproject.toml pins pytest below it); this test fails
if that happens again."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.xdist_group("grouping-check")


def test_a_grouped_test_carries_its_group_to_the_scheduler(request: pytest.FixtureRequest
                                                           ) -> None:
    if not request.config.getoption("loadgroup", default=False):
        pytest.skip("not run by pytest-xdist with --dist loadgroup")
    assert request.node.nodeid.endswith("@grouping-check"), request.node.nodeid
