"""`homeo batch run AGENT INPUTS.jsonl`: many inputs as runs, results as JSON lines.

Each valid line becomes a run (engine/batch.py); the results file gets one row
per line of the inputs file, invalid lines included (status `invalid`, with
the reason), in the order they end. Without --ray this process's worker pool
executes the runs (batch/drive.py); with --ray, Ray tasks do (batch/on_ray.py).
Running the same command again picks up the runs of the first: finished ones
are reported at once, the others are waited for.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import IO, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from homeo.cli_common import (
    CONTEXT,
    AgentsDir,
    DatabaseUrl,
    DataDir,
    Tenant,
    Workers,
    console,
    fail,
    open_runtime,
    print_json,
    settings_or_exit,
)
from homeo.observe import logs

batch_app = typer.Typer(help="Run many inputs of one agent as runs, here or on Ray.",
                        no_args_is_help=True, context_settings=CONTEXT)

WAITING = 3  # as `homeo run`: some runs wait for a person


@batch_app.command("run")
def batch_run(
    agent: Annotated[str, typer.Argument(help="The agent's name.")],
    inputs: Annotated[Path, typer.Argument(
        help='A JSON lines file: {"input": "...", "id": "...", "user": "..."} a line'
             " (id and user optional).")],
    out: Annotated[Path | None, typer.Option(
        help="Write the results here (JSON lines); stdout without it.")] = None,
    ray: Annotated[str | None, typer.Option(
        "--ray", metavar="ADDRESS|local",
        help="Run on the Ray cluster at ADDRESS, or on a Ray instance started here"
             " (`local`, bound to 127.0.0.1). Needs homeo's ray extra.")] = None,
    batch_id: Annotated[str | None, typer.Option(
        help="Name the batch (default: from the agent and the file's contents); the"
             " same name picks up its runs again.")] = None,
    slice_size: Annotated[int | None, typer.Option(
        min=1, help="With --ray: lines per Ray task.")] = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print a summary as JSON on stdout (needs --out).")] = False,
    tenant: Tenant = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    agents_dir: AgentsDir = None,
    workers: Workers = None,
) -> None:
    """Run AGENT on every line of INPUTS.jsonl, each line a durable run.

    Invalid lines are reported with their number and skipped; the rest run.
    Exit 0 when every line's run succeeded, 1 when a line was invalid or a run
    failed, 3 when runs wait for a person (and none failed)."""
    from homeo.engine.batch import default_batch_id, invalid_row, parse_lines

    if as_json and out is None:
        fail("--json prints a summary on stdout, where the results go without --out;"
             " give --out RESULTS.jsonl", code=2)
    try:
        text = inputs.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        fail(f"cannot read {inputs}: {error}", code=2)
    lines, invalid = parse_lines(text)
    for bad in invalid:
        console.print(f"homeo: {inputs} {bad.message()} (skipped)", markup=False)
    if not lines:
        fail(f"{inputs} has no valid line; a line is a JSON object such as"
             ' {"input": "the task", "id": "a1"}', code=2)
    settings = settings_or_exit(data_dir=data_dir, database_url=database_url,
                                agents_dir=agents_dir, workers=workers, default_tenant=tenant)
    # Ray tasks open the database from other processes, whose folder may differ.
    settings = settings.model_copy(update={"data_dir": settings.data_dir.resolve(),
                                           "agents_dir": settings.agents_dir.resolve()})
    logs.configure("warning", settings.log_json)
    batch = batch_id or default_batch_id(agent, text)
    runtime = open_runtime(settings)
    known = runtime.backends.store.get_agent(settings.default_tenant, agent)
    if known is None:
        names = ", ".join(a.name for a in runtime.backends.store.list_agents(
            settings.default_tenant)) or "none"
        asyncio.run(runtime.aclose())
        fail(f"unknown agent {agent!r}; agents defined: {names}", code=2)
    results = _open_results(out)
    statuses: Counter[str] = Counter()

    def write(row: dict[str, Any]) -> None:
        results.write(json.dumps(row, ensure_ascii=False) + "\n")
        results.flush()
        statuses[row["status"]] += 1

    for bad in invalid:
        write(invalid_row(bad))
    try:
        with _progress(len(lines)) as (progress, bar):
            def on_row(row: dict[str, Any]) -> None:
                write(row)
                progress.advance(bar)

            if ray is None:
                try:
                    asyncio.run(_drive_here(runtime, agent, batch, lines, on_row))
                finally:
                    asyncio.run(runtime.aclose())
            else:
                asyncio.run(runtime.aclose())
                _drive_on_ray(ray, settings, agent, batch, lines, slice_size, on_row)
    finally:
        if out is not None:
            results.close()
    summary = {"batch_id": batch, "lines": len(lines) + len(invalid),
               "statuses": dict(sorted(statuses.items())),
               "results": None if out is None else str(out)}
    told = ", ".join(f"{count} {status}" for status, count in sorted(statuses.items()))
    console.print(f"homeo: batch {batch}: {summary['lines']} lines: {told}"
                  + ("" if out is None else f"; results in {out}"), markup=False)
    if as_json:
        print_json(summary)
    raise typer.Exit(_exit_code(statuses))


def _open_results(out: Path | None) -> IO[str]:
    if out is None:
        import sys

        return sys.stdout
    try:
        return out.open("w", encoding="utf-8")
    except OSError as error:
        fail(f"cannot write --out {out}: {error}", code=2)


class _progress:
    """A progress bar on stderr (drawn only on a terminal)."""

    def __init__(self, total: int) -> None:
        self.progress = Progress(TextColumn("runs"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=console, transient=False)
        self.total = total

    def __enter__(self) -> tuple[Progress, Any]:
        self.progress.start()
        return self.progress, self.progress.add_task("runs", total=self.total)

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()


async def _drive_here(runtime, agent: str, batch: str, lines, on_row) -> None:  # noqa: ANN001
    from homeo.batch.drive import drive

    await drive(runtime, agent, batch, lines, on_row=on_row)


def _drive_on_ray(address: str, settings, agent: str, batch: str, lines,  # noqa: ANN001
                  slice_size: int | None, on_row) -> None:  # noqa: ANN001
    from homeo.batch.on_ray import RayMissing, RayUnavailable, connect, run_on_ray

    try:
        ray = connect(address)
    except RayMissing as error:
        fail(str(error), code=2)
    except RayUnavailable as error:
        fail(str(error))
    try:
        for row in run_on_ray(ray, settings, agent, batch, lines, slice_size=slice_size):
            on_row(row)
    except ray.exceptions.RayError as error:
        fail(f"a Ray task failed beyond its retries ({str(error).strip().splitlines()[0]});"
             " run the same command again: finished runs are kept and picked up")
    finally:
        ray.shutdown()


def _exit_code(statuses: Counter[str]) -> int:
    if any(status not in ("succeeded", "waiting") for status in statuses):
        return 1
    return WAITING if statuses.get("waiting") else 0
