"""A batch on Ray: its lines cut into slices, each slice one Ray task that
opens a runtime on the shared database, submits its lines' runs and works the
queue until they end (drive.py).

Ray retries a task whose worker process dies (`max_retries`); the retried task
submits the same idempotency keys, gets the runs the lost one made, and waits
for them: a run left `running` by the dead process is claimed again when its
lease expires and resumes after its last completed step. No run is made twice.

`--ray local` starts a Ray instance on this machine, bound to 127.0.0.1 only.
Ray advertises the host's outside address and listens on every interface by
default; with `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` (set before Ray is
imported, and inherited by the processes it starts) it takes the loopback
address as the node's, and its servers bind to it. `--ray ADDRESS` joins a
running cluster, whose nodes must have homeo installed and reach the database
(PostgreSQL, for nodes on several hosts).
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

from homeo.batch.drive import Row, drive
from homeo.config import Settings
from homeo.engine.batch import BatchLine

Item = TypeVar("Item")
LOCAL = "local"
# Ray reads this once, when it is imported: 0 makes the node's address loopback.
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
# How often Ray runs a task again whose worker process died.
TASK_RETRIES = 3
SLICES_PER_CPU = 4  # small slices: progress moves often, and a lost task redoes little


class RayMissing(Exception):
    """Ray is not installed."""


class RayUnavailable(Exception):
    """Ray did not start, or the cluster at the address could not be joined."""


def connect(address: str) -> Any:  # the ray module
    """Start a loopback-only local Ray instance (`local`) or join the cluster
    at `address`; return the ray module."""
    if address == LOCAL:
        os.environ[LOOPBACK_ENV] = "0"
    try:
        import ray
    except ImportError as error:
        raise RayMissing("Ray is not installed; install homeo's ray extra"
                         " (pip install 'homeo[ray]') or leave out --ray") from error
    try:
        if address == LOCAL:
            from ray._private import ray_constants

            ray_constants.ENABLE_RAY_CLUSTER = False  # in case ray was imported earlier
            ray.init(include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    except Exception as error:
        what = "start Ray" if address == LOCAL else f"join the Ray cluster at {address}"
        raise RayUnavailable(f"could not {what}: {error}") from error
    return ray


def slices(lines: Sequence[Item], cpus: int, size: int | None = None) -> list[list[Item]]:
    size = size or max(1, math.ceil(len(lines) / (max(cpus, 1) * SLICES_PER_CPU)))
    return [list(lines[start:start + size]) for start in range(0, len(lines), size)]


def drive_slice(settings: Settings, agent: str, batch_id: str, lines: list[BatchLine]
                ) -> list[Row]:
    """One Ray task: a runtime of its own, this slice's runs submitted and
    driven to their end."""
    from homeo.runtime import Runtime

    async def main() -> list[Row]:
        runtime = Runtime.open(settings)
        try:
            return await drive(runtime, agent, batch_id, lines)
        finally:
            await runtime.aclose()

    return asyncio.run(main())


def run_on_ray(ray: Any, settings: Settings, agent: str, batch_id: str,
               lines: Sequence[BatchLine], *, slice_size: int | None = None) -> Iterator[Row]:
    """Every line's result row, slice by slice as Ray finishes them."""
    task = ray.remote(drive_slice).options(max_retries=TASK_RETRIES, retry_exceptions=False,
                                           name="homeo_batch_slice")
    cpus = int(ray.cluster_resources().get("CPU", 1))
    pending = [task.remote(settings, agent, batch_id, part)
               for part in slices(lines, cpus, slice_size)]
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        yield from ray.get(done[0])

