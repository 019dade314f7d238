"""`homeo worker --processes N`: a supervisor that keeps N worker processes.

Each tick it
  - advertises itself in the shared control state (`supervisor/<host>/<pid>`,
    {"host", "children": [pids]}, expiring after `advertise_ttl_seconds`), so
    the autonomic loop knows which workers it may ask to replace;
  - kills a child the loop asked to replace (`replace/<worker id>`, written by
    the `replace_worker` actuator: a worker whose heartbeat went stale, hung
    or dead) and removes the request;
  - stops a child the loop asked to recycle (`recycle/<worker id>`, written by
    the `recycle_worker` actuator: a live worker whose memory grew too much)
    with SIGTERM, so its steps in flight finish and its runs go back to the
    queue, and removes the request once another process took its place;
  - starts a new process in the place of each child that exited (killed, or
    crashed), counting restarts;
  - forgets the heartbeat row of a replaced worker once its leases are gone
    (ended by the loop or lapsed) and its replacement beats: the loop's
    `worker_dead` diagnosis of it then clears.

It kills and reaps only the processes it started. Time is `clock()` (or the
`now` a tick is given).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from homeo.autonomic.control import (
    RECYCLE_PREFIX,
    REPLACE_PREFIX,
    recycle_key,
    supervisor_key,
)
from homeo.observe import logs
from homeo.queue.base import Queue
from homeo.store.base import Store
from homeo.store.models import ControlEntry

log = logs.get_logger("homeo.engine.processes")

@dataclass
class Child:
    slot: int
    process: subprocess.Popen[bytes]
    worker_id: str | None = None  # its heartbeat row, once it wrote one
    recycling: bool = False  # asked to stop gracefully (SIGTERM sent)


@dataclass
class Retired:
    """A child that was replaced: its row goes once its leases are gone."""

    worker_id: str
    slot: int


@dataclass
class ProcessSupervisor:
    spawn: Callable[[int], subprocess.Popen[bytes]]  # slot -> a new worker process
    store: Store
    queue: Queue
    count: int
    host: str = field(default_factory=socket.gethostname)
    clock: Callable[[], float] = time.time
    advertise_ttl_seconds: float = 10.0
    stop_grace_seconds: float = 30.0
    children: list[Child] = field(default_factory=list)
    retired: list[Retired] = field(default_factory=list)
    restarts: int = 0
    replaced: int = 0  # children killed because the loop asked
    recycled: int = 0  # children stopped gracefully because the loop asked

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError("a supervisor needs at least one worker process")

    def start(self) -> None:
        self.children = [Child(slot, self.spawn(slot)) for slot in range(self.count)]
        self.tick()

    def tick(self, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        self._identify()
        self._advertise(now)
        entries = self.store.list_control(now=now)
        self._replace_requested(entries)
        self._recycle_requested(entries)
        self._restart_exited()
        self._forget_retired(now)

    def serve(self, stop: threading.Event, interval_seconds: float = 0.5) -> None:
        """Start the children and tick until `stop` is set, then stop them."""
        self.start()
        try:
            while not stop.wait(interval_seconds):
                try:
                    self.tick()
                except Exception as error:  # a database blip: the next tick tries again
                    log.warning("supervisor tick failed", error=f"{type(error).__name__}: {error}")
        finally:
            self.stop()

    def stop(self) -> None:
        """SIGTERM every child (they release their runs), SIGKILL one that stays."""
        for child in self.children:
            if child.process.poll() is None:
                child.process.terminate()
        for child in self.children:
            try:
                child.process.wait(timeout=self.stop_grace_seconds)
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()
        try:
            self.store.delete_control(supervisor_key(self.host, os.getpid()))
        except Exception as error:  # it expires anyway
            log.warning("supervisor could not withdraw", error=f"{type(error).__name__}: {error}")

    # --- each tick ------------------------------------------------------------
    def _identify(self) -> None:
        if all(child.worker_id for child in self.children):
            return
        rows = {(row.host, row.pid): row.id for row in self.store.list_workers()}
        for child in self.children:
            if child.worker_id is None:
                child.worker_id = rows.get((self.host, child.process.pid))

    def _advertise(self, now: float) -> None:
        pids = [child.process.pid for child in self.children]
        self.store.set_control(ControlEntry(
            key=supervisor_key(self.host, os.getpid()),
            value={"host": self.host, "children": pids}, set_by="homeo worker --processes",
            set_at=now, expires_at=now + self.advertise_ttl_seconds))

    def _requested(self, entries: list[ControlEntry], prefix: str
                   ) -> Iterator[tuple[ControlEntry, Child]]:
        """The loop's requests (`prefix` + worker id) that name a child of this
        supervisor, with the child."""
        mine = {child.worker_id: child for child in self.children if child.worker_id}
        for entry in entries:
            if entry.key.startswith(prefix) and (
                    child := mine.get(entry.key[len(prefix):])) is not None:
                yield entry, child

    def _replace_requested(self, entries: list[ControlEntry]) -> None:
        for entry, child in self._requested(entries, REPLACE_PREFIX):
            if child.process.poll() is None:
                log.warning("replacing a worker the autonomic loop found dead",
                            worker=child.worker_id, pid=child.process.pid)
                os.kill(child.process.pid, signal.SIGKILL)  # our own child
                child.process.wait()
            self.replaced += 1
            self.store.delete_control(entry.key)

    def _recycle_requested(self, entries: list[ControlEntry]) -> None:
        for _, child in self._requested(entries, RECYCLE_PREFIX):
            if child.recycling:
                continue  # already stopping
            if child.process.poll() is None:
                log.info("recycling a worker the autonomic loop found bloated",
                         worker=child.worker_id, pid=child.process.pid)
                child.process.terminate()  # our own child: it releases its runs and exits
            child.recycling = True
            self.recycled += 1

    def _restart_exited(self) -> None:
        for index, child in enumerate(self.children):
            code = child.process.poll()
            if code is None:
                continue
            if child.recycling:
                log.info("recycled worker stopped; starting another", pid=child.process.pid,
                         code=code, worker=child.worker_id)
            else:
                log.warning("worker process exited; starting another", pid=child.process.pid,
                            code=code, worker=child.worker_id)
            if child.worker_id:
                self.retired.append(Retired(child.worker_id, child.slot))
            self.children[index] = Child(child.slot, self.spawn(child.slot))
            self.restarts += 1
            if child.recycling and child.worker_id:
                self.store.delete_control(recycle_key(child.worker_id))

    def _forget_retired(self, now: float) -> None:
        if not self.retired:
            return
        leases = self.queue.backlog(now).leases_by_worker
        self._identify()
        beating = {child.slot for child in self.children if child.worker_id}
        keep = []
        for gone in self.retired:
            if leases.get(gone.worker_id, 0) == 0 and gone.slot in beating:
                self.store.forget_worker(gone.worker_id)
            else:
                keep.append(gone)
        self.retired = keep
