"""Memory faults for `homeo chaos run` (registered in scenarios.py).

memory-leak: the workers run in a memory cgroup of their own (as in a
container with a memory limit; the harness makes it, root only), each under
`homeo worker --processes 1`. Once they are up, the harness sets the group's
limit to what they use then plus a headroom sized so the leak below fills it
before the fault ends. From the fault on, the steady workload's runs use an
agent whose tool keeps what it loads in a cache it never empties (LEAK_BYTES
a call, as a library that caches every table it parsed would): each worker
process grows with every run it serves. Without the loop, the kernel's OOM
killer ends the biggest worker when the group is full; its runs wait out
their leases, and its supervisor starts another that grows again. With it,
the workers' heartbeats show how much each grew since it started, and under
a tight limit the loop asks a grown worker's supervisor to recycle it
(`worker_bloated` -> `recycle_worker`): SIGTERM, its steps in flight finish,
its runs go back to the queue, and a fresh process takes its place; one
worker at a time, so the other keeps serving.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING

from homeo.llm.base import Message, ToolSpec
from homeo.llm.providers.scripted import tool_call
from homeo.tools.registry import tool

if TYPE_CHECKING:
    from homeo.autonomic.chaos.harness import System, Tuning

LEAKY_AGENT = "chaos-leaky"
LEAKY_YAML = """\
name: chaos-leaky
description: Loads a table through a tool that caches every table for good (the memory-leak fault).
model: scripted:homeo.autonomic.chaos.memory_faults:table_model
tools: [homeo.autonomic.chaos.memory_faults:load_table]
max_steps: 2
timeouts: {step: 60, run: 120}
"""
LEAK_BYTES = 6 * 2**20
LOAD_SECONDS = 1.0
# The leak fills the headroom after this share of the fault, without the loop.
FILLS_AT = 0.7
# A worker that grew this much since it started is recycled while memory is tight.
GROWTH_BYTES = 32 * 2**20
# A killed worker's runs wait this long for their leases (both modes).
LEAK_LEASE_SECONDS = 10.0

# Every table loaded in this process, never evicted: the leak.
_CACHE: list[bytes] = []


@tool(idempotent=True)
async def load_table() -> str:
    """Load today's table (and keep it, like a cache that never lets go); it
    takes LOAD_SECONDS, so a worker holds runs when it runs out of memory."""
    table = b"\x01" * LEAK_BYTES  # written, so resident
    _CACHE.append(table)
    await asyncio.sleep(LOAD_SECONDS)
    return f"loaded a table of {len(table)} bytes"


def table_model(messages: list[Message], tools: list[ToolSpec]) -> Message | str:
    """Loads the table, then answers in one word."""
    if not any(message.role == "tool" for message in messages):
        return tool_call("load_table")
    return "loaded"


def leak(system: System) -> None:
    """From now on the steady runs are the leaky agent's."""
    system.agent = LEAKY_AGENT


def leak_tuning(tuning: Tuning) -> Tuning:
    headroom = int(FILLS_AT * tuning.rate * tuning.fault_seconds * LEAK_BYTES)
    return dataclasses.replace(tuning, memory_headroom_bytes=headroom,
                               worker_growth_bytes=GROWTH_BYTES,
                               lease_seconds=LEAK_LEASE_SECONDS)
