"""Job faults for `homeo chaos run` (registered in scenarios.py).

poison-job: among the steady workload, one run of an agent whose tool kills
the worker process running it (as a crash in native code would), each time
it runs: the tool is marked idempotent, so a retry runs it again. The workers
are supervised (`homeo worker --processes 1` each), so a crashed worker comes
back, but the jobs it held, the poison one and the steady runs beside it,
wait for their leases. Without the loop the poison job comes back each time
its lease lapses and takes the next worker down, until its attempts are
spent; the loop ends a dead worker's leases once its heartbeat is stale and,
seeing a job whose workers died holding it (`poison_job`), quarantines it to
dead letter.
"""

from __future__ import annotations

import dataclasses
import os
import signal
from typing import TYPE_CHECKING

from homeo.engine.submit import submit_run
from homeo.llm.base import Message, ToolSpec
from homeo.llm.providers.scripted import tool_call
from homeo.store.models import NewRun
from homeo.tools.registry import tool

if TYPE_CHECKING:
    from homeo.autonomic.chaos.harness import System, Tuning

POISON_AGENT = "chaos-poison"
POISON_YAML = """\
name: chaos-poison
description: Calls a tool that kills the worker process running it (the poison job).
model: scripted:homeo.autonomic.chaos.job_faults:poison_model
tools: [homeo.autonomic.chaos.job_faults:crash_worker]
max_steps: 2
timeouts: {step: 60, run: 600}
"""
# Short enough that, without the loop, the poison job's three attempts play
# out within the scenario; the same in both modes.
POISON_LEASE_SECONDS = 10.0


@tool(idempotent=True)
def crash_worker() -> str:
    """Kill the process this tool runs in, as a crash in native code would."""
    os.kill(os.getpid(), signal.SIGKILL)
    return "not reached"


def poison_model(messages: list[Message], tools: list[ToolSpec]) -> Message | str:
    """Calls crash_worker; answers only if it ever returned."""
    if not any(message.role == "tool" for message in messages):
        return tool_call("crash_worker")
    return "the worker survived"


def poison(system: System) -> None:
    from homeo.autonomic.chaos.harness import TENANT

    run, _ = submit_run(system.backends, NewRun(tenant_id=TENANT, agent=POISON_AGENT,
                                                input="poison"))
    system.others.append((TENANT, run.id))


def poison_tuning(tuning: Tuning) -> Tuning:
    return dataclasses.replace(tuning, lease_seconds=POISON_LEASE_SECONDS)
