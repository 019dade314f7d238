"""/v1/runs/{id}/steps/{seq} and /v1/runs/{id}/fork over real HTTP, with an
in-process worker and the scripted agents of tests/support/scriptkit.py."""

from __future__ import annotations

from homeo.engine import prune
from tests.api.conftest import Served, add_key
from tests.api.test_runs import assert_error, run_id_of, wait_for


def test_the_state_at_each_step_and_a_fork_that_skips_the_done_steps(served: Served) -> None:
    api = served.client
    run_id = run_id_of(api, "calc", "6*7")
    assert wait_for(api, run_id)["status"] == "succeeded"

    tool_step = api.get(f"/v1/runs/{run_id}/steps/1")
    assert tool_step.status_code == 200, tool_step.text
    body = tool_step.json()
    assert (body["run_id"], body["step"]["seq"], body["step"]["name"]) == (run_id, 1, "calculate")
    assert body["next"] == "model"
    assert [m["role"] for m in body["state"]["messages"]] == ["user", "assistant", "tool"]
    last = api.get(f"/v1/runs/{run_id}/steps/2").json()
    assert last["next"] == "__end__" and last["state"]["output"] == "6*7 = 42"

    forked = api.post(f"/v1/runs/{run_id}/fork",
                      json={"from_step": 1, "state": {"data": {"why": "retry"}},
                            "idempotency_key": "again"})
    assert forked.status_code == 202, forked.text
    fork = forked.json()
    assert fork["forked_from"] == {"run_id": run_id, "step": 1}
    assert forked.headers["location"] == f"/v1/runs/{fork['id']}"
    same = api.post(f"/v1/runs/{run_id}/fork", json={"from_step": 1, "idempotency_key": "again"})
    assert same.status_code == 200 and same.json()["id"] == fork["id"]
    done = wait_for(api, fork["id"])
    assert (done["status"], done["output"], done["forked_from"]) == (
        "succeeded", "6*7 = 42", {"run_id": run_id, "step": 1})
    assert [step["seq"] for step in done["steps"]] == [2]  # the tool did not run again
    state = api.get(f"/v1/runs/{fork['id']}/steps/2").json()["state"]
    assert state["data"] == {"why": "retry"}
    message = assert_error(api.get(f"/v1/runs/{fork['id']}/steps/1"), 404, "not_found")
    assert f"forked from run {run_id} after step 1" in message


def test_steps_and_forks_say_what_is_wrong(served: Served) -> None:
    api = served.client
    run_id = run_id_of(api, "calc", "6*7")
    wait_for(api, run_id)
    other = served.client_for(add_key(served, "globex"))
    assert_error(other.get(f"/v1/runs/{run_id}/steps/0"), 404, "not_found")
    assert_error(other.post(f"/v1/runs/{run_id}/fork", json={"from_step": 0}), 404, "not_found")
    message = assert_error(api.get(f"/v1/runs/{run_id}/steps/7"), 404, "not_found")
    assert message == f"run {run_id} has no step 7; its steps are 0 to 2"
    message = assert_error(api.post(f"/v1/runs/{run_id}/fork", json={"from_step": 2}), 409,
                           "conflict")
    assert "step 2 was the last of run" in message
    message = assert_error(api.post(f"/v1/runs/{run_id}/fork",
                                    json={"from_step": 0, "state": {"mood": 1}}),
                           422, "invalid_request")
    assert "no field 'mood'" in message
    assert_error(api.post(f"/v1/runs/{run_id}/fork", json={"from_step": -1}), 422,
                 "invalid_request")

    broken = run_id_of(api, "broken", "x")
    assert wait_for(api, broken)["status"] == "failed"
    failed = api.get(f"/v1/runs/{broken}/steps/0").json()
    assert failed["step"]["status"] == "failed" and failed["state"] is None
    message = assert_error(api.post(f"/v1/runs/{broken}/fork", json={"from_step": 0}), 409,
                           "conflict")
    assert "only a step that succeeded" in message

    pruned = prune.prune(served.runtime.backends.store, older_than=0.0)
    assert pruned.runs == 2
    message = assert_error(api.get(f"/v1/runs/{run_id}/steps/0"), 410, "gone")
    assert "were pruned at" in message and "final state, after step 2, is kept" in message
    assert_error(api.post(f"/v1/runs/{run_id}/fork", json={"from_step": 1}), 410, "gone")
    assert api.get(f"/v1/runs/{run_id}/steps/2").json()["state"]["output"] == "6*7 = 42"
