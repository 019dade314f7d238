"""/v1/slo and the SLO dashboard against a real app: uvicorn on 127.0.0.1,
SQLite, an in-process worker running scriptkit's agents."""

from __future__ import annotations

import re
from fractions import Fraction

from homeo.observe.slo.dashboard import dashboard
from homeo.observe.slo.definitions import load_slos
from homeo.observe.slo.rules import render_rules
from tests.api.conftest import Served, add_key
from tests.api.test_runs import run_id_of, wait_for


def run_some(served: Served) -> None:
    """Two runs that succeed and one that fails, waited for."""
    for agent in ("echo", "calc", "broken"):
        text = "6*7" if agent == "calc" else "hello"
        wait_for(served.client, run_id_of(served.client, agent, text))


def test_slo_shows_the_tenants_runs_steps_and_this_servers_requests(served: Served) -> None:
    run_some(served)
    response = served.client.get("/v1/slo")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["tenant"] == "default"
    slos = {slo["name"]: slo for slo in body["slos"]}
    assert list(slos) == ["runs-succeed", "model-steps-fast", "api-fast"]
    runs = slos["runs-succeed"]
    assert (runs["scope"], runs["events"], runs["good_events"]) == ("tenant default", 3, 2)
    assert runs["value"] == 2 / 3 and runs["objective"] == 0.99
    assert set(runs["burn_rates"]) == {"5m", "1h", "6h"}
    assert runs["burn_rates"]["5m"] == float(Fraction(1, 3) / Fraction(1, 100))
    # echo answers in one model step, calc in two (around a tool step): all within 30s.
    steps = slos["model-steps-fast"]
    assert steps["events"] == 3 and steps["good_events"] == 3 and steps["error_budget_left"] == 1
    api = slos["api-fast"]
    assert api["scope"] == "this process, all tenants"
    assert api["events"] >= 7  # 3 submits and at least one poll each, before this request
    assert api["covers_seconds"] > 0 and api["note"] is None


def test_another_tenant_sees_none_of_these_runs(served: Served) -> None:
    run_some(served)
    other = served.client_for(add_key(served, "globex"))
    slos = {slo["name"]: slo for slo in other.get("/v1/slo").json()["slos"]}
    assert slos["runs-succeed"]["scope"] == "tenant globex"
    assert slos["runs-succeed"]["events"] == 0 and slos["runs-succeed"]["value"] is None
    assert slos["model-steps-fast"]["events"] == 0
    assert served.client_for(None).get("/v1/slo").status_code == 401


def test_every_metric_the_dashboard_and_rules_read_is_exported(served: Served) -> None:
    run_some(served)
    exported = served.client.get("/metrics").text
    names = set(re.findall(r"^([a-z_:]+)(?:\{| )", exported, re.M))
    slos = load_slos()
    queries = [target["expr"] for panel in dashboard(slos)["panels"]
               for target in panel.get("targets", [])]
    assert len(queries) == 5 * len(slos)
    used = {name for text in [*queries, render_rules(slos)]
            for name in re.findall(r"\b(homeo_[a-z_]+)", text)}
    assert used == {"homeo_runs_finished_total", "homeo_step_seconds_bucket",
                    "homeo_step_seconds_count", "homeo_http_request_seconds_bucket",
                    "homeo_http_request_seconds_count"}
    assert used <= names, used - names
    # The labels the queries select on are there too (the counts depend on the machine's speed).
    assert re.search(r'^homeo_runs_finished_total\{agent="broken",status="failed"\} 1\.0$',
                     exported, re.M)
    assert re.search(r'^homeo_step_seconds_bucket\{kind="model",le="30\.0"\} \d', exported,
                     re.M)
    assert re.search(r'^homeo_http_request_seconds_bucket\{code="2xx",le="0\.5",method="POST",'
                     r'route="/v1/runs"\} \d', exported, re.M)
