"""The sweeper: no stored run is left without a job.

Where store and queue share a database a run and its job are written in one
transaction (engine/submit.py), so this finds nothing there unless something
outside homeo removed a job. Where they do not (the store in one system, the
queue in another), a process that dies between the two writes leaves a run
without a job, and this queues it. Every worker sweeps, a batch at a time, from
where its last sweep stopped; queueing is idempotent, so workers sweeping at
once do no harm. Ingestions (a document accepted for a queue job to index)
get the same care: one whose job is missing is queued again, one whose job
ended without it is marked failed.
"""

from __future__ import annotations

from homeo.backends import Backends
from homeo.db.dialect import clock
from homeo.engine.ingest import enqueue_ingestion, ingestion_job_key
from homeo.engine.submit import enqueue_run, run_job_key
from homeo.memory.store import Ingestion, KnowledgeStore
from homeo.store.models import Run


class Sweeper:
    def __init__(
        self,
        backends: Backends,
        *,
        grace_seconds: float = 30.0,
        batch: int = 200,
        max_attempts: int = 3,
        knowledge: KnowledgeStore | None = None,
    ) -> None:
        # Runs touched within `grace_seconds` are left alone: their submitter
        # may be between its two writes right now.
        self.backends = backends
        self.grace_seconds = grace_seconds
        self.batch = batch
        self.max_attempts = max_attempts
        self.after_id = ""
        self.knowledge = knowledge  # None: no ingestions to look after
        self.after_ingestion = ""

    def sweep(self, *, now: float | None = None) -> list[str]:
        """Check the next batch of queued and running runs; queue those without a
        job and fail those whose job ended while they did not. Returns the ids of
        the runs it acted on."""
        runs = self.backends.store.unsettled_runs(
            updated_before=clock(now) - self.grace_seconds, after_id=self.after_id,
            limit=self.batch,
        )
        # Go on from here next time; start again at the top after the last batch.
        self.after_id = runs[-1].id if len(runs) == self.batch else ""
        return [run.id for run in runs if self._settle(run)]

    def sweep_ingestions(self, *, now: float | None = None) -> list[str]:
        """As `sweep`, for the next batch of queued and indexing ingestions;
        the ids of those it acted on."""
        if self.knowledge is None:
            return []
        found = self.knowledge.unsettled_ingestions(
            updated_before=clock(now) - self.grace_seconds, after_id=self.after_ingestion,
            limit=self.batch)
        self.after_ingestion = found[-1][1].id if len(found) == self.batch else ""
        return [ingestion.id for tenant_id, ingestion in found
                if self._settle_ingestion(tenant_id, ingestion)]

    def _settle_ingestion(self, tenant_id: str, ingestion: Ingestion) -> bool:
        assert self.knowledge is not None
        job = self.backends.queue.find(tenant_id, ingestion_job_key(ingestion))
        if job is None:
            enqueue_ingestion(self.backends.queue, tenant_id, ingestion)
            return True
        if job.status in ("done", "dead"):
            self.knowledge.fail_ingestion(
                tenant_id, ingestion.id, f"its job ended ({job.status}) but the ingestion did"
                f" not; last error: {job.last_error}; send the document again to retry")
            return True
        return False

    def _settle(self, run: Run) -> bool:
        job = self.backends.queue.find(run.tenant_id, run_job_key(run))
        if job is None:
            enqueue_run(self.backends, run, max_attempts=self.max_attempts)
            return True
        if job.status in ("done", "dead"):
            # The worker settles the run before the job, so this means the run's
            # own write was lost: end it rather than leave it waiting forever.
            self.backends.store.transition_run(
                run.tenant_id, run.id, "failed", allowed_from={"queued", "running"},
                error=f"its job ended ({job.status}) but the run did not;"
                      f" last error: {job.last_error}",
            )
            return True
        return False
