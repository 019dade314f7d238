"""Run history: the state at any completed step, and forks from one.

Every completed step keeps the checkpoint it produced (as a delta, see
store/deltas.py), so the state after any step can be rebuilt. A fork is a new
run of the same agent whose first checkpoint is the state after step N of the
original, optionally edited: it begins at step N+1, so no step up to N runs
again and no side effect of theirs is repeated. Forks are submitted like any
run (engine/submit.py: run and job in one transaction where they can be).
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from homeo.backends import Backends
from homeo.engine.graph import END, RunState
from homeo.engine.submit import RunNotFound, submit_run
from homeo.store.base import Store
from homeo.store.models import NewRun, Run, Step

EDITABLE = tuple(RunState.model_fields)


class StepNotFound(LookupError):
    """The run has no such step."""


class NotForkable(Exception):
    """The step cannot be forked from: it did not succeed, or nothing follows it."""


class InvalidStateEdit(ValueError):
    """The edits given for a fork do not make a valid run state."""


def step_state(store: Store, tenant_id: str, run_id: str, seq: int) -> tuple[Step, dict | None]:
    """Step `seq` of the run and the checkpoint it produced ({"seq", "next",
    "state"}); None for a step that did not succeed (it produced none).
    Raises RunNotFound, StepNotFound, or CheckpointPruned (retention removed it)."""
    run = store.get_run(tenant_id, run_id)
    if run is None:
        raise RunNotFound(f"no run {run_id!r}")
    step = find_step(store, run, seq)
    if step.status != "succeeded":
        return step, None
    checkpoint = store.checkpoint_at(tenant_id, run_id, seq)
    return step, checkpoint


def find_step(store: Store, run: Run, seq: int) -> Step:
    steps = store.list_steps(run.tenant_id, run.id, after_seq=seq - 1)
    if steps and steps[0].seq == seq:
        return steps[0]
    if run.forked_from_step is not None and seq <= run.forked_from_step:
        raise StepNotFound(
            f"run {run.id} has no step {seq}: it was forked from run {run.forked_from_run}"
            f" after step {run.forked_from_step} and begins at step {run.forked_from_step + 1};"
            f" ask run {run.forked_from_run} for step {seq}")
    done = store.list_steps(run.tenant_id, run.id)
    have = (f"its steps are {done[0].seq} to {done[-1].seq}" if done
            else "it has no steps yet")
    raise StepNotFound(f"run {run.id} has no step {seq}; {have}")


def fork_run(
    backends: Backends,
    tenant_id: str,
    run_id: str,
    from_step: int,
    *,
    edits: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
    request_id: str | None = None,
    max_attempts: int = 3,
) -> tuple[Run, bool]:
    """Start a new run from the state after step `from_step` of run `run_id`,
    with `edits` applied (each field given replaces the state's; `data` keys are
    merged into its data). Returns the new run and whether it was created (an
    idempotency key used before returns that run)."""
    store = backends.store
    run = store.get_run(tenant_id, run_id)
    if run is None:
        raise RunNotFound(f"no run {run_id!r}")
    step = find_step(store, run, from_step)
    if step.status != "succeeded":
        why = f" ({step.error})" if step.error else ""
        earlier = (f" fork from step {from_step - 1} or earlier instead, or"
                   if from_step > (run.forked_from_step or -1) + 1 else "")
        raise NotForkable(
            f"step {from_step} of run {run_id} is {step.status}{why}: only a step that"
            f" succeeded left a state to start from;{earlier} start a new run")
    checkpoint = store.checkpoint_at(tenant_id, run_id, from_step)  # CheckpointPruned
    if checkpoint is None:  # the step was retried and failed since we read it
        raise NotForkable(f"step {from_step} of run {run_id} has no checkpoint to start from")
    if checkpoint["next"] == END:
        raise NotForkable(
            f"step {from_step} was the last of run {run_id}: its state leads to the end, so a"
            f" fork from it would run nothing; fork from step {from_step - 1} or earlier")
    state = edited(checkpoint["state"], edits or {})
    return submit_run(
        backends,
        NewRun(
            tenant_id=tenant_id,
            agent=run.agent,
            input=run.input,
            idempotency_key=idempotency_key,
            request_id=request_id,
            checkpoint={"seq": from_step + 1, "next": checkpoint["next"], "state": state},
            forked_from_run=run_id,
            forked_from_step=from_step,
            user_id=run.user_id,  # a fork works for the same person
        ),
        max_attempts=max_attempts,
    )


def edited(state: dict[str, Any], edits: dict[str, Any]) -> dict[str, Any]:
    """`state` with `edits` applied, checked as a RunState."""
    unknown = sorted(set(edits) - set(EDITABLE))
    if unknown:
        raise InvalidStateEdit(
            f"state has no field {unknown[0]!r}; a fork may edit {', '.join(EDITABLE)}")
    if "data" in edits and not isinstance(edits["data"], dict):
        raise InvalidStateEdit("state.data must be an object: its keys replace the state's")
    merged = {**state, **edits}
    if "data" in edits:
        merged["data"] = {**state.get("data", {}), **edits["data"]}
    try:
        return RunState.model_validate(merged).model_dump()
    except ValidationError as error:
        problem = error.errors()[0]
        where = ".".join(str(part) for part in problem["loc"])
        raise InvalidStateEdit(f"state.{where}: {problem['msg']}") from None
