"""The memory a process may still use, read in a real cgroup with a memory
limit (as in a container): the room under the limit, not the machine's."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from homeo.sandbox.cgroups import RunCgroup
from homeo.sandbox.limits import Limits

LIMIT = 256 * 2**20
HELD = 160 * 2**20
# Started outside the group; moved in by the test; then holds HELD bytes and
# reports what it sees.
CHILD = f"""
import json, sys
from homeo.observe import memory_room
sys.stdin.readline()  # moved into the group by now
held = bytearray({HELD})
for index in range(0, len(held), 4096):
    held[index] = 1  # touch every page: resident, charged to the group
print(json.dumps({{"room": memory_room.cgroup_room(),
                  "ratio": memory_room.available_ratio(),
                  "machine": memory_room.machine_available_ratio()}}))
"""


def _report(group: RunCgroup | None) -> dict:
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    if group is not None:
        group.add(child.pid)
    out, _ = child.communicate("go\n", timeout=120)
    assert child.returncode == 0, out
    return json.loads(out)


def test_inside_a_memory_limited_group_the_room_under_the_limit_counts() -> None:
    group = RunCgroup.create(Limits(memory_bytes=LIMIT), controllers=("memory",))
    try:
        seen = _report(group)
    finally:
        group.kill_all()
        group.remove()
    limit, used = seen["room"]
    assert limit == LIMIT
    assert HELD <= used < LIMIT
    # The share left under the limit, far below what the machine has free.
    # (read a moment apart: a page or two may differ)
    assert seen["ratio"] == pytest.approx((LIMIT - used) / LIMIT, abs=0.01)
    assert seen["ratio"] < 0.4 < seen["machine"]


def test_outside_any_limit_the_machine_s_available_memory_counts() -> None:
    seen = _report(None)
    if seen["room"] is not None:  # this test itself runs under a limit (a container)
        limit, used = seen["room"]
        assert seen["ratio"] == pytest.approx(min(seen["machine"], (limit - used) / limit),
                                              abs=0.01)
    else:
        assert seen["ratio"] == pytest.approx(seen["machine"], abs=0.01)
        assert seen["machine"] > 0
