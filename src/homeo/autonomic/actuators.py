"""Execute: the actuators that change the running system, in every process.

Most write the shared control state (autonomic/control.py), which every
homeo process reads at most once a second and applies: routers hold a
breaker open or scale a weight, workers change their slots, skip a paused
tenant's jobs or dead-letter a quarantined job, the API sheds a tenant's
submissions. Each entry expires after `ttl_seconds`, so a loop that died
leaves nothing changed for good. `rollback_agent` changes the store itself:
the agent's previous definition becomes its current one (new runs use it);
`prune_checkpoints` too: finished runs' per-step checkpoints go (their final
state stays) and the database gives the room back to the filesystem;
`expire_leases` the queue: a dead worker's leases end now, and the next
claim puts its jobs back in line; its heartbeat row goes too (no supervisor
will replace it, so nothing else would; a worker that was only slow writes
it again at its next heartbeat); `replace_worker` does that too and asks
the worker's supervisor (`homeo worker --processes`) to kill it and start
another; `recycle_worker` asks it to stop a live one gracefully (SIGTERM)
and start another.

`apply` does an action and returns what it changed; `revert` undoes it
(reversible actions only: a rolled-back agent stays rolled back, a
dead-lettered job stays dead).
"""

from __future__ import annotations

from typing import Any

from homeo.autonomic.control import (
    CONCURRENCY_KEY,
    breaker_key,
    pause_key,
    quarantine_key,
    recycle_key,
    replace_key,
    shed_key,
    weight_key,
)
from homeo.queue.base import Queue
from homeo.store.base import Store
from homeo.store.models import ControlEntry

SHED_RETRY_AFTER_SECONDS = 30.0


class ActuatorError(Exception):
    """An action could not be done (what it needs is gone or changed)."""


class Actuators:
    def __init__(self, store: Store, queue: Queue, *, actor: str,
                 ttl_seconds: float = 3600.0) -> None:
        """`actor` names who set the control state (the loop's observer)."""
        self.store = store
        self.queue = queue
        self.actor = actor
        self.ttl_seconds = ttl_seconds

    def apply(self, action: str, params: dict[str, Any], *, decision_id: str, now: float
              ) -> dict[str, Any]:
        """Do `action`; what it changed (control keys set, agent versions)."""
        if action == "open_breaker":
            return self._set(breaker_key(params["deployment"]), {"state": "open"}, now)
        if action == "shift_weight":
            keys = [self._set(weight_key(move["alias"], params["deployment"]),
                              {"factor": move["to"]}, now)["set"]
                    for move in params["moves"]]
            return {"set": keys}
        if action in ("raise_concurrency", "lower_concurrency"):
            return self._set(CONCURRENCY_KEY, {"slots": int(params["to"])}, now)
        if action == "shed_tenant":
            return self._set(shed_key(params["tenant"]),
                             {"retry_after": SHED_RETRY_AFTER_SECONDS}, now)
        if action == "pause_tenant":
            return self._set(pause_key(params["tenant"]), {}, now)
        if action == "quarantine_job":
            return self._set(quarantine_key(params["job"]),
                             {"reason": f"the autonomic loop found it poison (decision"
                                        f" {decision_id})"}, now)
        if action == "rollback_agent":
            return self._rollback(params, now)
        if action == "prune_checkpoints":
            return self._prune(float(params["older_than"]), now)
        if action == "expire_leases":
            expired = self.queue.expire_leases(params["worker"], now=now)
            return {"expired": expired, "forgot": self.store.forget_worker(params["worker"])}
        if action == "recycle_worker":
            # Its supervisor stops it with SIGTERM and removes the request once
            # another process has taken its place.
            return self._set(recycle_key(params["worker"]), {}, now)
        if action == "replace_worker":
            # Its supervisor kills it (if it still runs) and starts another;
            # its leases end now so the other workers take its runs meanwhile.
            changed = self._set(replace_key(params["worker"]), {}, now)
            return {**changed, "expired": self.queue.expire_leases(params["worker"], now=now)}
        raise ActuatorError(f"no actuator for action {action!r}")

    def revert(self, action: str, params: dict[str, Any], *, now: float) -> dict[str, Any]:
        """Undo a reversible action: a setting goes back to what it was."""
        if action == "open_breaker":
            return self._delete(breaker_key(params["deployment"]))
        if action == "shift_weight":
            undone = []
            for move in params["moves"]:
                key = weight_key(move["alias"], params["deployment"])
                if move["from"] == 1.0:
                    self.store.delete_control(key)
                else:
                    self._set(key, {"factor": move["from"]}, now)
                undone.append(key)
            return {"reverted": undone}
        if action in ("raise_concurrency", "lower_concurrency"):
            if params["from"] == params.get("base"):
                return self._delete(CONCURRENCY_KEY)
            return self._set(CONCURRENCY_KEY, {"slots": int(params["from"])}, now)
        if action == "shed_tenant":
            return self._delete(shed_key(params["tenant"]))
        if action == "pause_tenant":
            return self._delete(pause_key(params["tenant"]))
        # quarantine_job, rollback_agent, expire_leases, replace_worker,
        # recycle_worker, prune_checkpoints: not undone
        return {}

    def _set(self, key: str, value: dict[str, Any], now: float) -> dict[str, Any]:
        self.store.set_control(ControlEntry(key=key, value=value, set_by=self.actor,
                                            set_at=now, expires_at=now + self.ttl_seconds))
        return {"set": key, "value": value}

    def _delete(self, key: str) -> dict[str, Any]:
        self.store.delete_control(key)
        return {"removed": key}

    def _prune(self, older_than: float, now: float) -> dict[str, Any]:
        pruned, given = self.store.free_space(finished_before=now - older_than, now=now)
        return {"runs": pruned.runs, "checkpoints": pruned.checkpoints, "bytes": pruned.bytes,
                "given_back_bytes": given}

    def _rollback(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        tenant, agent = params["tenant"], params["agent"]
        current = self.store.get_agent(tenant, agent)
        if current is None or current.version != params["from"]:
            raise ActuatorError(f"agent {tenant}/{agent} is no longer at version"
                                f" {params['from']}; not rolled back")
        previous = self.store.get_agent_version(tenant, agent, params["to"])
        if previous is None:
            raise ActuatorError(f"agent {tenant}/{agent} has no version {params['to']}")
        self.store.put_agent(tenant, agent, previous.spec, author=self.actor, now=now)
        return {"agent": f"{tenant}/{agent}", "from": params["from"], "to": params["to"]}
