"""Answering runs that wait, over HTTP: approve, reject and input, the SSE
`waiting` event, child runs in GET /v1/runs/{id}, and the errors of each."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.api.conftest import add_key
from tests.api.test_runs import assert_error, run_id_of, sse_events, wait_for

AGENTS = {
    "payer": "model: scripted:waitkit:payer_model\ntools: [waitkit:wire_money]\n",
    "greeter": "model: scripted:waitkit:greeter_model\ntools: [waitkit:greet_person]\n",
    "manager": "model: scripted:waitkit:manager_model\nagents: [deployer]\n",
    "deployer": "description: Deploys services.\nmodel: scripted:waitkit:deployer_model\n"
                "tools: [waitkit:deploy]\n",
}


@pytest.fixture
def served(serve, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import waitkit

    monkeypatch.setenv(waitkit.LOG_ENV, str(tmp_path / "effects.log"))
    served = serve()
    folder = Path(served.runtime.settings.agents_dir)
    for name, body in AGENTS.items():
        (folder / f"{name}.yaml").write_text(f"name: {name}\n{body}")
    served.runtime.publish_agents()
    return served


def waiting(run: dict) -> bool:
    return run["status"] == "waiting"


def test_an_approval_over_http(served, tmp_path: Path) -> None:
    import waitkit

    api = served.client
    run_id = run_id_of(api, "payer", "700")
    run = wait_for(api, run_id, waiting)
    assert run["waiting_for"]["kind"] == "approval"
    assert run["waiting_for"]["detail"] == {"tool": "wire_money", "arguments": {"amount": 700},
                                            "call_id": run["waiting_for"]["detail"]["call_id"]}
    with api.stream("GET", f"/v1/runs/{run_id}/events") as response:
        for event, data in sse_events(response.iter_lines()):
            if event == "waiting":
                assert data == {"id": run_id, "waiting_for": run["waiting_for"]}
                break

    message = assert_error(api.post(f"/v1/runs/{run_id}/input", json={"answer": "yes"}), 409,
                           "conflict")
    assert message == (f"run {run_id} waits for approval of a call to 'wire_money',"
                       " not for an answer")
    assert_error(api.post(f"/v1/runs/{run_id}/approve", json={"arguments": [1]}), 422,
                 "invalid_request")
    assert_error(api.post(f"/v1/runs/{run_id}/approve", json={"note": "hi"}), 422,
                 "invalid_request")
    other = served.client_for(add_key(served, "globex", role="operator"))  # may approve
    assert_error(other.post(f"/v1/runs/{run_id}/approve", json={}), 404, "not_found")

    approved = api.post(f"/v1/runs/{run_id}/approve",
                        json={"comment": "fine", "arguments": {"amount": 70}})
    assert approved.status_code == 200 and approved.json()["status"] == "queued"
    assert_error(api.post(f"/v1/runs/{run_id}/reject", json={}), 409, "conflict")
    run = wait_for(api, run_id)
    assert run["status"] == "succeeded" and "wired 70 EUR" in run["output"]
    assert waitkit.logged(tmp_path / "effects.log") == ["wire 70"]
    assert run["waiting_for"] is None and run["waited_seconds"] > 0


def test_a_rejection_and_an_answer_over_http(served, tmp_path: Path) -> None:
    import waitkit

    api = served.client
    paid = run_id_of(api, "payer", "9")
    wait_for(api, paid, waiting)
    assert api.post(f"/v1/runs/{paid}/reject", json={"comment": "no"}).status_code == 200
    assert wait_for(api, paid)["output"] == "done: error: not done: a person rejected it: no"

    greeted = run_id_of(api, "greeter", "hi")
    run = wait_for(api, greeted, waiting)
    assert run["waiting_for"]["detail"]["question"] == "What is your name?"
    assert_error(api.post(f"/v1/runs/{greeted}/input", json={"answer": ""}), 422,
                 "invalid_request")
    assert api.post(f"/v1/runs/{greeted}/input", json={"answer": "Ada"}).status_code == 200
    assert wait_for(api, greeted)["output"] == "hello Ada"
    assert waitkit.logged(tmp_path / "effects.log") == ["greet Ada"]


def test_a_run_shows_its_children_and_a_child_its_parent(served) -> None:
    api = served.client
    parent_id = run_id_of(api, "manager", "search")
    parent = wait_for(api, parent_id)
    assert (parent["status"], parent["output"]) == (
        "succeeded", "the deployer says: done: deployed search")
    (child,) = parent["children"]
    assert (child["agent"], child["status"]) == ("deployer", "succeeded")
    assert api.get(f"/v1/runs/{child['id']}").json()["parent_run_id"] == parent_id


def test_cancelling_a_waiting_parent_cancels_its_waiting_child(served) -> None:
    api = served.client
    (Path(served.runtime.settings.agents_dir) / "deployer.yaml").write_text(
        "name: deployer\nmodel: scripted:waitkit:deployer_model\ntools: [waitkit:deploy]\n"
        "approval: {tools: [deploy]}\n")
    served.runtime.publish_agents()
    parent_id = run_id_of(api, "manager", "db")
    parent = wait_for(api, parent_id, lambda run: waiting(run) and run["children"])
    child_id = parent["children"][0]["id"]
    wait_for(api, child_id, waiting)
    assert api.post(f"/v1/runs/{parent_id}/cancel").status_code == 200
    child = api.get(f"/v1/runs/{child_id}").json()
    assert child["status"] == "cancelled"
    assert child["error"] == f"its parent run {parent_id} was cancelled"
