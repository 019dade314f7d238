"""/v1/runs over real HTTP: uvicorn on 127.0.0.1, SQLite, an in-process worker
and the scripted agents of tests/support/scriptkit.py."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

DEADLINE_SECONDS = 30.0
FINAL = {"succeeded", "failed", "cancelled"}


def submit(api: httpx.Client, agent: str, text: str, **extra: Any) -> httpx.Response:
    return api.post("/v1/runs", json={"agent": agent, "input": text, **extra})


def run_id_of(api: httpx.Client, agent: str, text: str) -> str:
    response = submit(api, agent, text)
    assert response.status_code == 202, response.text
    return response.json()["id"]


def wait_for(api: httpx.Client, run_id: str, done: Any = lambda run: run["status"] in FINAL
             ) -> dict[str, Any]:
    """Poll the run until `done(run)`; fail after DEADLINE_SECONDS."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        run = api.get(f"/v1/runs/{run_id}").json()
        if done(run):
            return run
        assert time.monotonic() < deadline, f"run never got there: {run}"
        time.sleep(0.02)


def sse_events(lines: Iterator[str]) -> Iterator[tuple[str, Any]]:
    """(event, data) pairs from server-sent-event lines; comments are skipped."""
    event, data = None, []
    for line in lines:
        if line == "":
            if event is not None:
                yield event, json.loads("\n".join(data))
            event, data = None, []
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                event = value
            elif field == "data":
                data.append(value)


