"""/healthz, /readyz, /metrics and /openapi.json over real HTTP."""

from __future__ import annotations

import time

import httpx
from prometheus_client.parser import text_string_to_metric_families

DEADLINE_SECONDS = 30.0


def samples(api: httpx.Client) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = api.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def test_healthz_answers(api: httpx.Client) -> None:
    response = api.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_readyz_checks_the_store_and_the_worker(api: httpx.Client) -> None:
    response = api.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"store": "ok", "workers": "ok"}}


def test_readyz_without_a_worker_says_where_work_happens(serve) -> None:
    response = serve(with_worker=False).client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {
        "store": "ok", "workers": "none in this process (run `homeo worker`)"}


def test_readyz_is_503_while_the_worker_cannot_claim(serve) -> None:
    served = serve()
    database = served.runtime.backends.shared
    with database.write() as db:
        db.execute("ALTER TABLE jobs RENAME TO jobs_away")  # every claim now fails
    deadline = time.monotonic() + DEADLINE_SECONDS
    while (response := served.client.get("/readyz")).status_code == 200:
        assert time.monotonic() < deadline, "readyz stayed ready"
        time.sleep(0.02)
    assert response.status_code == 503 and response.json()["status"] == "not ready"
    assert response.json()["checks"]["workers"].startswith(
        "cannot claim jobs: OperationalError: no such table: jobs")
    with database.write() as db:
        db.execute("ALTER TABLE jobs_away RENAME TO jobs")
    while (response := served.client.get("/readyz")).status_code != 200:
        assert time.monotonic() < deadline + DEADLINE_SECONDS, "readyz never recovered"
        time.sleep(0.02)


def test_metrics_count_runs_queue_and_step_latency(api: httpx.Client) -> None:
    before = samples(api)
    assert before[("homeo_runs", frozenset({("status", "succeeded")}))] == 0
    assert before[("homeo_queue_depth", frozenset())] == 0
    assert before[("homeo_queue_lease_expiries_total", frozenset())] == 0

    run_id = api.post("/v1/runs", json={"agent": "calc", "input": "2+2"}).json()["id"]
    deadline = time.monotonic() + DEADLINE_SECONDS
    while api.get(f"/v1/runs/{run_id}").json()["status"] != "succeeded":
        assert time.monotonic() < deadline, "the run did not succeed"
        time.sleep(0.02)

    after = samples(api)
    assert after[("homeo_runs", frozenset({("status", "succeeded")}))] == 1
    assert after[("homeo_runs", frozenset({("status", "failed")}))] == 0
    assert after[("homeo_queue_depth", frozenset())] == 0
    assert after[("homeo_queue_jobs", frozenset({("status", "done")}))] == 1
    assert after[("homeo_queue_lease_expiries_total", frozenset())] == 0
    assert after[("homeo_step_seconds_count", frozenset({("kind", "model")}))] == 2
    assert after[("homeo_step_seconds_count", frozenset({("kind", "tool")}))] == 1
    model_buckets = {labels: value for (name, labels), value in after.items()
                     if name == "homeo_step_seconds_bucket" and ("kind", "model") in labels}
    assert model_buckets[frozenset({("kind", "model"), ("le", "+Inf")})] == 2


def test_metrics_show_queued_work_when_no_worker_runs(serve) -> None:
    api = serve(with_worker=False).client
    for n in range(3):
        assert api.post("/v1/runs", json={"agent": "echo", "input": f"wait {n}"}).status_code == 202
    now = samples(api)
    assert now[("homeo_queue_depth", frozenset())] == 3
    assert now[("homeo_runs", frozenset({("status", "queued")}))] == 3


def test_openapi_describes_the_runs_api(api: httpx.Client) -> None:
    response = api.get("/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert {"post", "get"} <= set(paths["/v1/runs"])
    assert "get" in paths["/v1/runs/{run_id}"]
    assert "post" in paths["/v1/runs/{run_id}/cancel"]
    assert "get" in paths["/v1/runs/{run_id}/events"]
    assert {"/v1/agents", "/healthz", "/readyz", "/metrics"} <= set(paths)
