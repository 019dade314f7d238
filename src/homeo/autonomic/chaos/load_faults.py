"""Load faults for `homeo chaos run` (registered in scenarios.py).

tenant-flood: at the fault, a second tenant (`flood`) submits FLOOD_RUNS runs
of the same agent at once, far more than the workers run in the rest of the
scenario, while the steady tenant's workload goes on. The queue's fairness
already alternates the two tenants' jobs; the loop sees one tenant holding
most of a deep queue (`tenant_flooding`) and sheds it at the API or pauses
its claims. The flood's runs are accepted work too: none may be lost, though
a paused tenant's runs may still be waiting in line when the scenario ends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from homeo.engine.submit import submit_run
from homeo.store.models import NewRun

if TYPE_CHECKING:
    from homeo.autonomic.chaos.harness import System

FLOOD_TENANT = "flood"
FLOOD_RUNS = 240


def flood(system: System) -> None:
    from homeo.autonomic.chaos.harness import AGENT, TENANT

    store = system.backends.store
    steady = store.get_agent(TENANT, AGENT)
    assert steady is not None  # the workers published it before the workload began
    store.put_agent(FLOOD_TENANT, AGENT, steady.spec, author="chaos")
    for n in range(FLOOD_RUNS):
        run, _ = submit_run(system.backends, NewRun(tenant_id=FLOOD_TENANT, agent=AGENT,
                                                    input=f"flood {n}"))
        system.others.append((FLOOD_TENANT, run.id))
