"""The run loop: begin step, run node, checkpoint, repeat.

The order is what makes runs durable:

1. `begin_step` records the step (its input) before any side effect.
2. The node runs.
3. `complete_step` stores the output and the new state in one transaction.

If the process dies during 2, the step is left `running`. On resume the same
step is begun again and the store reports `attempts > 1`: the engine re-runs
it only when the node says that is safe (model calls, idempotent tools) and
otherwise fails the run rather than risk doing a side effect twice. A step
that completed is never run again, because resuming starts from the
checkpoint written in 3.

A worker runs several runs (and, under `homeo serve`, the HTTP API) on one
event loop, and a write waiting on the database must not stall the others or
their lease heartbeats: a store write runs on the loop only when it would not
wait for a lock (SQLite, uncontended: a thread hop costs more than the write),
else in a thread (`store.base.write_async`). Reads run inline when the store
says they never wait (`Store.inline_reads`).

Every write carries the run's fencing token (`fence`, from the worker's claim
of the run): once another worker has claimed the run, the store refuses this
one's writes with LeaseFenced, so a worker whose lease lapsed cannot finish a
step or the run behind the new owner's back.

A step may end by waiting (`Outcome.wait`): the step is completed and the run
moved to `waiting` in one transaction (`Store.suspend_run`), and execution stops
with RunSuspended; the run resumes from that checkpoint when it is woken
(engine/waits.py). Time spent waiting does not count in `timeouts.run`.

When the worker stops the step in flight (the run was cancelled, or the grace
period of a shutdown ran out), the step is closed as `cancelled` or `failed`
with the reason, and the run stops with RunCancelled or RunInterrupted.

Steps whose work does not depend on each other (a model turn's calls to
idempotent tools; engine/graph.py `FanOut`) run at once: each is begun, then
their work runs together, then each is completed in order with its own
checkpoint. A crash between two completions leaves the later steps `running`;
the resumed run begins them again (they are idempotent) and never repeats the
completed ones.

Each step is a span, `step {kind} {name}`, a child of the worker's run span;
the node's model and tool calls open their spans inside it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from opentelemetry.trace import Tracer

from homeo.engine.budgets import TenantBudgets
from homeo.engine.errors import (
    RetryableError,
    RunCancelled,
    RunFailed,
    RunInterrupted,
    RunSuspended,
)
from homeo.engine.graph import END, FanOut, Graph, Node, RunContext, RunState
from homeo.llm.base import Message
from homeo.observe import tracing
from homeo.safety.scrub import scrub
from homeo.safety.vault import VAULT, unmask
from homeo.store.base import Store, write_async
from homeo.store.models import Run

if TYPE_CHECKING:
    from homeo.safety.screen import Screening

# RunState.data: the answer as it passed the output rules (engine/react.py
# screens its model's answer on its step; the runner screens any other).
SCREENED = "screened_output"

Emit = Callable[[dict[str, Any]], None]


def initial_checkpoint(run: Run, system_prompt: str) -> dict[str, Any]:
    messages = [Message(role="system", content=system_prompt)] if system_prompt else []
    messages.append(Message(role="user", content=run.input))
    return {"seq": 0, "next": None, "state": RunState(messages=messages).model_dump()}


async def execute(
    store: Store,
    run: Run,
    graph: Graph,
    *,
    system_prompt: str = "",
    step_timeout: float = 300.0,
    run_timeout: float = 3600.0,
    max_total_steps: int = 200,
    emit: Emit | None = None,
    stopping: Callable[[], bool] = lambda: False,
    clock: Callable[[], float] = time.time,
    budgets: TenantBudgets | None = None,
    tracer: Tracer | None = None,
    fence: int | None = None,
    interruption: Callable[[], BaseException | None] = lambda: None,
    context: RunContext | None = None,
) -> str:
    """Run (or resume) `run` to its end; return the final output.

    Raises RunFailed, RetryableError, RunCancelled, RunSuspended (the run waits)
    or RunInterrupted (when `stopping()` turns true between steps); the worker
    maps those to the run's status and the job's fate. `interruption()` says why
    the worker cancelled the step in flight, when it did. `context` is what the
    nodes receive (by default one made from the run and the arguments here);
    `tracer` opens the step spans (default: the global provider's, a no-op
    unless one is installed)."""
    notify = emit or (lambda event: None)
    checkpoint = run.checkpoint or initial_checkpoint(run, system_prompt)
    state = RunState.model_validate(checkpoint["state"])
    seq: int = checkpoint["seq"]
    current: str = checkpoint["next"] or graph.start
    # Waiting does not count: the clock runs from the start, less every wait.
    started = (run.started_at or clock()) + run.waited_seconds
    tracer = tracer or tracing.tracer_of()
    if context is None:
        context = RunContext(tenant_id=run.tenant_id, run_id=run.id, agent=run.agent,
                             request_id=run.request_id, parent_run_id=run.parent_run_id,
                             fence=fence, emit=notify, budgets=budgets, tracer=tracer)

    if run.checkpoint is None and context.safety is not None and context.safety.watches("input"):
        state = await screen_input(state, run, context)

    while current != END:
        # Let the loop run others between steps (other runs, heartbeats, the API):
        # a step whose node and writes never wait would otherwise not yield.
        await asyncio.sleep(0)
        if stopping():
            raise RunInterrupted(f"run {run.id} paused at step {seq}: the worker is stopping")
        if store.inline_reads:
            status = store.run_status(run.tenant_id, run.id)
        else:
            status = await asyncio.to_thread(store.run_status, run.tenant_id, run.id)
        if status is None or status == "cancelled":
            raise RunCancelled(f"run {run.id} was cancelled")
        if seq >= max_total_steps:
            raise RunFailed(f"the run took {seq} steps, the most one run may take")
        if clock() - started > run_timeout:
            raise RunFailed(f"the run exceeded its {run_timeout:g}s timeout (timeouts.run)")
        node = graph.node(current)
        # A tool result the guards send for approval makes its step wait: one at a time.
        together = node.fan_out(state) if isinstance(node, FanOut) and not (
            context.safety is not None and context.safety.one_at_a_time) else 1
        if together > 1:
            state, current, seq = await _run_together(
                store, run, node, state, seq, together, context=context, notify=notify,
                tracer=tracer, fence=fence, clock=clock, step_timeout=step_timeout,
                interruption=interruption)
            continue
        name = node.step_name(state)
        with tracing.span(
            tracer,
            f"step {node.kind} {name}",
            attributes={"homeo.step.seq": seq, "homeo.step.kind": node.kind,
                        "homeo.step.name": name},
        ) as span:
            step = await write_async(
                store, store.begin_step, run.tenant_id, run.id, seq, node.kind, name,
                node.describe(state), fence=fence,
            )
            span.set_attribute("homeo.step.attempt", step.attempts)
            notify({"type": "step_started", "seq": seq, "kind": node.kind, "name": name,
                    "attempt": step.attempts})
            if step.attempts > 1 and not node.is_idempotent(state):
                error = (
                    f"step {seq} ({node.kind} {name!r}) did not finish in an earlier attempt"
                    f" (its worker stopped or it timed out), and {name!r} is not marked"
                    " idempotent, so homeo will not run it again; check whether its side"
                    " effect happened, then start a new run"
                )
                await write_async(store, store.fail_step, run.tenant_id, run.id, seq, error,
                                  fence=fence)
                notify({"type": "step_failed", "seq": seq, "name": name, "error": error})
                span.set_attribute("homeo.step.status", "failed")
                raise RunFailed(error)
            began = clock()
            try:
                # A deadline on this task, not a task per step (wait_for makes one).
                async with asyncio.timeout(step_timeout):
                    outcome = await node.run(state, context)
            except BaseException as error:
                raised = await _close_failed(store, run, [(seq, name)], error, span=span,
                                             interruption=interruption, notify=notify,
                                             step_timeout=step_timeout, fence=fence)
                if raised is None:
                    raise
                raise raised from None
            state, current, seq = outcome.state, outcome.next, seq + 1
            if outcome.usage.total_tokens:
                # The run's usage rides in its state, so budgets survive a resume.
                state = state.model_copy(update={"usage": state.usage + outcome.usage})
            previous, checkpoint = checkpoint, {"seq": seq, "next": current,
                                                "state": state.model_dump()}
            usage = {"input_tokens": outcome.usage.input_tokens,
                     "output_tokens": outcome.usage.output_tokens,
                     "cost_usd": outcome.usage.cost_usd}
            wait, waiting = outcome.wait, False
            if wait is not None:
                # False: what it would wait for has arrived already, so it goes on.
                waiting = await write_async(
                    store, store.suspend_run, run.tenant_id, run.id, seq - 1, outcome.output,
                    checkpoint, wait.model_dump(), **usage, fence=fence, previous=previous)
            else:
                await write_async(
                    store, store.complete_step, run.tenant_id, run.id, seq - 1, outcome.output,
                    checkpoint, **usage, fence=fence,
                    previous=previous,  # the step keeps its delta from this one
                )
            notify({"type": "step_succeeded", "seq": seq - 1, "kind": node.kind, "name": name,
                    "output": outcome.output, "seconds": clock() - began,
                    "tenant_id": run.tenant_id, "model": outcome.model,
                    "usage": outcome.usage.model_dump()})
            span.set_attributes({"homeo.step.status": "succeeded",
                                 "homeo.step.input_tokens": outcome.usage.input_tokens,
                                 "homeo.step.output_tokens": outcome.usage.output_tokens})
            if wait is not None and waiting:
                notify({"type": "waiting", "seq": seq - 1, "name": name,
                        "tenant_id": run.tenant_id, "waiting_for": wait.model_dump()})
                raise RunSuspended(wait)
    # Placeholders of values a reversible rule masked go back to their owner,
    # and the output rules read every answer as it leaves, whatever the
    # pattern (the tool-calling loop's model node screens its own first).
    output = unmask(state.output or "", state.data.get(VAULT, {}))
    if output and output != state.data.get(SCREENED):
        screening = await screen_output(output, context)
        if screening is not None:
            output = screening.text
    return output


async def screen_output(text: str, context: RunContext) -> Screening | None:
    """The safety policy's output rules on a run's answer before it leaves:
    RunFailed when they block it; otherwise the screening (its text redacted
    where a rule says), or None when the policy has no output rules."""
    if context.safety is None or not context.safety.watches("output"):
        return None
    from homeo.safety.guards import GuardUnavailable

    try:
        screening = await context.safety.check("output", text)
    except GuardUnavailable as error:
        raise RunFailed(f"the safety policy needs a guard that cannot run: {error}") from None
    if screening.action is None:
        return screening
    context.emit({"type": "safety", "tenant_id": context.tenant_id, "run_id": context.run_id,
                  "screening": screening.to_json()})
    if screening.action == "block":
        raise RunFailed(f"the run's answer was blocked by the safety policy: {screening.reason}")
    return screening


async def screen_input(state: RunState, run: Run, context: RunContext) -> RunState:
    """The guards' input rules on a new run's input: block fails the run before
    its first step, redact masks the user message the model reads, and what
    was flagged is kept in the state (`data["safety"]`) and emitted."""
    from homeo.safety.guards import GuardUnavailable

    assert context.safety is not None
    try:
        screening = await context.safety.check("input", run.input, state.data.get(VAULT))
    except GuardUnavailable as error:
        raise RunFailed(f"the safety policy needs a guard that cannot run: {error}") from None
    if screening.action is None:
        return state
    record = screening.to_json()
    context.emit({"type": "safety", "tenant_id": run.tenant_id, "run_id": run.id, "seq": None,
                  "screening": record})
    if screening.action == "block":
        raise RunFailed(f"the run's input was blocked by the safety policy: {screening.reason}")
    messages = [message.model_copy(update={"content": screening.text})
                if message.role == "user" and message.content == run.input else message
                for message in state.messages]
    data = {**state.data, "safety": [*state.data.get("safety", []), record]}
    if screening.vault is not None:
        data[VAULT] = screening.vault
    return state.model_copy(update={"messages": messages, "data": data})


async def _run_together(
    store: Store, run: Run, node: Node, state: RunState, seq: int, count: int, *,
    context: RunContext, notify: Emit, tracer: Tracer, fence: int | None,
    clock: Callable[[], float], step_timeout: float,
    interruption: Callable[[], BaseException | None],
) -> tuple[RunState, str, int]:
    """Steps seq .. seq+count-1 of a FanOut node: begun one by one, their work run
    at once (within one step timeout), completed in order. Returns the state,
    next node and seq after the last."""
    assert isinstance(node, FanOut)
    pieces = [node.piece(state, index) for index in range(count)]
    names = [node.step_name(piece) for piece in pieces]
    with tracing.span(
        tracer,
        f"steps {node.kind} {', '.join(names)}",
        attributes={"homeo.step.seq": seq, "homeo.step.count": count,
                    "homeo.step.kind": node.kind},
    ) as span:
        for index, piece in enumerate(pieces):
            step = await write_async(
                store, store.begin_step, run.tenant_id, run.id, seq + index, node.kind, names[index],
                node.describe(piece), fence=fence)
            notify({"type": "step_started", "seq": seq + index, "kind": node.kind,
                    "name": names[index], "attempt": step.attempts})
        began = clock()
        open_steps = list(zip(range(seq, seq + count), names, strict=True))
        try:
            done = await asyncio.wait_for(
                asyncio.gather(*(node.work(state, index, context) for index in range(count))),
                timeout=step_timeout)
            current = node.name
            checkpoint = {"seq": seq, "next": current, "state": state.model_dump()}
            for index in range(count):
                outcome = node.settle(state, done[index])
                state, current = outcome.state, outcome.next
                previous, checkpoint = checkpoint, {"seq": seq + index + 1, "next": current,
                                                    "state": state.model_dump()}
                await write_async(store, store.complete_step, run.tenant_id, run.id,
                                  seq + index, outcome.output, checkpoint, fence=fence,
                                  previous=previous)
                open_steps.pop(0)
                notify({"type": "step_succeeded", "seq": seq + index, "kind": node.kind,
                        "name": names[index], "output": outcome.output,
                        "seconds": clock() - began, "tenant_id": run.tenant_id, "model": "",
                        "usage": outcome.usage.model_dump()})
        except BaseException as error:
            raised = await _close_failed(store, run, open_steps, error, span=span,
                                         interruption=interruption, notify=notify,
                                         step_timeout=step_timeout, fence=fence)
            if raised is None:
                raise
            raise raised from None
        span.set_attribute("homeo.step.status", "succeeded")
    return state, current, seq + count


async def _close_failed(
    store: Store, run: Run, steps: list[tuple[int, str]], error: BaseException, *, span: Any,
    interruption: Callable[[], BaseException | None], notify: Emit, step_timeout: float,
    fence: int | None,
) -> BaseException | None:
    """Close `steps` (seq, name), left in flight by `error`, as failed or cancelled.
    Returns what to raise instead of `error`, or None to raise it as it is."""
    status, replaced = "failed", None
    if isinstance(error, asyncio.CancelledError):
        reason = interruption()
        if not isinstance(reason, (RunCancelled, RunInterrupted)):
            return None  # the lease was lost (touch nothing), or the process is ending
        status = "cancelled" if isinstance(reason, RunCancelled) else "failed"
        replaced = reason
    elif not isinstance(error, Exception):
        return None  # the process is ending: the steps stay running, as after a crash
    for seq, name in steps:
        if isinstance(error, asyncio.CancelledError):
            message, told = f"stopped in flight: {replaced}", str(replaced)
        elif isinstance(error, TimeoutError):
            message = f"step {seq} ({name}) timed out after {step_timeout:g}s (timeouts.step)"
            told = message
            replaced = replaced or RetryableError(message)
        else:  # RunFailed, RetryableError, or a bug
            # A provider's or a driver's error may quote a key or a password.
            message = scrub(str(error) if isinstance(error, (RunFailed, RetryableError)) else (
                f"{type(error).__name__}: {error}"))
            told = message
        await write_async(store, store.fail_step, run.tenant_id, run.id, seq, message,
                          status=status, fence=fence)
        notify({"type": f"step_{status}", "seq": seq, "name": name, "error": told})
    span.set_attribute("homeo.step.status", status)
    return replaced
