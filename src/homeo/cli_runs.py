"""`homeo runs`: list, show, cancel, answer and follow runs, straight from the store.

No server is needed: like `homeo keys`, these open the database the settings
name. `--json` prints what the HTTP API returns for the same question
(GET /v1/runs, GET /v1/runs/{id}, GET /v1/runs/{id}/steps/{seq},
POST /v1/runs/{id}/cancel|approve|reject|input|fork; `events` prints the SSE
stream's events as JSON lines). `homeo prune` removes old runs' per-step
checkpoints (engine/prune.py)."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer
from rich.console import Console

from homeo.cli_common import (
    CONTEXT,
    DataDir,
    DatabaseUrl,
    Tenant,
    console,
    fail,
    tenant_runtime,
)
from homeo.cli_show import outcome_lines, run_lines, run_table, step_line
from homeo.store.models import Run, RunStatus, Step

runs_app = typer.Typer(help="List, show, cancel and follow runs (no server needed).",
                       no_args_is_help=True, context_settings=CONTEXT)

RunId = Annotated[str, typer.Argument(help="The run's id, as `homeo runs list` shows it.")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON, as the HTTP API returns it.")]


def _out() -> Console:
    return Console(soft_wrap=True, highlight=False)


def _print_json(value: object) -> None:
    print(json.dumps(value, default=str, ensure_ascii=False))


@runs_app.command("list")
def runs_list(
    status: Annotated[RunStatus | None, typer.Option(help="Only runs in this status.")] = None,
    agent: Annotated[str | None, typer.Option(help="Only runs of this agent.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="At most this many runs.")] = 20,
    before: Annotated[str | None, typer.Option(
        help="Page on: runs older than this run id (a --json page's next_before).")] = None,
    tenant: Tenant = None,
    as_json: Json = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """List a tenant's runs, newest first."""
    with tenant_runtime(tenant, data_dir, database_url) as (settings, runtime):
        runs = runtime.backends.store.list_runs(settings.default_tenant, status=status,
                                                agent=agent, limit=limit, before=before)
    if as_json:
        from homeo.api.schemas import RunPage, RunView

        next_before = runs[-1].id if len(runs) == limit else None
        page = RunPage(runs=[RunView.of(run) for run in runs], next_before=next_before)
        _print_json(page.model_dump(mode="json"))
        return
    if not runs:
        console.print(f"homeo: no runs for tenant {settings.default_tenant!r} match", markup=False)
        return
    out = _out()
    for row in run_table(runs):
        out.print(row, markup=False)


def _load(runtime, tenant_id: str, run_id: str) -> tuple[Run, list[Step]]:  # noqa: ANN001
    store = runtime.backends.store
    run = store.get_run(tenant_id, run_id)
    if run is None:
        fail(f"no run {run_id!r} for tenant {tenant_id!r}; `homeo runs list` shows them")
    return run, store.list_steps(tenant_id, run_id)


