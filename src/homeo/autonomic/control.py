"""The shared control state, as each process reads it: the `control` table the
autonomic loop's actuators write, read at most once per `refresh_seconds`
and cached, so a breaker, a router, a worker slot or an API request asks it
as often as it likes for the cost of a dict lookup.

Keys and what every process does with them:

    breaker/<deployment>          {"state": "open"|"closed"}  the router's breaker is held so
    weight/<alias>/<deployment>   {"factor": f}  the deployment's weight in the alias x f
    alias/<alias>                 {"deployment": d, "model": id}  the alias sends first tries
                                                 to d only (the registry's champion);
                                                 its other deployments stay fallbacks
    worker.concurrency            {"slots": n}   each worker runs n slots (up to its maximum)
    shed/<tenant>                 {"retry_after": s}  the API answers the tenant's
                                                      submissions 429, Retry-After s
    pause/<tenant>                {}             workers do not run the tenant's jobs
    quarantine/<job id>           {"reason": ...} the worker that claims it dead-letters it
    supervisor/<host>/<pid>       {"host", "children": [pids]}  a `homeo worker --processes`
                                                      supervisor and the workers it keeps
    replace/<worker id>           {}             its supervisor kills it and starts another

A store that cannot be read keeps the last state read (the next refresh
tries again), so a database blip does not undo what the loop did.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from homeo.observe import logs
from homeo.store.base import Store
from homeo.store.models import ControlEntry

log = logs.get_logger("homeo.autonomic.control")


def breaker_key(deployment: str) -> str:
    return f"breaker/{deployment}"


def weight_key(alias: str, deployment: str) -> str:
    return f"weight/{alias}/{deployment}"


def alias_key(alias: str) -> str:
    return f"alias/{alias}"


def shed_key(tenant_id: str) -> str:
    return f"shed/{tenant_id}"


def pause_key(tenant_id: str) -> str:
    return f"pause/{tenant_id}"


def quarantine_key(job_id: str) -> str:
    return f"quarantine/{job_id}"


CONCURRENCY_KEY = "worker.concurrency"

SUPERVISOR_PREFIX = "supervisor/"
REPLACE_PREFIX = "replace/"


def replace_key(worker_id: str) -> str:
    return f"{REPLACE_PREFIX}{worker_id}"


RECYCLE_PREFIX = "recycle/"


def recycle_key(worker_id: str) -> str:
    return f"{RECYCLE_PREFIX}{worker_id}"


def supervisor_key(host: str, pid: int) -> str:
    return f"{SUPERVISOR_PREFIX}{host}/{pid}"


def supervised_pids(entries: dict[str, dict]) -> set[tuple[str, int]]:
    """(host, pid) of every worker process a live supervisor advertises, from
    control state key -> value."""
    found: set[tuple[str, int]] = set()
    for key, value in entries.items():
        if key.startswith(SUPERVISOR_PREFIX):
            found.update((str(value.get("host")), int(pid)) for pid in value.get("children", []))
    return found


class ControlState:
    def __init__(self, store: Store, *, refresh_seconds: float = 1.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.refresh_seconds = refresh_seconds
        self.clock = clock
        self.reads = 0  # how many times the store was read (tests check the cache)
        self._entries: dict[str, ControlEntry] = {}
        self._read_at = float("-inf")
        self._lock = threading.Lock()

    def entries(self, *, fresh: bool = False) -> dict[str, ControlEntry]:
        """Key -> entry in force, read from the store when the cache is stale
        (or, with `fresh`, now)."""
        now = self.clock()
        with self._lock:
            if fresh or now - self._read_at >= self.refresh_seconds:
                self._read_at = now
                try:
                    self._entries = {e.key: e for e in self.store.list_control(now=now)}
                    self.reads += 1
                except Exception as error:  # the database is down: keep the last state
                    log.warning("control state unreadable; keeping the last read",
                                error=f"{type(error).__name__}: {error}")
            entries = self._entries
        # An entry that expired since the read no longer applies.
        return {key: entry for key, entry in entries.items()
                if entry.expires_at is None or entry.expires_at > now}

    def value(self, key: str, *, fresh: bool = False) -> dict[str, Any] | None:
        entry = self.entries(fresh=fresh).get(key)
        return None if entry is None else entry.value

    def breaker(self, deployment: str) -> str | None:
        """The state the deployment's breaker is held in, or None (its own)."""
        found = self.value(breaker_key(deployment))
        state = None if found is None else found.get("state")
        return state if state in ("open", "closed") else None

    def weight_factor(self, alias: str, deployment: str) -> float:
        pinned = self.value(alias_key(alias))
        if pinned is not None and pinned.get("deployment") != deployment:
            return 0.0
        found = self.value(weight_key(alias, deployment))
        return 1.0 if found is None else max(float(found.get("factor", 1.0)), 0.0)

    def worker_concurrency(self) -> int | None:
        found = self.value(CONCURRENCY_KEY)
        return None if found is None else int(found["slots"])

    def shed_retry_after(self, tenant_id: str) -> float | None:
        """Seconds a shed tenant is told to wait, or None when it is not shed."""
        found = self.value(shed_key(tenant_id))
        return None if found is None else float(found.get("retry_after", 30.0))

    def paused(self, tenant_id: str) -> bool:
        return self.value(pause_key(tenant_id)) is not None

    def quarantined(self, job_id: str, *, fresh: bool = False) -> str | None:
        """Why the job is quarantined, or None. `fresh`: read the store now,
        not the cache (for a job whose worker died holding it, which the loop
        may have quarantined a moment ago)."""
        found = self.value(quarantine_key(job_id), fresh=fresh)
        return None if found is None else str(found.get("reason", "quarantined"))
