"""GET /v1/autonomic on a real app (uvicorn on 127.0.0.1, SQLite, an
in-process worker) whose autonomic loop runs (HOMEO_AUTONOMIC=on)."""

from __future__ import annotations

import time
from typing import Any

from tests.api.conftest import Served, add_key
from tests.api.test_runs import run_id_of, wait_for

DEADLINE_SECONDS = 60.0


def signals_of(body: dict[str, Any]) -> dict[tuple[str, str], float]:
    return {(s["name"], s["subject"]): s["value"] for s in body["signals"]}


def until_seen(served: Served, client: Any, wanted: tuple[str, str]) -> dict[str, Any]:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        response = client.get("/v1/autonomic")
        assert response.status_code == 200, response.text
        body = response.json()
        if wanted in signals_of(body):
            return body
        assert time.monotonic() < deadline, f"{wanted} never showed: {body}"
        time.sleep(0.05)


def test_the_loop_shows_workers_providers_and_only_the_callers_tenant(serve: Any) -> None:
    served = serve(autonomic="on", autonomic_interval_seconds=0.05,
                   worker_heartbeat_seconds=0.05)
    wait_for(served.client, run_id_of(served.client, "echo", "hello"))
    worker = served.runtime.backends.store.list_workers()[0].id
    body = until_seen(served, served.client, ("agent.runs", "default/echo"))
    assert body["loop"] == "on" and body["tenant"] == "default"
    seen = signals_of(body)
    assert seen[("worker.slots", worker)] == served.runtime.settings.workers
    assert seen[("agent.failure_rate", "default/echo")] == 0
    deployments = {entry.key for entry, _, _ in served.runtime.models.deployments()}
    assert {subject for name, subject in seen if name == "provider.breaker"} == deployments
    assert {s["observer"] for s in body["signals"]} == {"test0"}

    other = served.client_for(add_key(served, "globex", role="admin"))
    theirs = until_seen(served, other, ("queue.due", ""))
    assert theirs["tenant"] == "globex"
    assert not [s for s in theirs["signals"] if s["subject"].startswith("default/")]
    assert (("worker.slots", worker)) in signals_of(theirs)


def test_member_keys_and_callers_without_a_key_are_refused(served: Served) -> None:
    member = served.client_for(add_key(served, "default"))
    refused = member.get("/v1/autonomic")
    assert refused.status_code == 403
    assert "has role member; this needs admin or above" in refused.json()["error"]["message"]
    assert served.client_for(None).get("/v1/autonomic").status_code == 401
    # With the loop off nothing observes: the answer says so, with no signals.
    body = served.client.get("/v1/autonomic").json()
    assert (body["loop"], body["signals"], body["diagnoses"]) == ("off", [], [])
