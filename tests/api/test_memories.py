"""/v1/memories over real HTTP: list, search, get and delete the tenant's
agent memories; and tenant isolation on every memory and collection route
(the test fails if a route is added under either without being listed here)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import httpx
import pytest

from homeo.memory.memories import Memories

sys.path.insert(0, str(Path(__file__).parent.parent / "support"))
from hashembed import HashingEmbedder  # noqa: E402

from tests.api.conftest import Served, add_key  # noqa: E402

TENANT = "default"


@pytest.fixture
def homeo(served: Served) -> Served:
    # A light real embedding model (the hashing trick) for the app and the test.
    served.runtime.models.add("embedding", HashingEmbedder())
    return served


def memories(served: Served) -> Memories:
    made = served.runtime.memories()
    assert made is not None
    return made


def remember(served: Served, text: str, scope: str = "agent:echo", tenant: str = TENANT) -> int:
    decision = asyncio.run(memories(served).remember(tenant, scope, text))
    assert decision.memory is not None, decision
    return decision.memory.id


def test_memories_are_listed_searched_fetched_and_deleted(homeo: Served) -> None:
    api = homeo.client
    server = remember(homeo, "The deploy server is db-7")
    remember(homeo, "The deploy server is db-9")  # supersedes db-7
    lunch = remember(homeo, "Team lunch is on the rooftop terrace", scope="tenant")
    listed = api.get("/v1/memories").json()
    assert [m["text"] for m in listed["memories"]] == [
        "Team lunch is on the rooftop terrace", "The deploy server is db-9"]
    every = api.get("/v1/memories", params={"superseded": "true"}).json()["memories"]
    assert every[-1]["id"] == server and every[-1]["superseded_by"] is not None
    scoped = api.get("/v1/memories", params={"scope": "tenant"}).json()["memories"]
    assert [m["id"] for m in scoped] == [lunch]
    page = api.get("/v1/memories", params={"limit": 1}).json()
    assert page["next_before"] == lunch
    hits = api.get("/v1/memories/search", params={"q": "deploy server"}).json()["results"]
    assert hits[0]["text"] == "The deploy server is db-9" and hits[0]["strength"] > 0
    assert all(hit["id"] != server for hit in hits)  # superseded: not live
    assert api.get(f"/v1/memories/{lunch}").json()["scope"] == "tenant"
    assert api.delete(f"/v1/memories/{lunch}").status_code == 204
    assert api.get(f"/v1/memories/{lunch}").status_code == 404
    assert api.delete(f"/v1/memories/{lunch}").status_code == 404
    assert api.get("/v1/memories/search", params={"q": "rooftop"}).json()["results"] == []


@pytest.mark.parametrize("path,params,words", [
    ("/v1/memories", {"scope": "agents:x"}, "scope"),
    ("/v1/memories", {"limit": 0}, "limit"),
    ("/v1/memories/search", {}, "q"),
    ("/v1/memories/search", {"q": "x", "k": 0}, "k"),
    ("/v1/memories/search", {"q": "   "}, "query is empty"),
    ("/v1/memories/abc", {}, "memory_id"),
])
def test_bad_input_is_a_clear_4xx(homeo: Served, path: str, params: dict, words: str) -> None:
    answer = homeo.client.get(path, params=params)
    assert 400 <= answer.status_code < 500, answer.text
    assert words in answer.json()["error"]["message"]


# Every memory and collection route, as another tenant calls it.
def isolation_calls(memory_id: int, document_id: str, ingestion_id: str = "ing_none"
                    ) -> list[tuple[str, str, dict]]:
    doc = f"/v1/collections/kb/documents/{document_id}"
    return [
        ("get", f"/v1/collections/kb/ingestions/{ingestion_id}", {}),
        ("get", "/v1/memories", {}),
        ("get", "/v1/memories/search?q=deploy", {}),
        ("get", f"/v1/memories/{memory_id}", {}),
        ("delete", f"/v1/memories/{memory_id}", {}),
        ("get", "/v1/collections", {}),
        ("delete", "/v1/collections/kb", {}),
        ("post", "/v1/collections/kb/documents", {"json": {"text": "Globex sells anvils."}}),
        ("get", "/v1/collections/kb/documents", {}),
        ("get", doc, {}),
        ("put", doc, {"json": {"text": "Replaced by globex."}}),
        ("delete", doc, {}),
        ("get", "/v1/collections/kb/search?q=deploy", {}),
    ]


def _route_of(path: str) -> str:
    parts = path.split("?")[0].split("/")
    names = {3: {"memories": "{memory_id}", "collections": "{name}"}}
    shaped = []
    for index, part in enumerate(parts):
        if index == 3 and part not in ("search",):
            part = names[3][parts[2]]
        if index == 5 and parts[4] == "documents":
            part = "{document_id}"
        if index == 5 and parts[4] == "ingestions":
            part = "{ingestion_id}"
        shaped.append(part)
    return "/".join(shaped)


def test_every_memory_and_collection_route_is_in_the_isolation_test(homeo: Served) -> None:
    from homeo.api.app import create_app

    runtime = homeo.runtime
    app = create_app(runtime.settings, runtime.backends, runtime.metrics)
    routes = {(method, path) for path, methods in app.openapi()["paths"].items()
              if path.startswith(("/v1/memories", "/v1/collections")) for method in methods}
    covered = {(method, _route_of(path)) for method, path, _ in isolation_calls(1, "d")}
    assert routes == covered


def test_another_tenants_memories_and_collections_are_never_reached(homeo: Served) -> None:
    api = homeo.client
    memory_id = remember(homeo, "The deploy server is db-9")
    made = api.post("/v1/collections/kb/documents", json={"text": "Deploy to db-9 on Fridays."})
    assert made.status_code == 201, made.text
    document_id = made.json()["id"]
    # Longer than HOMEO_MEMORY_INGEST_INLINE_CHARS: accepted as an ingestion.
    long_text = "Deploy to db-9 on Fridays. " * 1000
    accepted = api.post("/v1/collections/kb/documents", json={"text": long_text})
    assert accepted.status_code == 202, accepted.text
    with homeo.client_for(add_key(homeo, "globex")) as other:
        for method, path, kwargs in isolation_calls(memory_id, document_id,
                                                    accepted.json()["id"]):
            answer = getattr(other, method)(path, **kwargs)
            text = answer.text
            if answer.status_code == 404:
                continue
            # Listings and searches answer, with none of the default tenant's data;
            # a POST makes globex's own collection of the same name.
            assert answer.status_code in (200, 201), (method, path, text)
            assert "db-9" not in text and "deploy" not in text.lower(), (method, path, text)
        assert other.get("/v1/memories").json()["memories"] == []
        hits = other.get("/v1/collections/kb/search", params={"q": "deploy"}).json()
        assert [h["text"] for h in hits["results"]] == ["Globex sells anvils."]
    # The default tenant's data is untouched.
    assert api.get(f"/v1/memories/{memory_id}").json()["text"] == "The deploy server is db-9"
    assert api.get(f"/v1/collections/kb/documents/{document_id}").json()["text"] == (
        "Deploy to db-9 on Fridays.")
    hits = asyncio.run(memories(homeo).recall(TENANT, None, "deploy server"))
    assert [hit.memory.id for hit in hits] == [memory_id]