@runs_app.command("show")
def runs_show(
    run_id: RunId,
    step: Annotated[int | None, typer.Option(
        min=0, help="Show this step and the run's state after it.")] = None,
    tenant: Tenant = None,
    as_json: Json = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Show a run: its status, input, output or error, token usage and steps."""
    if step is not None:
        _show_step(run_id, step, tenant, as_json, data_dir, database_url)
        return
    with tenant_runtime(tenant, data_dir, database_url) as (settings, runtime):
        run, steps = _load(runtime, settings.default_tenant, run_id)
    if as_json:
        from homeo.api.schemas import RunDetail, RunView, StepView

        detail = RunDetail(**RunView.of(run).model_dump(), steps=[StepView.of(s) for s in steps])
        _print_json(detail.model_dump(mode="json"))
        return
    out = _out()
    for line in run_lines(run, steps):
        out.print(line, markup=False)


def _show_step(run_id: str, seq: int, tenant: str | None, as_json: bool, data_dir,  # noqa: ANN001
               database_url: str | None) -> None:
    from homeo.api.schemas import StepStateView, StepView
    from homeo.engine.history import StepNotFound, step_state
    from homeo.engine.submit import RunNotFound
    from homeo.store.base import CheckpointPruned

    with tenant_runtime(tenant, data_dir, database_url) as (settings, runtime):
        try:
            step, checkpoint = step_state(runtime.backends.store, settings.default_tenant,
                                          run_id, seq)
        except RunNotFound:
            fail(f"no run {run_id!r} for tenant {settings.default_tenant!r};"
                 " `homeo runs list` shows them")
        except (StepNotFound, CheckpointPruned) as error:
            fail(str(error))
    if as_json:
        view = StepStateView(run_id=run_id, step=StepView.of(step),
                             next=None if checkpoint is None else checkpoint["next"],
                             state=None if checkpoint is None else checkpoint["state"])
        _print_json(view.model_dump(mode="json"))
        return
    out = _out()
    out.print(step_line(step), markup=False)
    if checkpoint is None:
        out.print(f"state: none (step {seq} {step.status}, so it left no checkpoint)",
                  markup=False)
        return
    out.print(f"next: {checkpoint['next']}", markup=False)
    out.print("state:", markup=False)
    out.print(json.dumps(checkpoint["state"], indent=2, ensure_ascii=False), markup=False)


@runs_app.command("fork")
def runs_fork(
    run_id: RunId,
    from_step: Annotated[int, typer.Option(
        min=0, help="Start from the state after this step (it must have succeeded).")],
    state: Annotated[str | None, typer.Option(
        help='Edits to that state as a JSON object, e.g. \'{"data": {"city": "Oslo"}}\'.')
    ] = None,
    idempotency_key: Annotated[str | None, typer.Option(
        help="Repeat with the same key to get the same run back.")] = None,
    tenant: Tenant = None,
    as_json: Json = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Start a new run from the state after a step of RUN; the steps up to it are
    not run again. A worker (`homeo worker` or `homeo serve`) runs it."""
    from homeo.engine.history import InvalidStateEdit, NotForkable, StepNotFound, fork_run
    from homeo.engine.submit import RunNotFound, SubmitFailed, UnknownAgent
    from homeo.store.base import CheckpointPruned

    edits = None
    if state is not None:
        try:
            edits = json.loads(state)
        except json.JSONDecodeError as error:
            fail(f"--state is not JSON ({error}); give an object such as"
                 ' \'{"data": {"key": "value"}}\'', code=2)
        if not isinstance(edits, dict):
            fail("--state must be a JSON object of state fields to replace", code=2)
    with tenant_runtime(tenant, data_dir, database_url) as (settings, runtime):
        try:
            run, created = fork_run(runtime.backends, settings.default_tenant, run_id,
                                    from_step, edits=edits, idempotency_key=idempotency_key,
                                    max_attempts=settings.max_attempts)
        except RunNotFound:
            fail(f"no run {run_id!r} for tenant {settings.default_tenant!r};"
                 " `homeo runs list` shows them")
        except (StepNotFound, NotForkable, CheckpointPruned, UnknownAgent, SubmitFailed) as error:
            fail(str(error))
        except InvalidStateEdit as error:
            fail(f"--state: {error}", code=2)
    if as_json:
        from homeo.api.schemas import RunView

        _print_json(RunView.of(run).model_dump(mode="json"))
        return
    said = "forked" if created else "already forked with this idempotency key as"
    console.print(f"homeo: {said} run {run.id} from step {from_step} of run {run_id}; it"
                  f" begins at step {from_step + 1} (`homeo runs events {run.id}` follows it)",
                  markup=False)


def prune(
    older_than: Annotated[str | None, typer.Option(
        help="Prune runs finished longer ago than this, e.g. 7d, 12h"
             " [HOMEO_CHECKPOINT_RETENTION].")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Only count what would be removed.")] = False,
    as_json: Json = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Remove the per-step checkpoints of runs finished long ago (every tenant's).
    Their steps' outputs and final state stay; workers also do this every hour."""
    from homeo.cli_common import opened, settings_or_exit
    from homeo.engine import prune as retention
    from homeo.sandbox.limits import parse_duration

    settings = settings_or_exit(data_dir=data_dir, database_url=database_url)
    given = older_than or settings.checkpoint_retention
    try:
        seconds = parse_duration(given)
    except ValueError as error:
        fail(f"--older-than: {error}", code=2)
    if seconds <= 0:
        fail(f"--older-than must be longer than 0, such as 7d or 12h (got {given!r})", code=2)
    with opened(settings, publish=False) as runtime:
        result = retention.prune(runtime.backends.store, older_than=seconds, dry_run=dry_run)
    if as_json:
        _print_json({**result.model_dump(), "dry_run": dry_run, "older_than_seconds": seconds})
        return
    _out().print(f"{retention.describe(result, dry_run=dry_run)}"
                 f" (finished more than {given} ago)", markup=False)


@runs_app.command("cancel")
def runs_cancel(
    run_id: RunId,
    tenant: Tenant = None,
    as_json: Json = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Cancel a queued, running or waiting run; a running one stops before its next step."""
    from homeo.engine.submit import RunAlreadyFinished, RunNotFound, cancel_run

    with tenant_runtime(tenant, data_dir, database_url) as (settings, runtime):
        try:
            run = cancel_run(runtime.backends, settings.default_tenant, run_id)
        except RunNotFound:
            fail(f"no run {run_id!r} for tenant {settings.default_tenant!r};"
                 " `homeo runs list` shows them")
        except RunAlreadyFinished as error:
            fail(str(error))
    if as_json:
        from homeo.api.schemas import RunView

        _print_json(RunView.of(run).model_dump(mode="json"))
        return
    console.print(f"homeo: run {run.id} is cancelled; if a step is running, the run stops when"
                  " it ends", markup=False)


Comment = Annotated[str, typer.Option(help="Why; the model is told.")]


@runs_app.command("approve")
def runs_approve(
    run_id: RunId,
    comment: Comment = "",
    arguments: Annotated[str | None, typer.Option(
        help='Run the tool with these arguments instead: a JSON object, e.g. \'{"amount": 50}\'.',
    )] = None,
    tenant: Tenant = None,
    as_json: Json = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Approve the tool call a waiting run asks about; the run goes on when a worker runs."""
    edited = None
    if arguments is not None:
        try:
            edited = json.loads(arguments)
        except json.JSONDecodeError as error:
            fail(f"--arguments is not JSON ({error}); give an object such as '{{\"amount\": 50}}'")
        if not isinstance(edited, dict):
            fail("--arguments must be a JSON object of the tool's arguments, such as"
                 " '{\"amount\": 50}'")
    _answer(run_id, "approval", {"approved": True, "comment": comment, "arguments": edited},
            tenant, as_json, data_dir, database_url)


@runs_app.command("reject")
def runs_reject(
    run_id: RunId,
    comment: Comment = "",
    tenant: Tenant = None,
    as_json: Json = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Refuse the tool call a waiting run asks about; the model is told, with the comment."""
    _answer(run_id, "approval", {"approved": False, "comment": comment}, tenant, as_json,
            data_dir, database_url)


@runs_app.command("input")
def runs_input(
    run_id: RunId,
    text: Annotated[str, typer.Argument(help="The answer to the run's question.")],
    tenant: Tenant = None,
    as_json: Json = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Answer the question a waiting run asked; the run goes on when a worker runs."""
    if not text.strip():
        fail("the answer is empty; give the text the run asked for")
    _answer(run_id, "input", {"answer": text}, tenant, as_json, data_dir, database_url)


def _answer(run_id: str, kind: str, decision: dict, tenant: str | None, as_json: bool,
            data_dir: Path | None, database_url: str | None) -> None:
    from homeo.engine.waits import RunNotWaiting, answer

    with tenant_runtime(tenant, data_dir, database_url) as (settings, runtime):
        run = runtime.backends.store.get_run(settings.default_tenant, run_id)
        if run is None:
            fail(f"no run {run_id!r} for tenant {settings.default_tenant!r};"
                 " `homeo runs list --status waiting` shows the waiting ones")
        try:
            run = answer(runtime.backends, run, kind, decision,  # type: ignore[arg-type]
                         max_attempts=settings.max_attempts)
        except RunNotWaiting as error:
            fail(str(error))
    if as_json:
        from homeo.api.schemas import RunView

        _print_json(RunView.of(run).model_dump(mode="json"))
        return
    console.print(f"homeo: run {run.id} is queued again; it goes on when a worker runs"
                  " (`homeo serve` or `homeo worker`)", markup=False)


@runs_app.command("events")
def runs_events(
    run_id: RunId,
    tenant: Tenant = None,
    as_json: Json = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Follow a run: print each step as it starts and ends, until the run ends.

    Exits 0 if the run succeeded, 1 if it failed or was cancelled. With
    --json, one JSON object a line: {"event": "step" | "run" | "end", "data": ...},
    the events of GET /v1/runs/{id}/events."""
    with tenant_runtime(tenant, data_dir, database_url) as (settings, runtime):
        try:
            last = asyncio.run(_follow(runtime.backends.store, settings.default_tenant, run_id,
                                       as_json))
        except KeyboardInterrupt:
            console.print(f"homeo: stopped following run {run_id}; the run itself goes on",
                          markup=False)
            raise typer.Exit(130) from None
    raise typer.Exit(0 if last.status == "succeeded" else 1)


async def _follow(store, tenant_id: str, run_id: str, as_json: bool) -> Run:  # noqa: ANN001
    from homeo.api.schemas import RunView, StepView
    from homeo.engine.follow import follow_run
    from homeo.engine.submit import RunNotFound

    out = _out()
    try:
        async for item in follow_run(store, tenant_id, run_id):
            if isinstance(item, Step):
                if as_json:
                    data = StepView.of(item).model_dump(mode="json")
                    _print_json({"event": "step", "data": data})
                else:
                    out.print(step_line(item), markup=False)
                continue
            last = item
            if as_json:
                _print_json({"event": "run", "data": RunView.of(item).model_dump(mode="json")})
            elif not item.is_final:
                out.print(f"run {item.id} {item.status}", markup=False)
    except RunNotFound:
        fail(f"no run {run_id!r} for tenant {tenant_id!r}; `homeo runs list` shows them")
    if as_json:
        _print_json({"event": "end", "data": {"id": run_id, "status": last.status}})
    else:
        for line in outcome_lines(last):
            out.print(line, markup=False)
    return last
