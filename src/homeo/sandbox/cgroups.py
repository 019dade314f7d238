"""A cgroup per sandboxed run: memory, pids and CPU limits, and a way to kill
every process of the run at once.

This speaks cgroup v1 (the `memory`, `pids` and `cpu` controllers mounted
under /sys/fs/cgroup/<controller>, as on hybrid hosts). Each run's group is
created below the group homeo itself is in, so it never escapes homeo's own
limits. When the v2 hierarchy is mounted too (/sys/fs/cgroup/unified on a
hybrid host), the run also joins a v2 group there, so that `cgroup.kill` can
end the whole tree in one write.
"""

from __future__ import annotations

import contextlib

import os
import secrets
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from homeo.sandbox.limits import Limits

ROOT = Path("/sys/fs/cgroup")
CONTROLLERS = ("memory", "pids", "cpu")
CPU_PERIOD_US = 100_000


def _own_paths(root: Path = ROOT) -> dict[str, str]:
    """controller -> this process's group path, from /proc/self/cgroup."""
    paths: dict[str, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, names, path = line.split(":", 2)
        for name in names.split(",") if names else ["unified"]:
            paths[name] = path
    return paths


def _base(controller: str, own: dict[str, str], root: Path = ROOT) -> Path | None:
    """Where this process's group for `controller` is, if it is a writable v1 group."""
    mount = root / controller
    marker = {"memory": "memory.limit_in_bytes", "pids": "cgroup.procs",
              "cpu": "cpu.cfs_quota_us"}[controller]
    if controller not in own or not (mount / marker).exists():
        return None
    base = mount / own[controller].lstrip("/")
    if not base.is_dir() or not os.access(base, os.W_OK):
        return None
    return base


def available() -> dict[str, str]:
    """controller -> "" when usable here, else why not. Probes by making a group."""
    own = _own_paths()
    status: dict[str, str] = {}
    for controller in CONTROLLERS:
        base = _base(controller, own)
        if base is None:
            status[controller] = f"no writable cgroup v1 {controller} controller under {ROOT}"
            continue
        probe = base / f"homeo-probe-{secrets.token_hex(4)}"
        try:
            probe.mkdir()
            probe.rmdir()
            status[controller] = ""
        except OSError as error:
            status[controller] = f"cannot create a group in {base}: {error.strerror}"
    return status


@dataclass
class RunCgroup:
    """The groups of one run: `create`, `add` its processes, then `kill_all`
    and `remove`."""

    groups: dict[str, Path] = field(default_factory=dict)
    unified: Path | None = None

    @classmethod
    def create(cls, limits: Limits, controllers: tuple[str, ...] = CONTROLLERS) -> RunCgroup:
        own = _own_paths()
        name = f"homeo-sandbox-{os.getpid()}-{secrets.token_hex(4)}"
        run = cls()
        try:
            for controller in controllers:
                base = _base(controller, own)
                if base is None:
                    raise OSError(f"cgroup {controller} controller is not available")
                group = base / name
                group.mkdir()
                run.groups[controller] = group
            run._set_limits(limits)
            unified = ROOT / "unified"
            if (unified / "cgroup.procs").exists() and "unified" in own:
                group = unified / own["unified"].lstrip("/") / name
                try:
                    group.mkdir()
                    run.unified = group if (group / "cgroup.kill").exists() else None
                    if run.unified is None:
                        group.rmdir()
                except OSError:
                    run.unified = None
        except BaseException:
            run.remove()
            raise
        return run

    def _set_limits(self, limits: Limits) -> None:
        if memory := self.groups.get("memory"):
            (memory / "memory.limit_in_bytes").write_text(str(limits.memory_bytes))
            swap = memory / "memory.memsw.limit_in_bytes"
            if swap.exists():  # memory + swap: the run cannot spill to swap
                swap.write_text(str(limits.memory_bytes))
            (memory / "memory.swappiness").write_text("0")
        if pids := self.groups.get("pids"):
            (pids / "pids.max").write_text(str(limits.pids))
        if cpu := self.groups.get("cpu"):
            (cpu / "cpu.cfs_period_us").write_text(str(CPU_PERIOD_US))
            (cpu / "cpu.cfs_quota_us").write_text(str(max(1000, int(limits.cpu * CPU_PERIOD_US))))

    def add(self, pid: int) -> None:
        """Move process `pid` into every group of the run (its children follow)."""
        for group in [*self.groups.values(), *([self.unified] if self.unified else [])]:
            (group / "cgroup.procs").write_text(str(pid))

    def oom_killed(self) -> bool:
        """Whether the kernel's OOM killer ended a process of this run."""
        return self.oom_kills() > 0

    def oom_kills(self) -> int:
        """How many processes of this group the kernel's OOM killer ended."""
        memory = self.groups.get("memory")
        if memory is None:
            return 0
        try:
            for line in (memory / "memory.oom_control").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except OSError:
            return 0
        return 0

    def pids(self) -> list[int]:
        group = self.groups.get("pids") or self.groups.get("memory") or self.unified
        if group is None:
            return []
        try:
            return [int(p) for p in (group / "cgroup.procs").read_text().split()]
        except OSError:
            return []

    def kill_all(self, wait_seconds: float = 2.0) -> bool:
        """SIGKILL every process in the run; True once none is left."""
        if self.unified is not None:
            # v2 kills the whole tree at once; if that write fails, the loop below does it.
            with contextlib.suppress(OSError):
                (self.unified / "cgroup.kill").write_text("1")
        deadline = time.monotonic() + wait_seconds
        while True:
            left = self.pids()
            if not left:
                return True
            if time.monotonic() > deadline:
                return False
            for pid in left:  # v1 has no cgroup.kill: kill one by one until none is left
                with contextlib.suppress(ProcessLookupError):  # it exited meanwhile
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.002)

    def remove(self) -> None:
        for group in [*self.groups.values(), *([self.unified] if self.unified else [])]:
            for _ in range(100):  # a killed process leaves its group a moment later
                try:
                    group.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.005)
        self.groups.clear()
        self.unified = None
