"""API keys on every /v1 route, and tenants that never see each other's runs."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import httpx
import openai
import pytest

from tests.api.conftest import Served, add_key
from tests.api.test_runs import assert_error, run_id_of, wait_for

V1_ROUTES = [
    ("GET", "/v1/runs"), ("POST", "/v1/runs"), ("GET", "/v1/runs/run_x"),
    ("POST", "/v1/runs/run_x/cancel"), ("GET", "/v1/runs/run_x/events"),
    ("GET", "/v1/agents"), ("GET", "/v1/models"), ("POST", "/v1/chat/completions"),
    ("POST", "/v1/embeddings"), ("GET", "/v1/providers"), ("GET", "/v1/keys"),
    ("POST", "/v1/keys"), ("POST", "/v1/keys/0123456789abcdef/revoke"),
]


@pytest.mark.parametrize(("method", "path"), V1_ROUTES)
def test_every_v1_route_refuses_a_call_without_a_key(
    served: Served, method: str, path: str
) -> None:
    with served.client_for(None) as anonymous:
        response = anonymous.request(method, path, json={})
    message = assert_error(response, 401, "unauthorized")
    assert "homeo keys create" in message
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(("header", "problem"), [
    ("Basic dXNlcjpwYXNz", "must be `Bearer <key>`"),
    ("Bearer sk-not-a-homeo-key", "malformed API key"),
    ("Bearer hk_0123456789abcdef_" + "x" * 43, "unknown API key hk_0123456789abcdef_…"),
])
def test_a_bad_key_is_refused_with_what_is_wrong(served: Served, header: str, problem: str
                                                 ) -> None:
    response = httpx.get(f"{served.url}/v1/runs", headers={"authorization": header})
    assert problem in assert_error(response, 401, "unauthorized")
    assert "x" * 43 not in response.text  # the secret is never echoed


def test_health_and_metrics_need_no_key(served: Served) -> None:
    with served.client_for(None) as anonymous:
        for path in ("/healthz", "/readyz", "/metrics"):
            assert anonymous.get(path).status_code == 200, path


def test_a_revoked_key_is_refused(served: Served) -> None:
    key = add_key(served, "acme")
    key_id = key.split("_")[1]
    served.runtime.backends.store.revoke_key(key_id)
    with served.client_for(key) as client:
        assert "was revoked" in assert_error(client.get("/v1/runs"), 401, "unauthorized")


def test_tenants_never_see_each_others_runs(served: Served) -> None:
    acme_key, globex_key = add_key(served, "acme"), add_key(served, "globex")
    with served.client_for(acme_key) as acme, served.client_for(globex_key) as globex:
        run_id = run_id_of(acme, "echo", "acme's secret plan")
        assert wait_for(acme, run_id)["status"] == "succeeded"
        assert [run["id"] for run in acme.get("/v1/runs").json()["runs"]] == [run_id]

        assert globex.get("/v1/runs").json()["runs"] == []
        assert_error(globex.get(f"/v1/runs/{run_id}"), 404, "not_found")
        assert_error(globex.get(f"/v1/runs/{run_id}/events"), 404, "not_found")
        assert_error(globex.post(f"/v1/runs/{run_id}/cancel"), 404, "not_found")
        # The same idempotency key in two tenants makes two runs.
        first = acme.post("/v1/runs", json={"agent": "echo", "input": "a",
                                            "idempotency_key": "shared"})
        second = globex.post("/v1/runs", json={"agent": "echo", "input": "b",
                                               "idempotency_key": "shared"})
        assert first.status_code == second.status_code == 202
        assert first.json()["id"] != second.json()["id"]
        # The default tenant (the fixture's key) sees neither.
        listed = {run["id"] for run in served.client.get("/v1/runs").json()["runs"]}
        assert run_id not in listed and first.json()["id"] not in listed


def test_every_tenant_with_a_key_can_run_the_agents_folder(served: Served) -> None:
    with served.client_for(add_key(served, "acme")) as acme:
        names = sorted(agent["name"] for agent in acme.get("/v1/agents").json())
    assert names == sorted(agent["name"] for agent in served.client.get("/v1/agents").json())
    assert names


def test_the_openai_client_gets_an_authentication_error_for_a_bad_key(
    serve: Callable[..., Served],
) -> None:
    served = serve(with_worker=False)
    client = openai.OpenAI(base_url=f"{served.url}/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError, match="malformed API key"):
        client.models.list()


def test_each_key_has_its_own_rate_limit(serve: Callable[..., Served]) -> None:
    served = serve(with_worker=False, key_rate_limit="3/hour")
    other = add_key(served, "acme")
    began = time.monotonic()
    for _ in range(3):
        assert served.client.get("/v1/agents").status_code == 200
    limited = served.client.get("/v1/agents")
    message = assert_error(limited, 429, "rate_limited")
    key_id = served.key.split("_")[1]
    assert message.startswith(f"API key hk_{key_id}_… is over its rate limit"
                              " HOMEO_KEY_RATE_LIMIT=3/hour; retry in")
    # 3/hour refills one request every 1,200 s, less what has passed since the first.
    elapsed = math.ceil(time.monotonic() - began)
    assert 1200 - elapsed <= int(limited.headers["retry-after"]) <= 1200
    with served.client_for(other) as client:
        assert client.get("/v1/agents").status_code == 200  # another key, another bucket
    with served.client_for(None) as anonymous:  # no key: refused before any bucket
        assert anonymous.get("/v1/agents").status_code == 401
