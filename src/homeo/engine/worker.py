"""Workers: claim jobs, run them through the engine, keep their leases alive.

One `Worker` runs `concurrency` slots in one asyncio loop. Each slot claims a
job, claims its run in the store (which raises the run's fencing token), and
watches the run while it executes: it heartbeats the lease, and stops the step
in flight when the run is cancelled or the lease is lost. When the run stops,
the slot settles the run first and the job second, so a crash in between
leaves a leased job that the next claimer settles. The slot marks a job done
with its next claim, in one round trip (`Queue.complete_and_claim`: one
statement and one commit on PostgreSQL), and at once when it stops:

    run succeeded / failed / cancelled  -> job done
    transient error (RetryableError,    -> run back to queued, job retried with backoff;
      the database unreachable)            after `max_attempts` claims in a row that
                                           completed no step, run failed, job dead
    the run waits (approval, input,     -> job done; the run is queued again with a new
      child runs)                          job when what it waits for arrives
    any other error (a bug)             -> run failed at once with the error's type
    lease lost or fenced (another       -> stop at once, touch nothing
      worker owns the run now)
    worker stopping                     -> runs stop between steps; after the grace
                                           period the steps in flight are stopped;
                                           runs go back to the queue (not failed)

A failed claim (the database locked or down) is logged and retried with
backoff; `health()` reports it, so /readyz turns not ready. A sweeper queues
any run left without a job (engine/sweep.py). With a checkpoint retention,
workers also schedule the pruning of old runs' checkpoints (engine/prune.py):
one `prune` job per period, run by whichever worker claims it. `ingest` jobs
index accepted documents (engine/ingest.py). Every
`heartbeat_seconds` the worker writes its row in the store's `workers` table
(slots, slots in use, last seen), so any process sharing the database sees a
worker that died; a worker that stops cleanly removes its row.

Each claim of a run is a `run` span, the child of the span that submitted it
(its traceparent rides in the job's payload), so every attempt of a run,
on whichever worker, lands in the request's trace.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, StatusCode, Tracer

from homeo.audit import AuditLog, canary_event, safety_event
from homeo.autonomic.control import ControlState
from homeo.backends import Backends
from homeo.engine.agents import AgentError
from homeo.engine.budgets import TenantBudgets
from homeo.engine.catalog import AgentCatalog
from homeo.engine import canary, ingest, memory_prune, prune
from homeo.engine.errors import (
    RetryableError,
    RunCancelled,
    RunFailed,
    RunInterrupted,
    RunSuspended,
)
from homeo.engine.graph import RunContext
from homeo.engine.runner import execute
from homeo.engine.subagents import StoreChildRuns
from homeo.engine.submit import RUN_JOB as RUN_JOB
from homeo.engine.sweep import Sweeper
from homeo.engine.waits import Waits, wake_parent
from homeo.llm.base import ModelError
from homeo.observe import logs, memory_room, tracing
from homeo.observe.metrics import Metrics
from homeo.queue.base import Job, RetryPolicy
from homeo.store.base import LeaseFenced, read_async
from homeo.store.models import Run, WorkerRecord
from homeo.safety.screen import SafetyGuards
from homeo.safety.scrub import scrub
from homeo.tools.context import ToolSettings

if TYPE_CHECKING:  # numpy loads only when memory is used
    from homeo.memory.memories import Memories

ACTIVE = frozenset({"queued", "running"})
CLAIM_BACKOFF_MAX_SECONDS = 5.0
# A paused tenant's job goes back in line this far ahead, to be looked at again.
PAUSED_RECHECK_SECONDS = 5.0
# A suspect (a job whose worker died holding it: it may be what killed it)
# runs alone in its process, so that if it kills this one too it takes no
# other job down and is the only one blamed: its slot stops this process's
# claims and waits for the jobs in flight to end, at most SUSPECT_WAIT_SECONDS
# (and half the lease); a second suspect meanwhile goes back in line.
SUSPECT_WAIT_SECONDS = 10.0
SUSPECT_RECHECK_SECONDS = 0.5
Emit = Callable[[dict[str, Any]], None]


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class LeaseLost(Exception):
    """Another worker now holds this job's lease."""


