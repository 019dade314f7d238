"""`homeo chaos run SCENARIO`: inject one fault into a homeo of the harness's
own, with the autonomic loop off, on, or both, and compare (autonomic/chaos)."""

from __future__ import annotations

import json
import os
import sys
from enum import Enum
from typing import Annotated

import typer

from homeo.cli_common import CONTEXT, console, fail

chaos_app = typer.Typer(help="Inject faults into a homeo of its own and measure how it heals.",
                        context_settings=CONTEXT, no_args_is_help=True)


class LoopMode(str, Enum):
    on = "on"
    off = "off"
    both = "both"


@chaos_app.command("run")
def run(
    scenario: Annotated[str, typer.Argument(
        help="provider-500, provider-timeout, worker-kill, provider-slow, tenant-flood,"
             " poison-job, sandbox-hang, disk-full or memory-leak.")],
    loop: Annotated[LoopMode, typer.Option(
        "--loop", help="Run with the autonomic loop on, off, or off then on (both).")
    ] = LoopMode.both,
    runs: Annotated[int, typer.Option(
        "--runs", min=10, max=1000, help="The most runs the workload submits per mode.")] = 120,
    rate: Annotated[float, typer.Option(
        "--rate", min=0.2, max=50.0, help="Runs submitted a second.")] = 3.0,
    warmup: Annotated[float, typer.Option(
        "--warmup", min=1.0, max=600.0, help="Seconds of workload before the fault.")] = 6.0,
    fault: Annotated[float, typer.Option(
        "--fault", min=5.0, max=600.0, help="Seconds of workload with the fault on.")] = 24.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Start fault servers, worker processes and a steady workload on a
    temporary data directory (all on 127.0.0.1), inject SCENARIO's fault
    after the warm-up, and print success rate, time from fault to SLO
    restored, runs lost and actions taken for each loop mode."""
    from homeo.autonomic.chaos.harness import ChaosError, Tuning, run_scenario
    from homeo.autonomic.chaos.measure import table
    from homeo.autonomic.chaos.scenarios import SCENARIOS

    chosen = SCENARIOS.get(scenario)
    if chosen is None:
        fail(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}", code=2)
    loops = {"on": [True], "off": [False], "both": [False, True]}[loop.value]
    tuning = Tuning(warmup_seconds=warmup, fault_seconds=fault, rate=rate, max_runs=runs)
    # The workers start from this environment, less the caller's homeo settings.
    base_env = {name: value for name, value in os.environ.items()
                if not name.startswith("HOMEO_")}
    say = (lambda line: print(line, file=sys.stderr)) if as_json else console.print
    try:
        results = run_scenario(
            chosen, loops, tuning,
            homeo_command=[sys.executable, "-c", "from homeo.cli import main; main()"],
            base_env=base_env, progress=lambda line: say(f"homeo chaos: {line}"))
    except ChaosError as error:
        fail(str(error))
    if as_json:
        print(json.dumps({"scenario": chosen.name, "fault": chosen.fault,
                          "heals_by": chosen.heals_by,
                          "results": [result.as_json() for result in results]}))
    else:
        console.print(f"{chosen.name}: {chosen.fault}; the loop is expected to"
                      f" {chosen.heals_by}.", markup=False)
        console.print(table(chosen.name, results), markup=False, soft_wrap=True)
    lost = sum(result.lost for result in results)
    if lost:
        fail(f"{lost} accepted runs never ended", code=1)
