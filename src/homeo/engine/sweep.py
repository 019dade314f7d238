"""The sweeper: no stored run is left without a job.

Where store and queue share a database a run and its job are written in one
transaction (engine/submit.py), so this finds nothing there unless something
outside homeo removed a job. Where they do not (the store in one system, the
queue in another), a process that dies between the two writes leaves a run
without a job, and this queues it. Every worker sweeps, a batch at a time, from
where its last sweep stopped; queueing is idempotent, so workers sweeping at
once do no harm.
"""

from __future__ import annotations

from homeo.backends import Backends
from homeo.db.dialect import clock
from homeo.engine.submit import enqueue_run, run_job_key
from homeo.store.models import Run


class Sweeper:
    def __init__(
        self,
        backends: Backends,
        *,
        grace_seconds: float = 30.0,
        batch: int = 200,
        max_attempts: int = 3,
    ) -> None:
        # Runs touched within `grace_seconds` are left alone: their submitter
        # may be between its two writes right now.
        self.backends = backends
        self.grace_seconds = grace_seconds
        self.batch = batch
        self.max_attempts = max_attempts
        self.after_id = ""

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
