"""NUL in any text of a request is the same 422 on every backend, naming the
field; and no error ever comes back as plain text."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from homeo.api.app import create_app
from homeo.backends import open_backends
from homeo.config import Settings
from homeo.observe.metrics import Metrics

NUL_PROBLEM = "must not contain NUL (\\u0000) characters; remove them"


def assert_nul_refused(response: httpx.Response, *fields: str) -> None:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["error"]["type"] == "invalid_request"
    assert [d["field"] for d in body["error"]["details"]] == list(fields)
    assert {d["problem"] for d in body["error"]["details"]} == {NUL_PROBLEM}
    assert body["request_id"] == response.headers["x-request-id"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"agent": "echo", "input": "a\x00b"}, "body.input"),
        ({"agent": "ec\x00ho", "input": "hi"}, "body.agent"),
        ({"agent": "echo", "input": "hi", "idempotency_key": "k\x00"}, "body.idempotency_key"),
    ],
)
def test_nul_in_a_run_body_is_a_422_naming_the_field(
    serve: Callable[..., Any], backend_url: str, body: dict[str, str], field: str
) -> None:
    api = serve(with_worker=False, database_url=backend_url).client
    assert_nul_refused(api.post("/v1/runs", json=body), field)
    assert api.get("/v1/runs").json()["runs"] == []


def test_nul_in_query_and_path_params_is_a_422_naming_them(
    serve: Callable[..., Any], backend_url: str
) -> None:
    api = serve(with_worker=False, database_url=backend_url).client
    for name in ("status", "agent", "before"):
        assert_nul_refused(api.get("/v1/runs", params={name: "x\x00"}), f"query.{name}")
    assert_nul_refused(api.get("/v1/runs/run_%00"), "path.run_id")
    assert_nul_refused(api.get("/v1/runs/run_%00/events"), "path.run_id")
    assert_nul_refused(api.post("/v1/runs/run_%00/cancel"), "path.run_id")
    assert_nul_refused(api.post("/v1/keys/k%00/revoke"), "path.key_id")
    # Every string of a body, however deep, for every route.
    chat = {"model": "default", "messages": [{"role": "user", "content": "hi\x00"}]}
    assert_nul_refused(api.post("/v1/chat/completions", json=chat), "body.messages.0.content")
    # A body too deep to parse is the route's 400, not a crash of the check.
    deep = '{"agent": "echo", "input": "\\u0000", "x": ' + "[" * 5000 + "]" * 5000 + "}"
    response = api.post("/v1/runs", content=deep, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    # Text that merely spells the escape is fine.
    assert api.post("/v1/runs", json={"agent": "echo", "input": "\\u0000"}).status_code == 202


def test_an_unhandled_error_still_gets_the_json_error_shape(tmp_path: Path) -> None:
    backends = open_backends(f"sqlite:///{tmp_path / 'homeo.db'}")
    try:
        app = create_app(Settings(data_dir=tmp_path), backends, Metrics())

        @app.get("/broken")
        async def broken() -> None:
            raise RuntimeError("a bug")

        with TestClient(app, raise_server_exceptions=False) as client:
            response = client.get("/broken", headers={"x-request-id": "req-42"})
    finally:
        backends.close()
    assert response.status_code == 500
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["x-request-id"] == "req-42"
    assert response.json() == {
        "error": {"type": "internal_error",
                  "message": "internal error (RuntimeError) while serving this request; the"
                             " server log has the details under its request_id"},
        "request_id": "req-42",
    }
