"""Workers: claim jobs, run them through the engine, keep their leases alive.

One `Worker` runs `concurrency` slots in one asyncio loop. Each slot claims a
job, heartbeats its lease while the run executes, and settles the job and the
run together when the run stops:

    run succeeded / failed / cancelled  -> job done
    retryable error                     -> job retried with backoff (run back to queued)
                                           or dead-lettered when out of attempts (run failed)
    lease lost (another worker has it)  -> stop at once, touch nothing
    worker stopping                     -> job released, run resumes elsewhere

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
from collections.abc import Callable
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, StatusCode, Tracer

from homeo.backends import Backends
from homeo.engine.agents import AgentError
from homeo.engine.budgets import TenantBudgets
from homeo.engine.catalog import AgentCatalog
from homeo.engine.errors import RetryableError, RunCancelled, RunFailed, RunInterrupted
from homeo.engine.runner import execute
from homeo.llm.base import ModelError
from homeo.observe import logs, tracing
from homeo.observe.metrics import Metrics
from homeo.queue.base import Job
from homeo.store.models import Run
from homeo.tenancy import current_tenant

RUN_JOB = "run"
ACTIVE = frozenset({"queued", "running"})
Emit = Callable[[dict[str, Any]], None]


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class LeaseLost(Exception):
    """Another worker now holds this job's lease."""


