"""/healthz, /readyz, /metrics and /openapi.json over real HTTP."""

from __future__ import annotations

import re
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
    # On a busy machine a claim stuck behind the rename's lock can first read
    # as "stalled": wait for the claim error itself.
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not (response := served.client.get("/readyz")).json()["checks"]["workers"].startswith(
            "cannot claim jobs: OperationalError: no such table: jobs"):
        assert time.monotonic() < deadline, f"readyz never named the claim error: {response.json()}"
        time.sleep(0.02)
    assert response.status_code == 503 and response.json()["status"] == "not ready"
    with database.write() as db:
        db.execute("ALTER TABLE jobs_away RENAME TO jobs")
    while (response := served.client.get("/readyz")).status_code != 200:
        assert time.monotonic() < deadline + DEADLINE_SECONDS, "readyz never recovered"
        time.sleep(0.02)


def test_metrics_count_runs_queue_and_step_latency(served) -> None:
    api, queue = served.client, served.runtime.backends.queue
    before = samples(api)
    assert before[("homeo_runs", frozenset({("status", "succeeded")}))] == 0
    assert before[("homeo_queue_depth", frozenset())] == 0
    assert before[("homeo_queue_lease_expiries_total", frozenset())] == 0

    run_id = api.post("/v1/runs", json={"agent": "calc", "input": "2+2"}).json()["id"]
    deadline = time.monotonic() + DEADLINE_SECONDS
    while api.get(f"/v1/runs/{run_id}").json()["status"] != "succeeded":
        assert time.monotonic() < deadline, "the run did not succeed"
        time.sleep(0.02)

    # Done: the run's job, and the housekeeping jobs (pruning) a worker queues
    # when it starts, which may still be running: read until the two agree.
    done = ("homeo_queue_jobs", frozenset({("status", "done")}))
    while (after := samples(api))[done] != queue.stats().get("done", 0):
        assert time.monotonic() < deadline, "the metrics never caught up with the queue"
        time.sleep(0.02)
    assert queue.find("default", f"run:{run_id}").status == "done"
    assert after[("homeo_runs", frozenset({("status", "succeeded")}))] == 1
    assert after[("homeo_runs", frozenset({("status", "failed")}))] == 0
    assert after[("homeo_queue_depth", frozenset())] == 0
    assert after[done] >= 1
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


def _run_calc(api: httpx.Client) -> None:
    run_id = api.post("/v1/runs", json={"agent": "calc", "input": "2+2"}).json()["id"]
    deadline = time.monotonic() + DEADLINE_SECONDS
    while api.get(f"/v1/runs/{run_id}").json()["status"] != "succeeded":
        assert time.monotonic() < deadline, "the run did not succeed"
        time.sleep(0.02)


def test_open_metrics_show_usage_summed_over_tenants_without_their_names(
    api: httpx.Client,
) -> None:
    _run_calc(api)
    text = api.get("/metrics").text
    assert 'homeo_llm_tokens_total{direction="output",model="scripted"}' in text
    assert "tenant=" not in text and '"default"' not in text


def test_a_metrics_token_guards_metrics_and_shows_tenants(serve) -> None:
    served = serve(metrics_token="scrape-Sekr3t")
    _run_calc(served.client)
    for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": "scrape-Sekr3t"}):
        refused = httpx.get(f"{served.url}/metrics", headers=headers)
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == "Bearer"
        assert refused.json()["error"] == {
            "type": "unauthorized",
            "message": "/metrics needs `Authorization: Bearer <HOMEO_METRICS_TOKEN>`"}
    assert served.client.get("/metrics").status_code == 401  # an API key is not the token
    scraped = httpx.get(f"{served.url}/metrics",
                        headers={"authorization": "Bearer scrape-Sekr3t"})
    assert scraped.status_code == 200
    assert 'homeo_llm_tokens_total{direction="output",model="scripted",tenant="default"}' \
        in scraped.text


def test_openapi_describes_the_runs_api(api: httpx.Client) -> None:
    response = api.get("/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert {"post", "get"} <= set(paths["/v1/runs"])
    assert "get" in paths["/v1/runs/{run_id}"]
    assert "post" in paths["/v1/runs/{run_id}/cancel"]
    assert "get" in paths["/v1/runs/{run_id}/events"]
    assert {"/v1/agents", "/healthz", "/readyz", "/metrics"} <= set(paths)


def test_the_docs_pages_load_their_assets_from_this_server(served) -> None:
    """Offline, a CDN URL would leave /docs blank."""
    for page, assets in (("/docs", (".js", ".css")), ("/redoc", (".js",))):
        html = httpx.get(f"{served.url}{page}")
        assert html.status_code == 200
        urls = re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", html.text)
        assert urls and not [u for u in urls if "//" in u], urls  # no absolute URLs
        assert "openapi.json" in html.text
        assert "http://" not in html.text and "https://" not in html.text
        for suffix in assets:
            local = [u for u in urls if u.endswith(suffix)]
            assert local, (page, suffix, urls)
            for url in local:
                asset = httpx.get(f"{served.url}{url}")
                assert asset.status_code == 200 and len(asset.content) > 10_000, url
                kind = "javascript" if suffix == ".js" else "css"
                assert kind in asset.headers["content-type"], url


def test_readyz_checks_a_queue_that_lives_apart(serve, tmp_path) -> None:
    """The queue on a Redis server of this test's own: ready while it answers,
    503 naming the queue once it is gone."""
    import socket
    import subprocess

    import redis

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(port=port)
        deadline = time.monotonic() + DEADLINE_SECONDS
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.02)
        client.close()
        api = serve(with_worker=False, queue_url=f"redis://127.0.0.1:{port}/0").client
        response = api.get("/readyz")
        assert response.status_code == 200
        assert response.json()["checks"]["queue"] == "ok"
        server.terminate()
        server.wait(timeout=DEADLINE_SECONDS)
        response = api.get("/readyz")
        assert response.status_code == 503 and response.json()["status"] == "not ready"
        assert response.json()["checks"]["queue"].startswith("unreachable: ")
        assert response.json()["checks"]["store"] == "ok"
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
