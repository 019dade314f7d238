from __future__ import annotations

from homeo.sandbox.cgroups import RunCgroup, available
from homeo.sandbox.limits import Limits


def test_a_run_group_carries_the_limits_and_is_removed() -> None:
    assert all(why == "" for why in available().values()), available()
    group = RunCgroup.create(Limits(memory_bytes="64M", pids=17, cpu=0.5))
    try:
        memory, pids, cpu = (group.groups[c] for c in ("memory", "pids", "cpu"))
        assert int((memory / "memory.limit_in_bytes").read_text()) == 64 * 2**20
        swap = memory / "memory.memsw.limit_in_bytes"
        if swap.exists():
            assert int(swap.read_text()) == 64 * 2**20
        assert (pids / "pids.max").read_text().strip() == "17"
        assert (cpu / "cpu.cfs_quota_us").read_text().strip() == "50000"
        assert group.pids() == [] and not group.oom_killed()
    finally:
        group.remove()
    assert not any(path.exists() for path in (memory, pids, cpu))