class Interruption:
    """Why the worker stopped a run's step in flight (read by the runner when
    the step's task is cancelled): RunCancelled, RunInterrupted or LeaseLost."""

    def __init__(self) -> None:
        self.reason: BaseException | None = None

    def __call__(self) -> BaseException | None:
        return self.reason


class Worker:
    def __init__(
        self,
        backends: Backends,
        agents: AgentCatalog,
        *,
        concurrency: int = 2,
        lease_seconds: float = 30.0,
        poll_seconds: float = 0.2,
        watch_seconds: float = 1.0,
        shutdown_grace_seconds: float = 10.0,
        sweep_seconds: float = 30.0,
        max_attempts: int = 3,
        retry: RetryPolicy | None = None,
        metrics: Metrics | None = None,
        worker_id: str | None = None,
        emit: Emit | None = None,
        budgets: TenantBudgets | None = None,
        tracer: Tracer | None = None,
        tools: ToolSettings | None = None,
        checkpoint_retention: float | None = None,
        prune_every: float = 3600.0,
        heartbeat_seconds: float = 5.0,
        clock: Callable[[], float] = time.time,
        safety: SafetyGuards | None = None,
        memories: Memories | None = None,
        knowledge: Any = None,
        memory_prune_every: float | None = None,
        control: ControlState | None = None,
        max_concurrency: int | None = None,
        audit: AuditLog | None = None,
        slos: Sequence[Any] = (),
    ) -> None:
        """`tools` are the operator's limits for the built-in tools, handed to
        every run's tools in their context (default: the settings' defaults).
        `safety` holds the guards and the tenants' policies; each run gets its
        agent's resolved policy in its context (None: no guards).
        `memories` is the agent memory (each run of an agent with `memory:` gets
        it scoped; None: those runs' memory tools say it is unavailable), and
        with `memory_prune_every` the worker schedules its pruning job.
        `knowledge` searches collections for agents with `knowledge:`.
        `control` is the shared control state the autonomic loop writes: this
        worker runs as many slots as it says (between 1 and `max_concurrency`,
        default `concurrency`), leaves paused tenants' jobs in line and
        dead-letters quarantined jobs. With `audit`, what the safety guards did
        in a run (block, approve, redact, flag) is also an audit event. `slos`
        (observe/slo) are what its sweep judges champion/challenger canaries
        against, beside the challenger's own record (engine/canary.py)."""
        self.backends = backends
        self.store = backends.store
        self.queue = backends.queue
        self.agents = agents
        self.concurrency = concurrency
        self.max_concurrency = max(max_concurrency or concurrency, concurrency)
        self.control = control
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        # How often a running run's status is read (to stop a cancelled run's step).
        self.watch_seconds = min(watch_seconds, lease_seconds / 3)
        self.shutdown_grace_seconds = shutdown_grace_seconds
        self.sweeper = Sweeper(backends, grace_seconds=sweep_seconds, max_attempts=max_attempts,
                               knowledge=None if knowledge is None else knowledge.store)
        self.waits = Waits(backends, max_attempts=max_attempts)
        self.max_attempts = max_attempts
        self.tools = tools or ToolSettings()
        self.safety = safety
        self.audit = audit
        self.slos = tuple(slos)
        # Finished runs' per-step checkpoints older than this are pruned (None: never).
        self.checkpoint_retention = checkpoint_retention
        self.prune_every = prune_every
        self.retry = retry or RetryPolicy()
        self.metrics = metrics
        self.worker_id = worker_id or new_worker_id()
        self.emit = emit
        self.budgets = budgets
        self.tracer = tracer or tracing.tracer_of()
        self.heartbeat_seconds = heartbeat_seconds
        self.clock = clock
        self.memories = memories
        self.knowledge = knowledge
        self.memory_prune_every = memory_prune_every if memories is not None else None
        self.started_at = 0.0
        self._rss_start = 0  # its resident memory at its first heartbeat
        self.last_poll = 0.0
        self.processed = 0
        self.claim_error: str | None = None
        self._stopping = False
        self._claims = itertools.count(1)
        self._in_flight: dict[asyncio.Task[str], Interruption] = {}
        self._working: set[str] = set()  # the jobs this process is running
        self._alone: str | None = None  # a suspect running alone: no claims meanwhile
        self.log = logs.get_logger("homeo.worker")

    @property
    def alive(self) -> bool:
        """Polled recently: the loop is not stuck or dead."""
        return time.time() - self.last_poll < max(10 * self.poll_seconds, self.lease_seconds)

    def health(self) -> str | None:
        """What keeps this worker from doing work, or None when it is fine."""
        if self.claim_error is not None:
            return f"cannot claim jobs: {self.claim_error}"
        if not self.alive:
            return "stalled: no poll recently"
        return None

    async def serve(self, stop: asyncio.Event) -> None:
        """Run `concurrency` slots and the sweeper until `stop` is set. Then runs
        stop between steps; steps still in flight after the grace period are
        stopped, and their runs go back to the queue."""
        self.log.info("worker started", worker_id=self.worker_id, concurrency=self.concurrency)
        self.last_poll = time.time()
        self.started_at = self.clock()
        await self._beat()
        slots = [asyncio.create_task(self._slot(stop, index))
                 for index in range(self.max_concurrency)]
        sweeping = asyncio.create_task(self._sweep(stop))
        retention, forget_every = self.checkpoint_retention, self.memory_prune_every
        pruning = asyncio.create_task(self._every(
            stop, None if retention is None else self.prune_every, "the prune job",
            lambda: prune.schedule(self.queue, older_than=retention, every=self.prune_every)))
        forgetting = asyncio.create_task(self._every(
            stop, forget_every, "the memory prune job",
            lambda: memory_prune.schedule(self.queue, every=forget_every)))
        beating = asyncio.create_task(self._heartbeats(stop))
        await stop.wait()
        self._stopping = True
        _, pending = await asyncio.wait(slots, timeout=self.shutdown_grace_seconds)
        if pending:
            self.log.info("grace period over; stopping the steps in flight",
                          runs=len(self._in_flight), grace_seconds=self.shutdown_grace_seconds)
            for execution, interruption in list(self._in_flight.items()):
                interruption.reason = RunInterrupted(
                    f"the worker stopped ({self.shutdown_grace_seconds:g}s grace period over)")
                execution.cancel()
        await asyncio.gather(*slots, sweeping, pruning, forgetting, beating,
                             return_exceptions=True)
        try:
            await asyncio.to_thread(self.store.forget_worker, self.worker_id)
        except Exception as error:  # the database is down: its row goes stale instead
            self.log.warning("could not remove the worker's heartbeat row",
                             error=f"{type(error).__name__}: {error}")
        self.log.info("worker stopped", worker_id=self.worker_id, processed=self.processed)

    async def _beat(self) -> None:
        """Write this worker's heartbeat row; a database error is logged, not raised."""
        sandbox = self.tools.sandbox_tally.counts()
        rss = memory_room.process_rss_bytes() or 0
        self._rss_start = self._rss_start or rss
        record = WorkerRecord(id=self.worker_id, host=socket.gethostname(), pid=os.getpid(),
                              slots=self.slots(), in_use=len(self._in_flight),
                              started_at=self.started_at, last_seen=self.clock(),
                              sandbox_runs=sandbox.runs, sandbox_timeouts=sandbox.timeouts,
                              sandbox_ooms=sandbox.ooms, rss_bytes=rss,
                              rss_start_bytes=self._rss_start)
        try:
            await asyncio.to_thread(self.store.beat_worker, record)
        except Exception as error:  # the slots report the database being down
            self.log.warning("heartbeat failed", error=f"{type(error).__name__}: {error}")

    async def _heartbeats(self, stop: asyncio.Event) -> None:
        while not await _wait(stop, self.heartbeat_seconds):
            await self._beat()

    def slots(self) -> int:
        """How many slots claim jobs now: `concurrency`, or what the control
        state says, within 1..max_concurrency."""
        wanted = None if self.control is None else self.control.worker_concurrency()
        if wanted is None:
            return self.concurrency
        return min(max(wanted, 1), self.max_concurrency)

    async def _slot(self, stop: asyncio.Event, index: int = 0) -> None:
        try:
            await self._claim_and_process(stop, done := [], index)
        finally:
            await self._settle(done)

    async def _claim_and_process(self, stop: asyncio.Event, done: list[Job], index: int
                                 ) -> None:
        failures = 0
        while not stop.is_set():
            if index >= self.slots() or self._alone is not None:
                # A slot the control state has turned off, or a suspect runs alone.
                await self._settle(done)
                await _wait(stop, self.poll_seconds)
                continue
            try:
                job = await self.claim(done)
            except Exception as error:  # the database is locked, down or unreachable
                failures += 1
                self.claim_error = f"{type(error).__name__}: {error}"
                delay = min(self.poll_seconds * 2**failures, CLAIM_BACKOFF_MAX_SECONDS)
                self.log.error("claim failed; retrying", error=self.claim_error,
                               failures=failures, retry_in=round(delay, 2))
                await _wait(stop, delay)
                continue
            if failures:
                self.log.info("claiming again", after_failures=failures)
            failures, self.claim_error = 0, None
            if job is None:
                await _wait(stop, self.poll_seconds)  # idle; wakes at once on stop
                continue
            await self.process(job, done)

    async def _sweep(self, stop: asyncio.Event) -> None:
        while not await _wait(stop, self.sweeper.grace_seconds):
            try:
                queued = await asyncio.to_thread(self.sweeper.sweep)
                requeued = await asyncio.to_thread(self.sweeper.sweep_ingestions)
                woken = await asyncio.to_thread(self.waits.sweep)
                judged = await asyncio.to_thread(
                    canary.judge_all, self.store, by=f"worker:{self.worker_id}", now=time.time(),
                    slos=self.slos)
            except Exception as error:  # the database is down: the slots report it
                self.log.warning("sweep failed", error=f"{type(error).__name__}: {error}")
                continue
            if queued:
                self.log.warning("queued runs that had no job", runs=queued)
            if requeued:
                self.log.warning("queued or failed ingestions whose job was lost or ended",
                                 ingestions=requeued)
            if woken:
                self.log.info("woke or ended waiting runs (deadline passed, children ended)",
                              runs=woken)
            for ended in judged:
                self.log.warning(f"canary {ended.status}", agent=ended.agent,
                                 tenant_id=ended.tenant_id, challenger=ended.challenger,
                                 why=ended.evidence.get("why"))
                if self.audit is not None:
                    await asyncio.to_thread(self.audit.record, ended.tenant_id,
                                            canary_event(ended))

    async def _every(
        self, stop: asyncio.Event, every: float | None, what: str, schedule: Callable[[], object]
    ) -> None:
        """Queue a housekeeping job every `every` seconds (each period's job once,
        whichever worker queues it first) until `stop`; None: never."""
        while every is not None:
            try:
                await asyncio.to_thread(schedule)
            except Exception as error:  # the database is down: the slots report it
                self.log.warning(f"scheduling {what} failed",
                                 error=f"{type(error).__name__}: {error}")
            if await _wait(stop, every):
                return

    async def claim(self, done: list[Job] | None = None) -> Job | None:
        """Lease the next due job, first marking done the job in `done` (left by
        `process`) in the same round trip. On error, `done` is kept for the
        next try."""
        self.last_poll = time.time()
        # Every claim gets its own lease owner, so two slots of this process can
        # never act on each other's lease of the same job after an expiry.
        owner = f"{self.worker_id}#{next(self._claims)}"
        if not done:
            return await asyncio.to_thread(self.queue.claim, owner, self.lease_seconds)
        finished = done[-1]
        completed, job = await asyncio.to_thread(
            self.queue.complete_and_claim, finished.id, self._owner(finished), owner,
            self.lease_seconds)
        done.pop()
        if not completed:
            self.log.warning("lease lost before its job was marked done; another worker"
                             " owns it now", job_id=finished.id)
        return job

    async def run_until_idle(self, max_jobs: int = 1_000_000) -> int:
        """Process jobs one at a time until none is due (for `homeo run` and tests)."""
        count, done = 0, []
        try:
            while count < max_jobs and (job := await self.claim(done)) is not None:
                await self.process(job, done)
                count += 1
        finally:
            await self._settle(done)
        return count

    async def process(self, job: Job, done: list[Job] | None = None) -> None:
        """Run the job's run to a stop and settle both. Never raises. With `done`,
        a job to mark done is appended there instead, for the caller's next
        claim to complete (`claim(done)`: one round trip for both)."""
        if job.kind == prune.PRUNE_JOB:
            await self._prune(job)  # housekeeping jobs are marked done at once
            return
        if job.kind == memory_prune.MEMORY_PRUNE_JOB:
            await self._prune_memory(job)
            return
        if self.control is not None and self.control.paused(job.tenant_id):
            # Back in line, the claim's attempt not counted, looked at again later.
            await asyncio.to_thread(self.queue.release, job.id, self._owner(job),
                                    delay=PAUSED_RECHECK_SECONDS)
            return
        suspect = job.lease_expiries > 0
        if suspect:
            if self._alone is not None:  # another suspect has this process
                await asyncio.to_thread(self.queue.release, job.id, self._owner(job),
                                        delay=SUSPECT_RECHECK_SECONDS)
                return
            self._alone = job.id
            await self._others_end(job)
        self._working.add(job.id)
        try:
            await self._run_job(job, done)
        finally:
            self._working.discard(job.id)
            if self._alone == job.id:
                self._alone = None

    async def _others_end(self, job: Job) -> None:
        """Wait, claiming nothing, for the jobs in flight here to end, at most
        SUSPECT_WAIT_SECONDS (and half the lease, which is not extended meanwhile)."""
        if not self._working:
            return
        self.log.info("suspect job waits to run alone", job_id=job.id,
                      lease_expiries=job.lease_expiries, in_flight=len(self._working))
        until = self.clock() + min(SUSPECT_WAIT_SECONDS, self.lease_seconds / 2)
        while self._working and self.clock() < until:
            await asyncio.sleep(min(self.poll_seconds, 0.1))

    async def _run_job(self, job: Job, done: list[Job] | None) -> None:
        if job.kind == ingest.INGEST_JOB:
            await self._ingest(job)
            return
        run_id = str(job.payload.get("run_id", ""))
        logs.bind(run_id=run_id, tenant_id=job.tenant_id, job_id=job.id)
        with tracing.span(
            self.tracer,
            "run",
            context=tracing.context_from_payload(job.payload),
            kind=SpanKind.CONSUMER,
            attributes={"homeo.run_id": run_id, "homeo.tenant_id": job.tenant_id,
                        "homeo.job_id": job.id, "homeo.attempt": job.attempts},
        ) as span:
            try:
                await self._process(job, run_id, span, done)
            except (LeaseLost, LeaseFenced) as lost:
                span.set_attribute("homeo.run.outcome", "lease_lost")
                # Say which guard stopped it: the queue refusing a heartbeat, or
                # the store refusing a late write (the fence).
                self.log.warning("lease lost; another worker owns the run now, stopping",
                                 reason=str(lost) or "the queue refused the lease's heartbeat")
            except Exception as error:  # the store itself is down, or a bug here
                span.record_exception(error)
                span.set_status(StatusCode.ERROR, str(error))
                self.log.exception("job processing crashed", error=str(error))
            finally:
                self.processed += 1
                logs.unbind("run_id", "tenant_id", "job_id")

    async def _process(self, job: Job, run_id: str, span: Span, done: list[Job] | None
                       ) -> None:
        owner = self._owner(job)
        max_stalls = int(job.payload.get("max_attempts", 3))
        run = await asyncio.to_thread(self.store.claim_run, job.tenant_id, run_id)
        if run is None:  # missing, or ended (cancelled) before it started
            if await asyncio.to_thread(self.store.get_run, job.tenant_id, run_id) is None:
                span.set_status(StatusCode.ERROR, f"run {run_id} not found")
                await asyncio.to_thread(
                    self.queue.fail, job.id, owner, f"run {run_id} not found", retry=False)
            else:
                await self._complete(job, done)
            return
        fence = run.lease_epoch
        span.set_attributes({"homeo.agent": run.agent, "homeo.run.claim": fence})
        if run.request_id:
            span.set_attribute("homeo.request_id", run.request_id)
            logs.bind(request_id=run.request_id)
        # A job whose worker died holding it may be the one that killed it:
        # whether the loop quarantined it is read from the store, not the cache.
        quarantined = None if self.control is None else await asyncio.to_thread(
            self.control.quarantined, job.id, fresh=job.lease_expiries > 0)
        if run.stalls >= max_stalls or job.exhausted or quarantined:
            error = (f"quarantined: {quarantined}; last error: {job.last_error}" if quarantined
                     else f"gave up: {run.stalls} attempts in a row ended without completing a"
                     f" step; last error: {job.last_error}" if run.stalls >= max_stalls else
                     f"gave up: its job was claimed {job.attempts - 1} times;"
                     f" last error: {job.last_error}")
            await self._finish(run, "failed", error=error, fence=fence)
            await asyncio.to_thread(self.queue.fail, job.id, owner, error, retry=False)
            return
        self.log.info("run started", agent=run.agent, attempt=job.attempts, claim=fence)
        interruption = Interruption()
        execution = asyncio.create_task(self._execute(run, interruption))
        self._in_flight[execution] = interruption
        watch = asyncio.create_task(self._watch(job, run, execution, interruption))
        try:
            output = await execution
        except RunInterrupted:
            await asyncio.to_thread(self.store.release_run, run.tenant_id, run.id, fence=fence)
            await asyncio.to_thread(self.queue.release, job.id, owner)
            self.log.info("run paused for shutdown; it resumes on the next worker")
            return
        except asyncio.CancelledError:
            if isinstance(interruption.reason, LeaseLost):
                raise LeaseLost() from None
            raise
        except (RunFailed, AgentError) as error:
            await self._finish(run, "failed", error=str(error), fence=fence)
            await self._complete(job, done)
            self.log.info("run failed", error=str(error))
            return
        except RunCancelled:
            span.set_attribute("homeo.run.outcome", "cancelled")
            await self._complete(job, done)
            self.log.info("run cancelled")
            return
        except RunSuspended as suspended:
            span.set_attribute("homeo.run.outcome", "waiting")
            await self._complete(job, done)
            self.log.info("run waiting", waiting_for=str(suspended))
            return
        except LeaseFenced:
            raise
        except Exception as error:
            if isinstance(error, (RetryableError, *self.backends.transient)):
                await self._retry(job, run, error, max_stalls)
            else:  # a bug: retrying would fail the same way, with backoff
                message = f"internal error: {type(error).__name__}: {error}"
                self.log.exception("run crashed on an unexpected error", error=message)
                await self._finish(run, "failed", error=message
                                   + " (not retried; the worker log has the traceback)",
                                   fence=fence)
                await self._complete(job, done)
            return
        finally:
            watch.cancel()
            self._in_flight.pop(execution, None)
        await self._finish(run, "succeeded", output=output, fence=fence)
        await self._complete(job, done)
        self.log.info("run succeeded")

    async def _execute(self, run: Run, interruption: Interruption) -> str:
        try:
            agent = await self.agents.aget(run.tenant_id, run.agent, run.agent_version)
        except ModelError as error:
            raise RunFailed(f"agent {run.agent!r}: {error}") from error
        spec = agent.spec
        memory = None
        if spec.memory is not None and self.memories is not None:
            from homeo.memory.memories import UserRequired, scope_of

            try:
                scope = scope_of(spec.memory.scope, agent=run.agent, run_id=run.id,
                                 user=run.user_id)
            except UserRequired as error:  # the agent became per-user after submission
                raise RunFailed(str(error)) from error
            memory = self.memories.scoped(run.tenant_id, scope, ttl=spec.memory.ttl_seconds,
                                          importance=spec.memory.importance)
        context = RunContext(
            tenant_id=run.tenant_id, run_id=run.id, agent=run.agent, request_id=run.request_id,
            parent_run_id=run.parent_run_id, fence=run.lease_epoch, emit=self._observe,
            budgets=self.budgets, tracer=self.tracer, tools=self.tools,
            children=StoreChildRuns(self.backends, run, max_attempts=self.max_attempts,
                                    run_tokens=spec.budget.run_tokens),
            token_budget=run.token_budget,
            safety=None if self.safety is None else self.safety.screen(run.tenant_id,
                                                                        spec.safety),
            memory=memory, knowledge=self.knowledge,
        )
        return await execute(
            self.store,
            run,
            agent.graph,
            system_prompt=spec.system_prompt,
            step_timeout=spec.timeouts.step,
            run_timeout=spec.timeouts.run,
            emit=self._observe,
            stopping=lambda: self._stopping,
            tracer=self.tracer,
            fence=run.lease_epoch,
            interruption=interruption,
            context=context,
        )

    def _observe(self, event: dict[str, Any]) -> None:
        self.log.debug(event["type"], **{k: v for k, v in event.items() if k != "type"})
        if self.metrics is not None and event["type"] == "step_succeeded":
            self.metrics.step_seconds.labels(event["kind"]).observe(event["seconds"])
            usage = event["usage"]
            if usage["input_tokens"] or usage["output_tokens"] or usage["cost_usd"]:
                self.metrics.count_usage(event["tenant_id"], event["model"], **usage)
        if event["type"] == "safety":
            if self.metrics is not None:
                self.metrics.count_screening(event["tenant_id"], event["screening"])
            if self.audit is not None:
                self._audit_screening(event)
        if self.emit is not None:
            self.emit(event)

    def _audit_screening(self, event: dict[str, Any]) -> None:
        """The guards' action as an audit event (a write the run waits for:
        these are rare, and an event the log could not take is logged)."""
        assert self.audit is not None
        try:
            self.audit.record(event["tenant_id"], safety_event(
                "guards", f"run:{event['run_id']}", event["screening"]))
        except Exception as error:  # the store is down: the run's own writes will say so
            self.log.error("audit_failed", kind="safety", run_id=event["run_id"],
                           error=scrub(str(error)))

    async def _watch(
        self, job: Job, run: Run, execution: asyncio.Task[str], interruption: Interruption
    ) -> None:
        """Heartbeat the lease every third of it, and read the run's status every
        `watch_seconds`: a cancelled run or a lost lease stops the step in flight."""
        loop = asyncio.get_running_loop()
        next_beat = loop.time() + self.lease_seconds / 3
        while not execution.done():
            await asyncio.sleep(self.watch_seconds)
            status = await read_async(self.store, self.store.run_status, run.tenant_id, run.id)
            if status in (None, "cancelled"):
                interruption.reason = RunCancelled(f"run {run.id} was cancelled")
            elif loop.time() >= next_beat:
                next_beat = loop.time() + self.lease_seconds / 3
                held = await asyncio.to_thread(
                    self.queue.heartbeat, job.id, self._owner(job), self.lease_seconds)
                if not held:
                    interruption.reason = LeaseLost()
            if interruption.reason is not None:
                execution.cancel()
                return

    async def _retry(self, job: Job, run: Run, error: Exception, max_stalls: int) -> None:
        """A transient error: back to the queue, unless this was the last of
        `max_stalls` claims in a row that completed no step."""
        message = f"{type(error).__name__}: {error}"
        now = await asyncio.to_thread(self.store.get_run, run.tenant_id, run.id)
        progressed = now is not None and now.steps_done > run.steps_done
        stalls = 0 if progressed else run.stalls + 1
        if stalls >= max_stalls:
            gave_up = (f"gave up: {stalls} attempts in a row ended without completing a step;"
                       f" last error: {message}")
            await self._finish(run, "failed", error=gave_up, fence=run.lease_epoch)
            await asyncio.to_thread(self.queue.fail, job.id, self._owner(job), gave_up,
                                    retry=False)
            return
        delay = self.retry.delay(max(stalls, 1))
        await self._finish(run, "queued", error=message, from_={"running"},
                           fence=run.lease_epoch)
        failed = await asyncio.to_thread(self.queue.fail, job.id, self._owner(job), message,
                                         delay=delay)
        if failed is None:
            raise LeaseLost()
        self.log.info("run will be retried", error=message, at=failed.run_at, stalls=stalls)

    async def _finish(
        self,
        run: Run,
        status: str,
        *,
        output: str | None = None,
        error: str | None = None,
        from_: set[str] | frozenset[str] = ACTIVE,
        fence: int | None = None,
    ) -> None:
        # Runs inside `process`, so the current span is the run's.
        span = trace.get_current_span()
        span.set_attribute("homeo.run.outcome", status)
        if error is not None:
            error = scrub(error)  # kept on the run and shown by the API
            span.set_status(StatusCode.ERROR, error)
        moved = await asyncio.to_thread(
            self.store.transition_run,
            run.tenant_id,
            run.id,
            status,
            allowed_from=from_,
            output=output,
            error=error,
            fence=fence,
        )
        if moved is not None and moved.is_final and self.metrics is not None:
            self.metrics.runs_finished.labels(run.tenant_id, run.agent, status).inc()
        if moved is not None and moved.parent_run_id and moved.is_final:
            # The parent may wait for this run; if the process dies first, the
            # sweeper wakes the parent instead.
            await asyncio.to_thread(wake_parent, self.backends, moved,
                                    max_attempts=self.max_attempts)

    async def _prune(self, job: Job) -> None:
        async def work() -> dict[str, int]:
            result = await asyncio.to_thread(
                prune.prune, self.store, older_than=float(job.payload["older_than"]))
            return {"runs": result.runs, "checkpoints": result.checkpoints,
                    "bytes": result.bytes}

        await self._chore(job, "pruning checkpoints", work)

    async def _prune_memory(self, job: Job) -> None:
        async def work() -> dict[str, int]:
            if self.memories is None:
                raise RuntimeError("this worker has no agent memory to prune")
            result = await self.memories.prune(now=self.clock())
            return {"expired": result.expired, "decayed": result.decayed,
                    "superseded": result.superseded}

        await self._chore(job, "pruning agent memory", work)

    async def _ingest(self, job: Job) -> None:
        """Index an accepted document (engine/ingest.py); the job is settled there."""
        ingestion_id = job.payload.get("ingestion_id")
        try:
            if self.knowledge is None:  # another worker, with an embedding model, may
                await asyncio.to_thread(
                    self.queue.fail, job.id, self._owner(job),
                    "this worker has no embedding model (HOMEO_MEMORY_EMBEDDING_MODEL names"
                    " no model alias)")
                return
            knowledge = self.knowledge
            outcome = await ingest.process_ingest_job(
                self.queue, knowledge.store, knowledge.embedder, knowledge.policy, job,
                self._owner(job), lease_seconds=self.lease_seconds,
                stopping=lambda: self._stopping)
            self.log.info(f"ingestion {outcome}", ingestion_id=ingestion_id,
                          tenant_id=job.tenant_id, attempt=job.attempts)
        except Exception as error:  # the database is down: the lease lapses, it is retried
            self.log.exception("ingestion crashed", ingestion_id=ingestion_id,
                               error=f"{type(error).__name__}: {error}")
        finally:
            self.processed += 1

    async def _chore(
        self, job: Job, what: str, work: Callable[[], Awaitable[dict[str, int]]]
    ) -> None:
        """A housekeeping job: done when `work` is; when it fails (the database
        is down), back to the queue to be tried again later."""
        try:
            done = await work()
        except Exception as error:
            message = f"{type(error).__name__}: {error}"
            self.log.warning(f"{what} failed", error=message)
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.queue.fail, job.id, self._owner(job), message)
            return
        finally:
            self.processed += 1
        self.log.info(f"{what} done", **done)
        with contextlib.suppress(LeaseLost):
            await self._complete(job)

    @staticmethod
    def _owner(job: Job) -> str:
        if job.lease_owner is None:  # only a claimed job may be processed
            raise LeaseLost()
        return job.lease_owner

    async def _complete(self, job: Job, done: list[Job] | None = None) -> None:
        if done is not None:  # the slot's next claim completes it
            self._owner(job)
            done.append(job)
        elif not await asyncio.to_thread(self.queue.complete, job.id, self._owner(job)):
            raise LeaseLost()

    async def _settle(self, done: list[Job]) -> None:
        """Mark done the jobs a slot left for a claim it will not make now."""
        while done:
            job = done.pop()
            with contextlib.suppress(LeaseLost):
                await self._complete(job)


async def _wait(stop: asyncio.Event, seconds: float) -> bool:
    """Wait `seconds` or until `stop` is set; whether it was set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    return stop.is_set()
