"""Sandbox faults for `homeo chaos run` (registered in scenarios.py).

sandbox-hang: from the fault on, beside the steady workload, a run every
HANG_EVERY_SECONDS of an agent whose sandboxed shell command never ends
(`sleep`, as a tool stuck on a lock or a dead socket would). The sandbox's
wall-clock limit (HOMEO_SANDBOX_TIMEOUT, HANG_TIMEOUT_SECONDS here) ends each
one and its run goes on, but until then it holds a worker slot while using
no CPU, so the steady runs queue behind the hung ones. Each worker counts
its sandbox timeouts in its heartbeat; the loop sees them while jobs wait
and every slot is busy (`sandbox_hanging`) and gives the workers more
slots. The hung runs are accepted work too and must end.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import TYPE_CHECKING

from homeo.engine.submit import submit_run
from homeo.llm.base import Message, ToolSpec
from homeo.llm.providers.scripted import tool_call
from homeo.store.models import NewRun

if TYPE_CHECKING:
    from homeo.autonomic.chaos.harness import System, Tuning

HANG_AGENT = "chaos-hang"
HANG_YAML = """\
name: chaos-hang
description: Runs a shell command in the sandbox that never ends (the sandbox-hang fault).
model: scripted:homeo.autonomic.chaos.sandbox_faults:hang_model
tools: [homeo.tools.builtin:shell]
max_steps: 2
timeouts: {step: 60, run: 600}
"""
HANG_EVERY_SECONDS = 0.6
HANG_TIMEOUT_SECONDS = 5.0
# Enough slots that one step of the loop's (half of them) makes room, and a
# settle window long enough for the queue behind the hung runs to drain.
HANG_SLOTS = 4
HANG_SETTLE_SECONDS = 15.0


def hang_model(messages: list[Message], tools: list[ToolSpec]) -> Message | str:
    """Calls the shell tool with a command that never ends, then answers."""
    if not any(message.role == "tool" for message in messages):
        return tool_call("shell", command="sleep 3600")
    return "the sandbox ended the command"


def hang(system: System) -> None:
    """Submit a hanging run every HANG_EVERY_SECONDS until the workload's end,
    from a thread (the workload goes on meanwhile)."""
    from homeo.autonomic.chaos.harness import TENANT

    ends = time.monotonic() + system.tuning.fault_seconds

    def submit() -> None:
        while time.monotonic() < ends:
            run, _ = submit_run(system.backends, NewRun(tenant_id=TENANT, agent=HANG_AGENT,
                                                        input="hang"))
            system.others.append((TENANT, run.id))
            time.sleep(HANG_EVERY_SECONDS)

    threading.Thread(target=submit, name="chaos-hang", daemon=True).start()


def hang_tuning(tuning: Tuning) -> Tuning:
    return dataclasses.replace(tuning, slots=HANG_SLOTS, settle_seconds=HANG_SETTLE_SECONDS,
                               sandbox_timeout_seconds=HANG_TIMEOUT_SECONDS)