def assert_error(response: httpx.Response, status: int, kind: str) -> str:
    """The one error shape; returns its message."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["error"]["type"] == kind
    assert body["request_id"] == response.headers["x-request-id"]
    return body["error"]["message"]


# --- submitting and reading ----------------------------------------------------


def test_a_run_is_accepted_then_succeeds_with_every_step_recorded(api: httpx.Client) -> None:
    response = submit(api, "calc", "6*7")
    assert response.status_code == 202
    accepted = response.json()
    assert accepted == {"id": accepted["id"], "status": "queued"}
    assert re.fullmatch(r"run_[0-9a-f]{22}", accepted["id"])
    assert response.headers["location"] == f"/v1/runs/{accepted['id']}"

    run = wait_for(api, accepted["id"])
    assert (run["status"], run["output"], run["error"]) == ("succeeded", "6*7 = 42", None)
    assert (run["agent"], run["input"]) == ("calc", "6*7")
    assert run["usage"]["output_tokens"] > 0
    assert run["created_at"] <= run["started_at"] <= run["finished_at"]

    model, calculate, answer = run["steps"]
    assert [s["seq"] for s in run["steps"]] == [0, 1, 2]
    assert (model["kind"], model["name"], model["status"]) == ("model", "model", "succeeded")
    assert model["input"]["model"] == "scripted"
    assert model["input"]["last"] == {"role": "user", "content": "6*7"}
    assert model["output"]["tool_calls"][0]["name"] == "calculate"
    assert (calculate["kind"], calculate["name"], calculate["status"]) == (
        "tool", "calculate", "succeeded")
    assert calculate["input"]["arguments"] == {"expression": "6*7"}
    assert calculate["output"] == {"result": 42}
    assert answer["output"]["content"] == "6*7 = 42"
    for step in run["steps"]:
        assert step["attempts"] == 1
        assert step["error"] is None
        assert step["started_at"] <= step["finished_at"]
        assert step["duration_ms"] >= 0


def test_the_same_idempotency_key_gives_the_same_run_with_200(api: httpx.Client) -> None:
    first = submit(api, "echo", "once", idempotency_key="key-1")
    again = submit(api, "echo", "once", idempotency_key="key-1")
    other = submit(api, "echo", "once", idempotency_key="key-2")
    assert (first.status_code, again.status_code, other.status_code) == (202, 200, 202)
    assert again.json()["id"] == first.json()["id"] != other.json()["id"]
    assert again.headers["location"] == first.headers["location"]
    run = wait_for(api, first.json()["id"])
    assert run["idempotency_key"] == "key-1"
    assert [s["name"] for s in run["steps"]] == ["model"]  # it ran once
    listed = api.get("/v1/runs", params={"agent": "echo"}).json()["runs"]
    assert sorted(r["id"] for r in listed) == sorted([first.json()["id"], other.json()["id"]])


def test_the_same_idempotency_key_for_another_request_is_a_409(api: httpx.Client) -> None:
    first = submit(api, "echo", "once", idempotency_key="key-9")
    clash = submit(api, "echo", "twice", idempotency_key="key-9")
    assert clash.status_code == 409
    error = clash.json()["error"]
    assert error["type"] == "conflict"
    assert error["message"].startswith(
        f"idempotency key 'key-9' was already used for run {first.json()['id']} with a"
        " different input")


def test_listing_filters_by_status_and_agent(api: httpx.Client) -> None:
    echoes = [run_id_of(api, "echo", f"hello {n}") for n in range(2)]
    broken = run_id_of(api, "broken", "anything")
    calc = run_id_of(api, "calc", "1+1")
    for run_id in [*echoes, broken, calc]:
        wait_for(api, run_id)

    def ids(**params: str) -> list[str]:
        response = api.get("/v1/runs", params=params)
        assert response.status_code == 200, response.text
        return [run["id"] for run in response.json()["runs"]]

    assert ids(status="failed") == [broken]
    assert sorted(ids(agent="echo")) == sorted(echoes)
    assert ids(status="succeeded", agent="calc") == [calc]
    assert ids(status="failed", agent="echo") == []
    assert sorted(ids(status="succeeded")) == sorted([*echoes, calc])
    everything = api.get("/v1/runs").json()
    assert sorted(r["id"] for r in everything["runs"]) == sorted([*echoes, broken, calc])
    assert everything["next_before"] is None
    assert "steps" not in everything["runs"][0]


def test_listing_pages_with_next_before(api: httpx.Client) -> None:
    for n in range(5):
        run_id_of(api, "echo", f"page {n}")
    newest_first = [run["id"] for run in api.get("/v1/runs", params={"limit": 500}).json()["runs"]]
    assert len(newest_first) == 5
    assert newest_first == sorted(newest_first, reverse=True)

    pages: list[list[str]] = []
    params: dict[str, Any] = {"limit": 2}
    while True:
        page = api.get("/v1/runs", params=params).json()
        pages.append([run["id"] for run in page["runs"]])
        if page["next_before"] is None:
            break
        assert page["next_before"] == pages[-1][-1]
        params["before"] = page["next_before"]
        assert len(pages) < 10, pages
    assert [len(page) for page in pages] == [2, 2, 1]
    assert [run_id for page in pages for run_id in page] == newest_first


# --- failures the engine reports ---------------------------------------------


def test_a_model_that_refuses_fails_the_run_with_its_message(api: httpx.Client) -> None:
    run = wait_for(api, run_id_of(api, "broken", "please"))
    assert run["status"] == "failed"
    assert run["output"] is None
    assert "scripted refusal: this model never answers" in run["error"]
    (step,) = run["steps"]
    assert (step["kind"], step["status"], step["attempts"]) == ("model", "failed", 1)
    assert "scripted refusal" in step["error"]


def test_a_call_to_a_tool_the_agent_lacks_goes_back_to_the_model(api: httpx.Client) -> None:
    run = wait_for(api, run_id_of(api, "stray", "tidy up"))
    assert run["status"] == "succeeded", run["error"]
    model, stray, answer = run["steps"]
    assert (stray["kind"], stray["name"], stray["status"]) == ("tool", "delete_everything",
                                                               "succeeded")
    refusal = "tool 'delete_everything' is not available to this agent (allowed: calculate)"
    assert stray["output"] == {"error": refusal}
    assert run["output"] == f"recovered after: error: {refusal}"
    assert answer["kind"] == "model"


# --- cancelling ----------------------------------------------------------------


def test_cancelling_a_queued_run(serve) -> None:
    api = serve(with_worker=False).client
    run_id = run_id_of(api, "echo", "never runs")
    response = api.post(f"/v1/runs/{run_id}/cancel")
    assert response.status_code == 200
    assert (response.json()["id"], response.json()["status"]) == (run_id, "cancelled")
    assert api.get(f"/v1/runs/{run_id}").json()["status"] == "cancelled"
    message = assert_error(api.post(f"/v1/runs/{run_id}/cancel"), 409, "conflict")
    assert message == f"run {run_id} already cancelled; nothing to cancel"


def test_cancelling_a_running_run_stops_it_before_its_next_step(served) -> None:
    import scriptkit

    api = served.client
    gate = "cancel-me"
    run_id = run_id_of(api, "holder", gate)
    try:
        wait_for(api, run_id, lambda run: len(run["steps"]) == 2)  # inside the `hold` tool
        response = api.post(f"/v1/runs/{run_id}/cancel")
        assert (response.status_code, response.json()["status"]) == (200, "cancelled")
    finally:
        scriptkit.release(gate)
    queue = served.runtime.backends.queue
    deadline = time.monotonic() + DEADLINE_SECONDS
    while queue.find("default", f"run:{run_id}").status != "done":
        assert time.monotonic() < deadline, "the cancelled run's job never settled"
        time.sleep(0.02)
    run = api.get(f"/v1/runs/{run_id}").json()
    assert run["status"] == "cancelled"
    assert [(s["name"], s["status"]) for s in run["steps"]] == [
        ("model", "succeeded"), ("hold", "succeeded")]  # no model turn after the cancel


def test_cancelling_a_finished_run_is_a_conflict(api: httpx.Client) -> None:
    run_id = run_id_of(api, "echo", "quick")
    wait_for(api, run_id)
    message = assert_error(api.post(f"/v1/runs/{run_id}/cancel"), 409, "conflict")
    assert message == f"run {run_id} already succeeded; nothing to cancel"
    assert api.get(f"/v1/runs/{run_id}").json()["status"] == "succeeded"


def test_cancelling_an_unknown_run_is_404(api: httpx.Client) -> None:
    message = assert_error(api.post("/v1/runs/run_0000000000000000000000/cancel"), 404,
                           "not_found")
    assert message == "no run 'run_0000000000000000000000'"


# --- events ------------------------------------------------------------------


def test_events_stream_steps_and_status_until_the_end(served) -> None:
    import scriptkit

    api = served.client
    gate = "stream-me"
    run_id = run_id_of(api, "holder", gate)
    events: list[tuple[str, Any]] = []
    try:
        with api.stream("GET", f"/v1/runs/{run_id}/events") as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            for event, data in sse_events(response.iter_lines()):
                events.append((event, data))
                if event == "step" and data["name"] == "hold" and data["status"] == "running":
                    scriptkit.release(gate)  # the run goes on only once we have seen it wait
    finally:
        scriptkit.release(gate)

    assert events[-1] == ("end", {"id": run_id, "status": "succeeded"})
    assert [name for name, _ in events].count("end") == 1
    statuses = [data["status"] for name, data in events if name == "run"]
    assert statuses[-1] == "succeeded"
    assert statuses == sorted(set(statuses), key=statuses.index)  # each change sent once
    assert all(data["id"] == run_id for name, data in events if name == "run")
    steps = [(d["seq"], d["name"], d["status"]) for name, d in events if name == "step"]
    assert (1, "hold", "running") in steps
    for seq, name in ((0, "model"), (1, "hold"), (2, "model")):
        assert (seq, name, "succeeded") in steps
    final_run = [data for name, data in events if name == "run"][-1]
    assert final_run["output"] == f"released {gate}"


def test_events_of_a_finished_run_replay_it_and_end(api: httpx.Client) -> None:
    run_id = run_id_of(api, "echo", "done already")
    wait_for(api, run_id)
    response = api.get(f"/v1/runs/{run_id}/events")
    events = list(sse_events(iter(response.text.split("\n"))))
    assert [(name, data.get("status")) for name, data in events] == [
        ("step", "succeeded"), ("run", "succeeded"), ("end", "succeeded")]
    assert events[0][1]["output"]["content"] == "echo: done already"


def test_events_of_an_unknown_run_is_404(api: httpx.Client) -> None:
    response = api.get("/v1/runs/run_0000000000000000000000/events")
    assert assert_error(response, 404, "not_found") == "no run 'run_0000000000000000000000'"


# --- request ids ---------------------------------------------------------------


def test_a_given_request_id_is_echoed_and_stored_on_the_run(api: httpx.Client) -> None:
    response = api.post("/v1/runs", json={"agent": "echo", "input": "traced"},
                        headers={"X-Request-ID": "trace-42.a:b_c"})
    assert response.headers["x-request-id"] == "trace-42.a:b_c"
    run = wait_for(api, response.json()["id"])
    assert run["request_id"] == "trace-42.a:b_c"


@pytest.mark.parametrize("given", [None, "has spaces", "x" * 129, ""])
def test_a_request_id_is_generated_when_missing_or_unusable(
    api: httpx.Client, given: str | None
) -> None:
    headers = {} if given is None else {"X-Request-ID": given}
    response = api.post("/v1/runs", json={"agent": "echo", "input": "traced"}, headers=headers)
    generated = response.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    run = api.get(f"/v1/runs/{response.json()['id']}").json()
    assert run["request_id"] == generated
    other = api.get("/healthz", headers=headers).headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", other) and other != generated


# --- bad requests --------------------------------------------------------------


def test_malformed_json_is_400(api: httpx.Client) -> None:
    response = api.post("/v1/runs", content=b'{"agent": "echo", ',
                        headers={"content-type": "application/json"})
    message = assert_error(response, 400, "bad_request")
    assert message.startswith("request body is not valid JSON")


@pytest.mark.parametrize(
    ("body", "field", "problem"),
    [
        ({"agent": "echo"}, "body.input", "Field required"),
        ({"input": "hi"}, "body.agent", "Field required"),
        ({"agent": "echo", "input": 5}, "body.input", "Input should be a valid string"),
        ({"agent": ["echo"], "input": "hi"}, "body.agent", "Input should be a valid string"),
        ({"agent": "echo", "input": ""}, "body.input", "String should have at least 1 character"),
        ({"agent": "echo", "input": "hi", "colour": "red"}, "body.colour",
         "Extra inputs are not permitted"),
        ({"agent": "echo", "input": "hi", "idempotency_key": "k" * 201}, "body.idempotency_key",
         "String should have at most 200 characters"),
    ],
)
def test_a_wrong_field_is_422_naming_it(
    api: httpx.Client, body: dict[str, Any], field: str, problem: str
) -> None:
    response = api.post("/v1/runs", json=body)
    message = assert_error(response, 422, "invalid_request")
    assert message == f"invalid request: {field}: {problem}"
    assert response.json()["error"]["details"] == [{"field": field, "problem": problem}]
    assert api.get("/v1/runs").json()["runs"] == []


def test_a_json_body_that_is_not_an_object_is_422(api: httpx.Client) -> None:
    message = assert_error(api.post("/v1/runs", json=["echo", "hi"]), 422, "invalid_request")
    assert message.startswith("invalid request: body:")


def test_an_unknown_agent_is_404_naming_the_known_ones(api: httpx.Client) -> None:
    message = assert_error(submit(api, "nobody", "hi"), 404, "not_found")
    assert message == ("unknown agent 'nobody'; agents defined: "
                       "broken, calc, echo, holder, stray")


def test_an_input_over_max_input_chars_is_413(serve) -> None:
    api = serve(max_input_chars=100).client
    assert submit(api, "echo", "x" * 100).status_code == 202
    message = assert_error(submit(api, "echo", "x" * 101), 413, "payload_too_large")
    assert message == "input is 101 characters; the limit is 100"


def test_a_body_over_max_request_bytes_is_413(serve) -> None:
    api = serve(max_request_bytes=2048).client
    body = json.dumps({"agent": "echo", "input": "x" * 3000}).encode()
    response = api.post("/v1/runs", content=body, headers={"content-type": "application/json"})
    message = assert_error(response, 413, "payload_too_large")
    assert message == "request body is larger than 2048 bytes"
    assert api.get("/v1/runs").json()["runs"] == []


def test_a_streamed_body_over_max_request_bytes_is_413(serve) -> None:
    """No Content-Length (chunked): the limit is enforced while the body arrives."""
    api = serve(max_request_bytes=2048).client
    body = json.dumps({"agent": "echo", "input": "x" * 3000}).encode()

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 500):
            yield body[start:start + 500]

    response = api.post("/v1/runs", content=chunks(), headers={"content-type": "application/json"})
    message = assert_error(response, 413, "payload_too_large")
    assert message == "request body is larger than 2048 bytes"
    assert api.get("/v1/runs").json()["runs"] == []


@pytest.mark.parametrize("run_id", ["run_0000000000000000000000", "not-a-run-id"])
def test_an_unknown_run_is_404(api: httpx.Client, run_id: str) -> None:
    assert assert_error(api.get(f"/v1/runs/{run_id}"), 404, "not_found") == f"no run {run_id!r}"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "0"}, "query.limit"),
        ({"limit": "501"}, "query.limit"),
        ({"limit": "ten"}, "query.limit"),
        ({"before": "run_xyz"}, "query.before"),
        ({"status": "done"}, "query.status"),
        ({"agent": "a" * 65}, "query.agent"),
    ],
)
def test_a_bad_list_parameter_is_422_naming_it(
    api: httpx.Client, params: dict[str, str], field: str
) -> None:
    response = api.get("/v1/runs", params=params)
    message = assert_error(response, 422, "invalid_request")
    assert message.startswith(f"invalid request: {field}: ")
    assert [d["field"] for d in response.json()["error"]["details"]] == [field]


def test_a_runs_cost_comes_from_the_price_table_and_reaches_the_metrics(serve) -> None:
    # The scripted model counts one output token per word or argument: the tool
    # call is 1 token, "6*7 = 42" is 3, so 4 tokens at $250,000 per million is $1.
    price = {"input_per_million": 1.0, "output_per_million": 250_000.0}
    api = serve(prices={"scripted:scriptkit:calc_model": price}).client
    run = wait_for(api, run_id_of(api, "calc", "6*7"))
    assert run["status"] == "succeeded"
    assert run["usage"] == {"input_tokens": 0, "output_tokens": 4, "cost_usd": 1.0}
    assert [step["cost_usd"] for step in run["steps"]] == [0.25, 0.0, 0.75]
    metrics = api.get("/metrics").text
    labels = 'model="scripted"'  # the model's name; no tenant without HOMEO_METRICS_TOKEN
    assert f"homeo_llm_cost_usd_total{{{labels}}} 1.0" in metrics
    assert re.search(r'homeo_llm_tokens_total\{direction="output",' + labels + r"\} 4\.0", metrics)


def test_a_submission_on_a_disk_below_the_floor_is_a_507_saying_why(serve) -> None:  # noqa: ANN001
    served = serve(min_free_disk=2**60)  # more free bytes than any disk has
    response = submit(served.client, "calc", "6*7")
    assert response.status_code == 507, response.text
    error = response.json()["error"]
    assert error["type"] == "insufficient_storage"
    assert "HOMEO_MIN_FREE_DISK" in error["message"]
    assert "no new runs are accepted" in error["message"]
    assert served.client.get("/v1/runs").json()["runs"] == []
