"""Runs that wait: for a person's approval, a person's answer, or child runs.

A node ends its step by waiting (its `Outcome.wait`): the runner completes the
step and moves the run to `waiting` in one transaction (`Store.suspend_run`),
and the worker lets the run go. A waiting run holds no job, no lease and no
worker slot; it is only a row, and survives restarts for as long as it waits.

It wakes when what it waits for arrives:

- a decision (`answer`: approve, reject, or a person's input) is written into
  the run's state, and the run is queued again with a new job, in one
  transaction where store and queue share a database;
- its child runs have all ended (`wake_parent`, called when a child ends);
- the wait's deadline passes (`Waits.sweep`, run by every worker's sweeper):
  an approval is then rejected or the run failed, as the agent says.

Each wake is a new job for the same run (`engine.submit.run_job_key`). The node
that waited runs again as a new step and finds the decision in the state (or
the children ended) instead of waiting. Correctness never rests on the wake-up
arriving once: answering is a compare-and-set on the wait's id, a second answer
is refused, and the sweeper wakes any parent whose children all ended.
"""

from __future__ import annotations

from typing import Any

from homeo.backends import Backends
from homeo.db.dialect import clock
from homeo.engine.graph import Wait, WaitKind
from homeo.engine.submit import enqueue_run
from homeo.store.models import FINAL_STATUSES, Run

class WaitError(Exception):
    """The run does not wait for this (anymore); the message says what it is doing."""


class RunNotWaiting(WaitError):
    """The run is not waiting, or waits for something else."""


def describe(wait: Wait) -> str:
    if wait.kind == "approval" and "node" in wait.detail:  # a graph's approval node
        return f"approval at {wait.detail['node']!r}: {wait.detail.get('question')!r}"
    if wait.kind == "approval" and "safety" in wait.detail:
        return f"approval of the result of {wait.detail.get('tool')!r}, held by the safety guards"
    if wait.kind == "approval":
        return f"approval of a call to {wait.detail.get('tool')!r}"
    if wait.kind == "input":
        return f"an answer to {wait.detail.get('question')!r}"
    return f"{len(wait.runs)} child run(s) to end"


def answer(
    backends: Backends,
    run: Run,
    kind: WaitKind,
    decision: dict[str, Any],
    *,
    max_attempts: int = 3,
    now: float | None = None,
) -> Run:
    """Record a person's `decision` for the `kind` wait of `run` and queue the run
    again. RunNotWaiting when the run waits for something else or nothing."""
    wait = _waiting_for(run)
    if wait is None or wait.kind != kind:
        doing = f"waits for {describe(wait)}" if wait else f"is {run.status}"
        raise RunNotWaiting(f"run {run.id} {doing}, not for {_kind_text(kind)}")
    checkpoint = dict(run.checkpoint or {})
    state = dict(checkpoint.get("state") or {})
    state["decisions"] = {**state.get("decisions", {}), wait.id: decision}
    checkpoint["state"] = state
    resumed = _resume(backends, run, wait.id, checkpoint, max_attempts, now)
    if resumed is None:
        raise RunNotWaiting(f"run {run.id} was answered, cancelled or ended meanwhile;"
                            " fetch it to see its status")
    return resumed


def wake_parent(backends: Backends, child: Run, *, max_attempts: int = 3) -> Run | None:
    """If `child` was the last of its parent's awaited children to end, queue the
    parent again. Returns the woken parent, or None."""
    if child.parent_run_id is None:
        return None
    parent = backends.store.get_run(child.tenant_id, child.parent_run_id)
    if parent is None:
        return None
    return _wake_if_children_ended(backends, parent, max_attempts)


class Waits:
    """What the sweeper does for waiting runs: reject or fail those past their
    deadline, wake those whose children all ended (a wake-up lost to a crash)."""

    def __init__(self, backends: Backends, *, batch: int = 200, max_attempts: int = 3) -> None:
        self.backends = backends
        self.batch = batch
        self.max_attempts = max_attempts
        self.after_id = ""

    def sweep(self, *, now: float | None = None) -> list[str]:
        now = clock(now)
        runs = self.backends.store.waiting_runs(after_id=self.after_id, limit=self.batch)
        self.after_id = runs[-1].id if len(runs) == self.batch else ""
        acted = []
        for run in runs:
            wait = _waiting_for(run)
            if wait is None:
                continue
            if wait.deadline is not None and now >= wait.deadline:
                if self._expire(run, wait, now):
                    acted.append(run.id)
            elif wait.kind == "children" and _wake_if_children_ended(
                    self.backends, run, self.max_attempts) is not None:
                acted.append(run.id)
        return acted

    def _expire(self, run: Run, wait: Wait, now: float) -> bool:
        if wait.on_timeout == "fail" or wait.kind == "children":
            failed = self.backends.store.transition_run(
                run.tenant_id, run.id, "failed", allowed_from={"waiting"},
                error=f"nobody answered in time: the run waited for {describe(wait)}"
                      " past its deadline", now=now)
            if failed is not None:
                wake_parent(self.backends, failed, max_attempts=self.max_attempts)
            return failed is not None
        decision = {"approved": False, "comment": "no decision before the deadline",
                    "expired": True}
        try:
            answer(self.backends, run, wait.kind, decision, max_attempts=self.max_attempts,
                   now=now)
        except RunNotWaiting:
            return False
        return True


def _waiting_for(run: Run) -> Wait | None:
    if run.status != "waiting" or not run.waiting_for:
        return None
    return Wait.model_validate(run.waiting_for)


def _wake_if_children_ended(backends: Backends, parent: Run, max_attempts: int) -> Run | None:
    wait = _waiting_for(parent)
    if wait is None or wait.kind != "children":
        return None
    children = {run.id: run for run in backends.store.child_runs(parent.tenant_id, parent.id)}
    if any(children.get(run_id) is not None and children[run_id].status not in FINAL_STATUSES
           for run_id in wait.runs):
        return None
    return _resume(backends, parent, wait.id, None, max_attempts, None)


def _resume(
    backends: Backends, run: Run, wait_id: str, checkpoint: dict[str, Any] | None,
    max_attempts: int, now: float | None,
) -> Run | None:
    """Queue the run again with a new job: one transaction where store and queue
    share a database; otherwise the run first (the sweeper queues a queued run
    left without its job)."""
    with backends.atomic():
        resumed = backends.store.resume_run(run.tenant_id, run.id, wait_id=wait_id,
                                            checkpoint=checkpoint, now=now)
        if resumed is not None:
            enqueue_run(backends, resumed, max_attempts=max_attempts)
    return resumed


def _kind_text(kind: WaitKind) -> str:
    return {"approval": "an approval", "input": "an answer",
            "children": "child runs"}[kind]
