"""What can stop a run, as types the worker reacts to."""

from __future__ import annotations


class RunFailed(Exception):
    """The run cannot succeed; trying again would not help (max_steps reached,
    a non-idempotent tool was interrupted, the model refused the request...)."""


class RetryableError(Exception):
    """This attempt failed but a later one may succeed (provider outage, timeout).
    The job goes back to the queue with backoff and resumes at its checkpoint."""


class RunCancelled(Exception):
    """Someone cancelled the run; the engine stopped between steps."""


class RunInterrupted(Exception):
    """The worker is shutting down; the run stopped between steps and will resume
    elsewhere from its checkpoint."""


class RunSuspended(Exception):  # noqa: N818 - an outcome, not a failure
    """The run waits (for a person or child runs) with its step completed; the
    worker lets it go. It is queued again when what it waits for arrives."""

    def __init__(self, wait: object) -> None:
        super().__init__(str(wait))
        self.wait = wait
