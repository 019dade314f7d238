"""Disk faults for `homeo chaos run` (registered in scenarios.py).

disk-full: the data directory is a small filesystem of its own (a tmpfs of
DISK_BYTES the harness mounts) that already holds a few days of history:
HISTORY_RUNS finished runs, written through the store before the workers
start, whose per-step checkpoints homeo's 7-day retention still keeps. The
steady workload's agent reads a report (a tool whose result is REPORT_BYTES
of text) before it answers, so every run writes its steps there too. At the
fault a file that is not homeo's (another program's logs) takes the disk
down to DISK_LEFT_BYTES free. The free-disk floor (HOMEO_MIN_FREE_DISK,
DISK_FLOOR_BYTES, the same in both modes) keeps room for the runs already
accepted by refusing new ones (HTTP 507) once the room is gone: without the
loop, the steady runs are refused from then on. The loop sees the disk under
its threshold (`disk_pressure`) and prunes the checkpoints of runs finished
over a day ago (HOMEO_CHECKPOINT_RETENTION_UNDER_PRESSURE's default), and
the database gives the pages back to the filesystem.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import TYPE_CHECKING, Any

from homeo.llm.base import Message, ToolSpec
from homeo.llm.providers.scripted import tool_call
from homeo.store.models import NewRun
from homeo.tools.registry import tool

if TYPE_CHECKING:
    from homeo.autonomic.chaos.harness import System, Tuning
    from homeo.backends import Backends

DISK_BYTES = 128 * 2**20
REPORT_BYTES = 64 * 2**10
# What the fault leaves free: under the loop's threshold, above the floor.
DISK_LEFT_BYTES = 4 * 2**20
DISK_FLOOR_BYTES = 2 * 2**20
DISK_THRESHOLD_BYTES = 16 * 2**20
FILLER = "not-homeo.log"
# The history: runs finished 1.5 to 6.5 days ago, each of HISTORY_CALLS tool
# calls whose HISTORY_RESULT_BYTES results its conversation keeps.
HISTORY_RUNS = 200
HISTORY_CALLS = 3
HISTORY_RESULT_BYTES = 16 * 2**10
DAY = 86400.0

WORKLOAD_YAML = """\
name: chaos
description: Reads a report (a tool with a large result), then answers (the disk-full workload).
model: scripted:homeo.autonomic.chaos.disk_faults:report_model
tools: [homeo.autonomic.chaos.disk_faults:read_report]
max_steps: 2
timeouts: {step: 60, run: 120}
"""


@tool(idempotent=True)
def read_report() -> str:
    """Today's report: REPORT_BYTES of text."""
    line = "the quarterly figures, region by region, are in line with the plan\n"
    return (line * (REPORT_BYTES // len(line) + 1))[:REPORT_BYTES]


def report_model(messages: list[Message], tools: list[ToolSpec]) -> Message | str:
    """Reads the report, then answers in one word."""
    if not any(message.role == "tool" for message in messages):
        return tool_call("read_report")
    return "read"


def seed_history(backends: Backends) -> None:
    """Write HISTORY_RUNS finished runs through the store, as days of work
    would have left them: each step's output and checkpoint, the run
    succeeded 1.5 to 6.5 days ago (the harness's clock, time.time())."""
    from homeo.autonomic.chaos.harness import AGENT, TENANT

    store = backends.store
    result = read_report()[:HISTORY_RESULT_BYTES]
    now = time.time()
    for index in range(HISTORY_RUNS):
        at = now - DAY * (1.5 + 5.0 * index / HISTORY_RUNS)
        run, _ = store.create_run(NewRun(tenant_id=TENANT, agent=AGENT,
                                         input=f"report {index}"), now=at)
        claimed = store.claim_run(TENANT, run.id, now=at)
        assert claimed is not None
        messages: list[dict[str, Any]] = [{"role": "user", "content": run.input}]
        for seq in range(HISTORY_CALLS):
            store.begin_step(TENANT, run.id, seq, "tool", "read_report", {}, now=at)
            messages = [*messages, {"role": "tool", "content": result}]
            store.complete_step(TENANT, run.id, seq, result,
                                {"seq": seq + 1, "next": "model", "state": {
                                    "messages": messages}}, now=at)
        store.transition_run(TENANT, run.id, "succeeded", allowed_from={"running"},
                             output="read", now=at)


def fill(system: System) -> None:
    """Take the data directory's disk down to DISK_LEFT_BYTES free with a file
    that is not homeo's, beside the data directory on the same filesystem."""
    disk = os.statvfs(system.data_dir)
    size = disk.f_bavail * disk.f_frsize - DISK_LEFT_BYTES
    if size <= 0:
        return
    with (system.data_dir.parent / FILLER).open("wb") as filler:
        os.posix_fallocate(filler.fileno(), 0, size)


def disk_tuning(tuning: Tuning) -> Tuning:
    return dataclasses.replace(
        tuning, data_disk_bytes=DISK_BYTES, min_free_disk_bytes=DISK_FLOOR_BYTES,
        disk_pressure_bytes=DISK_THRESHOLD_BYTES)
