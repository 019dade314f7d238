"""How much memory this process may still use, as a share: the machine's
available memory (/proc/meminfo), and, when the process is in a cgroup with a
memory limit (a container, a systemd unit with MemoryMax=, a Kubernetes pod),
the room left under that limit. In a container /proc/meminfo shows the
host's memory, so the limit is the figure that says when the kernel will
start killing.

Under a limit, what counts as used is the working set (usage less inactive
file cache, which the kernel reclaims before it kills), as the kubelet counts
it. Every ancestor group's limit applies; the tightest wins. Both cgroup v1
(`memory` controller) and v2 are read. Linux only; None elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
# cgroup v1 reports "no limit" as a page-rounded 2**63 - 1.
_UNLIMITED = 2**62


def process_rss_bytes() -> int | None:
    """This process's resident memory (Linux /proc; None elsewhere)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def machine_available_ratio() -> float | None:
    """MemAvailable / MemTotal of the machine."""
    try:
        with open("/proc/meminfo") as meminfo:
            fields = dict(line.split(":", 1) for line in meminfo)
        total = int(fields["MemTotal"].split()[0])
        return int(fields["MemAvailable"].split()[0]) / total if total else None
    except (OSError, ValueError, KeyError):
        return None


def cgroup_room() -> tuple[int, int] | None:
    """(limit, working set) in bytes of the tightest memory limit over this
    process's cgroup and its ancestors; None when no group limits memory."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    v1 = v2 = None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            v1 = path
        elif controllers == "":
            v2 = path
    if v1 is not None and (CGROUP_ROOT / "memory").is_dir():
        return _tightest(CGROUP_ROOT / "memory", v1, "memory.limit_in_bytes",
                         "memory.usage_in_bytes", "total_inactive_file")
    if v2 is not None and (CGROUP_ROOT / "cgroup.controllers").exists():
        return _tightest(CGROUP_ROOT, v2, "memory.max", "memory.current", "inactive_file")
    return None


def _tightest(mount: Path, path: str, limit_file: str, usage_file: str,
              inactive_key: str) -> tuple[int, int] | None:
    best: tuple[int, int] | None = None
    group = mount / path.lstrip("/")
    while True:
        room = _room(group, limit_file, usage_file, inactive_key)
        if room is not None and (best is None or _share(room) < _share(best)):
            best = room
        if group == mount or mount not in group.parents:
            return best
        group = group.parent


def _room(group: Path, limit_file: str, usage_file: str, inactive_key: str
          ) -> tuple[int, int] | None:
    try:
        raw = (group / limit_file).read_text().strip()
        if raw == "max" or int(raw) >= _UNLIMITED:
            return None
        limit = int(raw)
        usage = int((group / usage_file).read_text())
        stat = dict(line.split() for line in (group / "memory.stat").read_text().splitlines())
    except (OSError, ValueError):
        return None
    inactive = int(stat.get(inactive_key, 0))
    return limit, max(usage - inactive, 0)


def _share(room: tuple[int, int]) -> float:
    limit, used = room
    return (limit - used) / limit if limit else 0.0


def available_ratio() -> float | None:
    """The smaller of the machine's available share and the room left under
    the tightest cgroup limit (None when neither can be read)."""
    return ratio_with(cgroup_room())


def ratio_with(room: tuple[int, int] | None) -> float | None:
    """`available_ratio` for a cgroup room already read (`cgroup_room()`)."""
    shares = [share for share in (machine_available_ratio(),
                                  None if room is None else _share(room))
              if share is not None]
    return max(min(shares), 0.0) if shares else None
