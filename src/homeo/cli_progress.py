"""`homeo run`: submit a run, work the queue, print each step as it happens.

On a terminal a spinner shows the step in progress and how long it has taken;
piped, only the step lines are printed. Ctrl-C pauses the run when its current
step ends (it stays queued, and resumes where it stopped when a worker runs);
a second Ctrl-C leaves at once. A run that comes to wait for a person (an
approval, an answer) is left waiting, with the commands that answer it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.status import Status
from rich.text import Text

from homeo.cli_show import outcome_lines, step_line, waiting_lines
from homeo.engine.follow import follow_run
from homeo.engine.submit import RunNeedsUser, UnknownAgent, submit_run
from homeo.store.disk import DiskFull
from homeo.runtime import Runtime
from homeo.store.models import NewRun, Run, Step

CLI_PRIORITY = 10  # ahead of queued background work in this database
INTERRUPTED = 130  # the exit status of a command stopped by Ctrl-C (128 + SIGINT)
WAITING = 3  # the run waits for a person


class _Activity:
    """The spinner's text: what the run is doing now, and for how long. Rich
    renders it on each refresh, so the time counts up by itself."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.what = "waiting for this process's worker"
        self.since = clock()

    def show(self, item: Step | Run) -> None:
        if isinstance(item, Step) and item.status == "running":
            self.what = f"step {item.seq} {item.kind} {item.name}"
            self.since = item.started_at
        elif isinstance(item, Step):
            self.what, self.since = f"after step {item.seq}", self.clock()

    def __rich__(self) -> Text:
        return Text(f"{self.what}  {max(0.0, self.clock() - self.since):.1f}s")


@contextlib.contextmanager
def _spinner(out: Console, activity: _Activity) -> Iterator[Status | None]:
    if not out.is_terminal:
        yield None
        return
    with out.status(activity, spinner="dots") as status:
        yield status


async def run_with_progress(
    runtime: Runtime, agent: str, text: str, out: Console, errors: Console,
    *, clock: Callable[[], float] = time.time, report: Callable[[Run], None] | None = None,
    user: str | None = None,
) -> int:
    """Run `agent` on `text` here, showing its steps; return the exit status:
    0 succeeded, 1 failed or cancelled, 3 waiting for a person, 130 paused by Ctrl-C.
    `report`, when given, gets the run as it last stood (`homeo run --json`);
    `user`, the person the run works for."""
    settings = runtime.settings
    try:
        run, _ = submit_run(
            runtime.backends,
            NewRun(tenant_id=settings.default_tenant, agent=agent, input=text, user_id=user),
            max_attempts=settings.max_attempts,
            priority=CLI_PRIORITY,
        )
    except (UnknownAgent, RunNeedsUser, DiskFull) as error:
        errors.print(f"homeo: {error}", markup=False)
        return 1
    out.print(f"run {run.id} ({agent}) queued", markup=False)
    worker = runtime.worker(concurrency=1)
    stop = asyncio.Event()
    serving = asyncio.create_task(worker.serve(stop))
    interrupts = _CtrlC(run, stop, out, errors, lease_seconds=settings.lease_seconds)
    activity = _Activity(clock)
    current = run
    try:
        with _spinner(out, activity) as spinner:
            interrupts.spinner = spinner
            async for item in follow_run(runtime.backends.store, run.tenant_id, run.id,
                                         poll_seconds=0.1, until=serving.done):
                activity.show(item)
                if isinstance(item, Step):
                    out.print(step_line(item), markup=False, highlight=False)
                else:
                    current = item
                    if _waits_for_a_person(item):
                        break
    finally:
        stop.set()
        await serving
        interrupts.close()
    if report is not None:
        report(runtime.backends.store.get_run(run.tenant_id, run.id) or current)
    if current.is_final:
        for line in outcome_lines(current):
            out.print(line, markup=False, highlight=False)
        return 0 if current.status == "succeeded" else 1
    if _waits_for_a_person(current):
        for line in waiting_lines(current):
            out.print(line, markup=False, highlight=False)
        return WAITING
    errors.print(
        f"homeo: run {run.id} is paused ({current.status}): it resumes where it stopped when a"
        f" worker runs (`homeo worker`); to cancel it instead: `homeo runs cancel {run.id}`",
        markup=False,
    )
    return INTERRUPTED


def _waits_for_a_person(run: Run) -> bool:
    return run.status == "waiting" and (run.waiting_for or {}).get("kind") in ("approval",
                                                                               "input")


class _CtrlC:
    """While installed, the first Ctrl-C stops the worker, which pauses the run
    when its current step ends; the second leaves at once (a step's thread may
    not end for a long time)."""

    def __init__(self, run: Run, stop: asyncio.Event, out: Console, errors: Console, *,
                 lease_seconds: float) -> None:
        self.run, self.stop, self.out, self.errors = run, stop, out, errors
        self.lease_seconds = lease_seconds
        self.spinner: Status | None = None
        self.loop = asyncio.get_running_loop()
        self.loop.add_signal_handler(signal.SIGINT, self._interrupted)

    def _interrupted(self) -> None:
        # The spinner stops while a message is printed (it would overwrite the
        # line), and for good when leaving (which also brings the cursor back).
        if self.spinner is not None:
            self.spinner.stop()
        if not self.stop.is_set():
            self.stop.set()
            self.errors.print(
                f"homeo: Ctrl-C: run {self.run.id} pauses when its current step ends;"
                " Ctrl-C again to leave now", markup=False)
            if self.spinner is not None:
                self.spinner.start()
            return
        self.errors.print(
            f"homeo: left run {self.run.id} mid-step: it stays running until its lease expires"
            f" (within {self.lease_seconds:g} s), then a worker (`homeo worker`) resumes it,"
            " repeating that step only if it is safe to; to cancel it instead:"
            f" `homeo runs cancel {self.run.id}`",
            markup=False)
        for stream in (self.out.file, sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        # Not sys.exit: the interpreter would wait for the step's thread to end.
        # Every store write is a transaction, so the run is as a crash leaves it.
        os._exit(INTERRUPTED)

    def close(self) -> None:
        self.loop.remove_signal_handler(signal.SIGINT)
