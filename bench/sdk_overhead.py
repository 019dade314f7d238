"""The SDK's overhead: `homeo.client.Homeo` against raw httpx on the same calls.

`homeo serve --workers 0` runs as a subprocess (as bench/api_latency.py starts
it: its own data dir, a key from `homeo keys create`); runs stay queued. Each
call is made the same number of times by a raw `httpx.Client` (same base URL,
key and keep-alive; the answer parsed with `.json()`) and by `Homeo` (typed
models, error mapping, the retry check), alternating blocks of each so that a
busy moment of the machine hits both. Printed per call: the median wall time
of one call and the client's CPU per call (process time: the server is
another process), raw beside SDK, and the difference.

    .venv/bin/python bench/sdk_overhead.py
    .venv/bin/python bench/sdk_overhead.py --calls 2000 --blocks 10
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
from _common import machine, table
from api_latency import start_homeo

from homeo.client import Homeo


def timed(call: Callable[[], object], count: int) -> tuple[list[float], float]:
    """Wall seconds of each call, and the CPU seconds of all of them."""
    walls = []
    cpu_before = time.process_time()
    for _ in range(count):
        began = time.perf_counter()
        call()
        walls.append(time.perf_counter() - began)
    return walls, time.process_time() - cpu_before


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=600, help="calls of each kind per client")
    parser.add_argument("--blocks", type=int, default=6, help="alternating blocks per client")
    args = parser.parse_args(argv)
    print(machine())
    with tempfile.TemporaryDirectory() as scratch:
        server, headers = start_homeo(Path(scratch), "sdk", "warning")
        try:
            key = headers["authorization"].removeprefix("Bearer ")
            raw = httpx.Client(base_url=server.base, headers=headers, timeout=30)
            sdk = Homeo(server.base, key)
            run_id = sdk.runs.submit("assistant", "What is homeostasis?").id
            calls: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {
                "GET /v1/runs/{id}": (
                    lambda: raw.get(f"/v1/runs/{run_id}").raise_for_status().json(),
                    lambda: sdk.runs.get(run_id)),
                "GET /v1/runs?limit=20": (
                    lambda: raw.get("/v1/runs", params={"limit": 20}).raise_for_status().json(),
                    lambda: sdk.runs.page(limit=20)),
                "GET /v1/agents": (
                    lambda: raw.get("/v1/agents").raise_for_status().json(),
                    lambda: sdk.agents.list()),
                "POST /v1/runs": (
                    lambda: raw.post("/v1/runs", json={
                        "agent": "assistant", "input": "hi",
                        "idempotency_key": uuid.uuid4().hex}).raise_for_status().json(),
                    lambda: sdk.runs.submit("assistant", "hi")),
            }
            for name, (raw_call, sdk_call) in calls.items():  # warm both up, untimed
                timed(raw_call, 50)
                timed(sdk_call, 50)
            rows = []
            per_block = max(args.calls // args.blocks, 1)
            for name, (raw_call, sdk_call) in calls.items():
                walls: dict[str, list[float]] = {"raw": [], "sdk": []}
                cpu = {"raw": 0.0, "sdk": 0.0}
                for _ in range(args.blocks):
                    for label, call in (("raw", raw_call), ("sdk", sdk_call)):
                        block_walls, block_cpu = timed(call, per_block)
                        walls[label] += block_walls
                        cpu[label] += block_cpu
                count = per_block * args.blocks
                raw_wall = statistics.median(walls["raw"]) * 1e6
                sdk_wall = statistics.median(walls["sdk"]) * 1e6
                raw_cpu = cpu["raw"] / count * 1e6
                sdk_cpu = cpu["sdk"] / count * 1e6
                rows.append([name, count, f"{raw_wall:.0f}", f"{sdk_wall:.0f}",
                             f"{sdk_wall - raw_wall:+.0f}", f"{raw_cpu:.0f}", f"{sdk_cpu:.0f}",
                             f"{sdk_cpu - raw_cpu:+.0f}"])
            raw.close()
            sdk.close()
        finally:
            server.stop()
    print(table(["call", "calls", "raw wall us", "SDK wall us", "diff", "raw CPU us",
                 "SDK CPU us", "diff"], rows))
    print("wall: median of one call (server included); CPU: this process only, per call")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
