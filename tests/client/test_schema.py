"""The SDK's models and request arguments against the live app's /openapi.json:
the same fields, of the same JSON types, so the two cannot drift apart."""

from __future__ import annotations

import inspect
import json
from typing import Any

import pytest

from homeo.client import Homeo, models
from tests.api.conftest import Served

# SDK model -> the API schema it mirrors.
MIRRORS: dict[type[models.Model], str] = {
    models.Run: "RunView",
    models.RunDetail: "RunDetail",
    models.Step: "StepView",
    models.Child: "ChildView",
    models.RunAccepted: "RunAccepted",
    models.RunPage: "RunPage",
    models.StepState: "StepStateView",
    models.Agent: "AgentView",
    models.AgentVersions: "VersionsView",
    models.AgentVersion: "VersionKPIs",
    models.Estimate: "Estimate",
    models.Key: "KeyView",
    models.CreatedKey: "CreatedKey",
    models.Collection: "CollectionView",
    models.Document: "DocumentView",
    models.DocumentPage: "DocumentPage",
    models.Ingestion: "IngestionView",
    models.Hit: "HitView",
    models.SearchResults: "SearchResults",
}
NAMES = {cls.__name__: name for cls, name in MIRRORS.items()}
IGNORED = {"title", "description", "default", "examples"}


def shape(schema: Any, names: dict[str, str]) -> Any:
    """A JSON schema without its prose and defaults, its $refs by API schema name."""
    if isinstance(schema, list):
        parts = [shape(part, names) for part in schema]
        return sorted(parts, key=lambda part: json.dumps(part, sort_keys=True))
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return {"$ref": names.get(name, name)}
    return {key: shape(value, names) for key, value in schema.items() if key not in IGNORED}


@pytest.fixture
def openapi(served: Served) -> dict[str, Any]:
    return served.client.get("/openapi.json").json()["components"]["schemas"]


@pytest.mark.parametrize("cls", list(MIRRORS), ids=lambda cls: cls.__name__)
def test_each_model_has_the_fields_and_types_of_its_api_schema(
    cls: type[models.Model], openapi: dict[str, Any]
) -> None:
    api = openapi[MIRRORS[cls]]["properties"]
    sdk = cls.model_json_schema(mode="serialization", ref_template="{model}")["properties"]
    assert set(sdk) == set(api), f"{cls.__name__} vs {MIRRORS[cls]}"
    for field in api:
        assert shape(sdk[field], NAMES) == shape(api[field], {}), f"{cls.__name__}.{field}"


def _arguments(method: Any, *skip: str) -> set[str]:
    return {name for name in inspect.signature(method).parameters
            if name not in ("self", *skip)}


def test_each_method_takes_the_fields_of_its_request_body(openapi: dict[str, Any]) -> None:
    homeo = Homeo("http://127.0.0.1:1", "unused")  # never sends: only signatures are read
    try:
        bodies = {
            "RunRequest": _arguments(homeo.runs.submit),
            "ForkRequest": _arguments(homeo.runs.fork, "run_id"),
            "Approval": _arguments(homeo.runs.approve, "run_id"),
            "Rejection": _arguments(homeo.runs.reject, "run_id"),
            "PersonInput": _arguments(homeo.runs.input, "run_id"),
            "NewKey": _arguments(homeo.keys.create),
        }
    finally:
        homeo.close()
    for schema, arguments in bodies.items():
        assert arguments == set(openapi[schema]["properties"]), schema


def test_every_api_route_of_the_sdk_resources_is_covered(served: Served) -> None:
    """A new route under /v1/runs, /v1/agents, /v1/keys or /v1/collections fails
    this until the SDK calls it."""
    paths = served.client.get("/openapi.json").json()["paths"]
    routes = {(method.upper(), path) for path, item in paths.items() for method in item
              if path.startswith(("/v1/runs", "/v1/agents", "/v1/keys", "/v1/collections"))}
    covered = {
        ("POST", "/v1/runs"), ("GET", "/v1/runs"), ("GET", "/v1/runs/{run_id}"),
        ("GET", "/v1/runs/{run_id}/steps/{seq}"), ("POST", "/v1/runs/{run_id}/fork"),
        ("POST", "/v1/runs/{run_id}/cancel"), ("POST", "/v1/runs/{run_id}/approve"),
        ("POST", "/v1/runs/{run_id}/reject"), ("POST", "/v1/runs/{run_id}/input"),
        ("GET", "/v1/runs/{run_id}/events"), ("GET", "/v1/agents"),
        ("GET", "/v1/agents/{name}/versions"), ("GET", "/v1/keys"),
        ("POST", "/v1/keys"), ("POST", "/v1/keys/{key_id}/revoke"), ("GET", "/v1/collections"),
        ("DELETE", "/v1/collections/{name}"), ("POST", "/v1/collections/{name}/documents"),
        ("GET", "/v1/collections/{name}/documents"),
        ("GET", "/v1/collections/{name}/documents/{document_id}"),
        ("PUT", "/v1/collections/{name}/documents/{document_id}"),
        ("DELETE", "/v1/collections/{name}/documents/{document_id}"),
        ("GET", "/v1/collections/{name}/search"),
        ("GET", "/v1/collections/{name}/ingestions/{ingestion_id}"),
    }
    assert routes == covered
