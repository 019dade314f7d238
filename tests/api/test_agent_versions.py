"""GET /v1/agents/{name}/versions: each version of an agent with its KPIs,
on a real server whose worker runs the scripted agents."""

from __future__ import annotations

import time

from homeo.store.models import definition_version
from tests.api.conftest import Served, add_key

DEADLINE_SECONDS = 60


def _finished(served: Served, run_id: str) -> dict:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        run = served.client.get(f"/v1/runs/{run_id}").json()
        if run["status"] in ("succeeded", "failed", "cancelled"):
            return run
        assert time.monotonic() < deadline, f"run never ended: {run}"
        time.sleep(0.02)


def test_versions_show_the_runs_each_version_ran(served: Served) -> None:
    stored = served.runtime.backends.store.get_agent("default", "echo")
    assert stored.version == definition_version(stored.spec)
    run_ids = [served.client.post("/v1/runs", json={"agent": "echo", "input": text}).json()["id"]
               for text in ("a", "b")]
    runs = [_finished(served, run_id) for run_id in run_ids]
    assert [(run["status"], run["agent_version"]) for run in runs] == [
        ("succeeded", stored.version)] * 2
    body = served.client.get("/v1/agents/echo/versions").json()
    assert body["agent"] == "echo"
    [version] = body["versions"]
    assert (version["version"], version["parent"], version["author"], version["current"]) == (
        stored.version, None, "folder", True)
    assert (version["runs"], version["succeeded"]) == (2, 2)
    assert version["success_rate"]["value"] == 1.0 and version["success_rate"]["n"] == 2
    assert 0.0 < version["success_rate"]["low"] < 1.0 == version["success_rate"]["high"]
    assert version["latency_p50"] is not None and version["eval_score"]["value"] is None
    # Another tenant has the same agents but none of these runs.
    with served.client_for(add_key(served, "acme")) as acme:
        [theirs] = acme.get("/v1/agents/echo/versions").json()["versions"]
    assert (theirs["version"], theirs["runs"]) == (stored.version, 0)


def test_an_agent_without_versions_is_a_404_that_says_where_to_look(served: Served) -> None:
    response = served.client.get("/v1/agents/nobody/versions")
    assert response.status_code == 404
    assert "GET /v1/agents lists the agents it has" in response.text