class Worker:
    def __init__(
        self,
        backends: Backends,
        agents: AgentCatalog,
        *,
        concurrency: int = 2,
        lease_seconds: float = 30.0,
        poll_seconds: float = 0.2,
        metrics: Metrics | None = None,
        worker_id: str | None = None,
        emit: Emit | None = None,
        budgets: TenantBudgets | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self.store = backends.store
        self.queue = backends.queue
        self.agents = agents
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self.metrics = metrics
        self.worker_id = worker_id or new_worker_id()
        self.emit = emit
        self.budgets = budgets
        self.tracer = tracer or tracing.tracer_of()
        self.last_poll = 0.0
        self.processed = 0
        self._stopping = False
        self._claims = itertools.count(1)
        self.log = logs.get_logger("homeo.worker")

    @property
    def alive(self) -> bool:
        """Polled recently: the loop is not stuck or dead."""
        return time.time() - self.last_poll < max(10 * self.poll_seconds, self.lease_seconds)

    async def serve(self, stop: asyncio.Event) -> None:
        """Run `concurrency` slots until `stop` is set, then finish the current steps."""
        self.log.info("worker started", worker_id=self.worker_id, concurrency=self.concurrency)
        self.last_poll = time.time()
        slots = [asyncio.create_task(self._slot(stop)) for _ in range(self.concurrency)]
        await stop.wait()
        self._stopping = True
        await asyncio.gather(*slots, return_exceptions=True)
        self.log.info("worker stopped", worker_id=self.worker_id, processed=self.processed)

    async def _slot(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            job = await self.claim()
            if job is None:
                # Idle: wait one poll interval, waking at once if asked to stop.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self.poll_seconds)
                continue
            await self.process(job)

    async def claim(self) -> Job | None:
        self.last_poll = time.time()
        # Every claim gets its own lease owner, so two slots of this process can
        # never act on each other's lease of the same job after an expiry.
        owner = f"{self.worker_id}#{next(self._claims)}"
        return await asyncio.to_thread(self.queue.claim, owner, self.lease_seconds)

    async def run_until_idle(self, max_jobs: int = 1_000_000) -> int:
        """Process jobs one at a time until none is due (for `homeo run` and tests)."""
        count = 0
        while count < max_jobs and (job := await self.claim()) is not None:
            await self.process(job)
            count += 1
        return count

    async def process(self, job: Job) -> None:
        """Run the job's run to a stop and settle both. Never raises."""
        run_id = str(job.payload.get("run_id", ""))
        logs.bind(run_id=run_id, tenant_id=job.tenant_id, job_id=job.id)
        current_tenant.set(job.tenant_id)
        with tracing.span(
            self.tracer,
            "run",
            context=tracing.context_from_payload(job.payload),
            kind=SpanKind.CONSUMER,
            attributes={"homeo.run_id": run_id, "homeo.tenant_id": job.tenant_id,
                        "homeo.job_id": job.id, "homeo.attempt": job.attempts},
        ) as span:
            try:
                await self._process(job, run_id, span)
            except LeaseLost:
                span.set_attribute("homeo.run.outcome", "lease_lost")
                self.log.warning("lease lost; another worker has the job")
            except Exception as error:  # a bug or an outage of the store itself
                span.record_exception(error)
                span.set_status(StatusCode.ERROR, str(error))
                self.log.exception("job processing crashed", error=str(error))
            finally:
                self.processed += 1
                logs.unbind("run_id", "tenant_id", "job_id")

    async def _process(self, job: Job, run_id: str, span: Span) -> None:
        run = await asyncio.to_thread(self.store.get_run, job.tenant_id, run_id)
        if run is None:
            span.set_status(StatusCode.ERROR, f"run {run_id} not found")
            await asyncio.to_thread(
                self.queue.fail, job.id, self._owner(job), f"run {run_id} not found", retry=False
            )
            return
        span.set_attribute("homeo.agent", run.agent)
        if run.request_id:
            span.set_attribute("homeo.request_id", run.request_id)
            logs.bind(request_id=run.request_id)
        if run.is_final:
            await asyncio.to_thread(self.queue.complete, job.id, self._owner(job))
            return
        if job.exhausted:
            error = f"gave up after {job.max_attempts} attempts; last error: {job.last_error}"
            await self._finish(run, "failed", error=error)
            await asyncio.to_thread(self.queue.fail, job.id, self._owner(job), error, retry=False)
            return
        running = await asyncio.to_thread(
            self.store.transition_run, run.tenant_id, run.id, "running", allowed_from=ACTIVE
        )
        if running is None:  # cancelled between claim and start
            await asyncio.to_thread(self.queue.complete, job.id, self._owner(job))
            return
        self.log.info("run started", agent=run.agent, attempt=job.attempts)
        execution = asyncio.create_task(self._execute(running))
        heartbeat = asyncio.create_task(self._heartbeat(job, execution))
        try:
            output = await execution
        except RunInterrupted:
            await asyncio.to_thread(self.queue.release, job.id, self._owner(job))
            await self._finish(running, "queued", from_={"running"})
            self.log.info("run paused for shutdown")
            return
        except asyncio.CancelledError:
            if heartbeat.done() and isinstance(heartbeat.exception(), LeaseLost):
                raise LeaseLost() from None
            raise
        except (RunFailed, AgentError) as error:
            await self._finish(running, "failed", error=str(error))
            await self._complete(job)
            self.log.info("run failed", error=str(error))
            return
        except RunCancelled:
            span.set_attribute("homeo.run.outcome", "cancelled")
            await self._complete(job)
            self.log.info("run cancelled")
            return
        except Exception as error:  # RetryableError, or anything unexpected
            await self._retry(job, running, error)
            return
        finally:
            heartbeat.cancel()
        await self._finish(running, "succeeded", output=output)
        await self._complete(job)
        self.log.info("run succeeded")

    async def _execute(self, run: Run) -> str:
        try:
            agent = await self.agents.aget(run.tenant_id, run.agent)
        except ModelError as error:
            raise RunFailed(f"agent {run.agent!r}: {error}") from error
        spec = agent.spec
        return await execute(
            self.store,
            run,
            agent.graph,
            system_prompt=spec.system_prompt,
            step_timeout=spec.timeouts.step,
            run_timeout=spec.timeouts.run,
            emit=self._observe,
            stopping=lambda: self._stopping,
            budgets=self.budgets,
            tracer=self.tracer,
        )

    def _observe(self, event: dict[str, Any]) -> None:
        self.log.debug(event["type"], **{k: v for k, v in event.items() if k != "type"})
        if self.metrics is not None and event["type"] == "step_succeeded":
            self.metrics.step_seconds.labels(event["kind"]).observe(event["seconds"])
            usage = event["usage"]
            if usage["input_tokens"] or usage["output_tokens"] or usage["cost_usd"]:
                self.metrics.count_usage(event["tenant_id"], event["model"], **usage)
        if self.emit is not None:
            self.emit(event)

    async def _heartbeat(self, job: Job, execution: asyncio.Task[str]) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            held = await asyncio.to_thread(
                self.queue.heartbeat, job.id, self._owner(job), self.lease_seconds
            )
            if not held:
                execution.cancel()
                raise LeaseLost()

    async def _retry(self, job: Job, run: Run, error: Exception) -> None:
        message = f"{type(error).__name__}: {error}"
        if not isinstance(error, RetryableError):
            self.log.exception("run crashed", error=message)
        failed = await asyncio.to_thread(self.queue.fail, job.id, self._owner(job), message)
        if failed is None:
            raise LeaseLost()
        if failed.status == "dead":
            await self._finish(run, "failed", error=f"gave up after {failed.attempts} attempts;"
                               f" last error: {message}")
        else:
            await self._finish(run, "queued", error=message, from_={"running"})
            self.log.info("run will be retried", error=message, at=failed.run_at)

    async def _finish(
        self,
        run: Run,
        status: str,
        *,
        output: str | None = None,
        error: str | None = None,
        from_: set[str] | frozenset[str] = ACTIVE,
    ) -> None:
        # Runs inside `process`, so the current span is the run's.
        span = trace.get_current_span()
        span.set_attribute("homeo.run.outcome", status)
        if error is not None:
            span.set_status(StatusCode.ERROR, error)
        await asyncio.to_thread(
            self.store.transition_run,
            run.tenant_id,
            run.id,
            status,
            allowed_from=from_,
            output=output,
            error=error,
        )

    @staticmethod
    def _owner(job: Job) -> str:
        if job.lease_owner is None:  # only a claimed job may be processed
            raise LeaseLost()
        return job.lease_owner

    async def _complete(self, job: Job) -> None:
        if not await asyncio.to_thread(self.queue.complete, job.id, self._owner(job)):
            raise LeaseLost()
