"""Queued ingestion over real HTTP, with minilm in process and the app's own
worker: a document longer than HOMEO_MEMORY_INGEST_INLINE_CHARS is a 202 with
a status URL that shows progress until it is searchable; the same upload
again is the same ingestion; bad input is a clear 4xx; another tenant's
ingestion is a 404."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from tests.api.conftest import Served, add_key

pytestmark = pytest.mark.slow  # loads the embedding model

INLINE_CHARS = 300
DEADLINE_SECONDS = 120.0
LOG = "\n\n".join(f"Day {n}: the lighthouse keeper trimmed the wick and logged the weather,"
                  f" a {'calm' if n % 2 else 'stormy'} sea by evening." for n in range(40))


@pytest.fixture
def served(serve: Callable[..., Served]) -> Served:
    return serve(memory_ingest_inline_chars=INLINE_CHARS, memory_embed_batch=4)


def finished(api: httpx.Client, status_url: str) -> dict:
    """The ingestion once it is done or failed (polled, with a deadline)."""
    end = time.monotonic() + DEADLINE_SECONDS
    while True:
        now = api.get(status_url)
        assert now.status_code == 200, now.text
        view = now.json()
        if view["status"] in ("done", "failed"):
            return view
        if view["chunks_total"] is not None:
            assert 0 <= view["chunks_done"] <= view["chunks_total"]
        assert time.monotonic() < end, f"ingestion not finished: {view}"
        time.sleep(0.05)


def test_a_long_document_is_accepted_then_indexed(api: httpx.Client) -> None:
    accepted = api.post("/v1/collections/kb/documents",
                        json={"text": LOG, "title": "Log", "source": "log.md"})
    assert accepted.status_code == 202, accepted.text
    view = accepted.json()
    assert view["status_url"] == f"/v1/collections/kb/ingestions/{view['id']}"
    assert accepted.headers["location"] == view["status_url"]
    assert view["status"] in ("queued", "indexing", "done") and view["source"] == "log.md"
    done = finished(api, view["status_url"])
    assert done["status"] == "done" and done["error"] is None
    assert done["chunks_done"] == done["chunks_total"] > 4
    document = api.get(f"/v1/collections/kb/documents/{done['document_id']}").json()
    assert document["text"] == LOG and document["chunks"] == done["chunks_total"]
    assert document["title"] == "Log"
    hits = api.get("/v1/collections/kb/search", params={"q": "Day 17", "mode": "text"}).json()
    assert hits["results"][0]["document_id"] == done["document_id"]
    again = api.post("/v1/collections/kb/documents",
                     json={"text": LOG, "title": "Log", "source": "log.md"})
    assert again.status_code == 202 and again.json()["id"] == view["id"]
    assert again.json()["status"] == "done"
    assert api.get("/v1/collections").json()["collections"][0]["documents"] == 1
    short = api.post("/v1/collections/kb/documents", json={"text": "Gulls cry at dawn."})
    assert short.status_code == 201 and short.json()["chunks"] == 1  # short: indexed at once


def test_a_long_replacement_is_queued_and_replaces_the_document_when_done(
        api: httpx.Client) -> None:
    made = api.post("/v1/collections/kb/documents", json={"text": "Gulls cry at dawn."}).json()
    accepted = api.put(f"/v1/collections/kb/documents/{made['id']}", json={"text": LOG})
    assert accepted.status_code == 202, accepted.text
    done = finished(api, accepted.json()["status_url"])
    assert done["status"] == "done" and done["document_id"] == made["id"]
    assert api.get(f"/v1/collections/kb/documents/{made['id']}").json()["text"] == LOG
    gulls = api.get("/v1/collections/kb/search", params={"q": "gulls", "mode": "text"}).json()
    assert gulls["results"] == []
    assert api.get("/v1/collections").json()["collections"][0]["documents"] == 1


def test_a_long_file_is_queued_too(api: httpx.Client) -> None:
    accepted = api.post("/v1/collections/files/documents",
                        files={"file": ("log.txt", LOG.encode())})
    assert accepted.status_code == 202, accepted.text
    done = finished(api, accepted.json()["status_url"])
    assert done["status"] == "done" and done["source"] == "log.txt"


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "words"), [
    ("get", "/v1/collections/kb/ingestions/ing_nope", {}, 404, "no ingestion 'ing_nope'"),
    ("post", "/v1/collections/kb/documents", {"json": {"text": " " * (INLINE_CHARS + 1)}}, 400,
     "no text"),
    ("post", "/v1/collections/bad name/documents", {"json": {"text": LOG}}, 400,
     "collection name"),
    ("post", "/v1/collections/kb/documents", {"json": {"text": LOG, "format": "pdf"}}, 422,
     "format"),
])
def test_bad_input_is_a_clear_4xx(api: httpx.Client, method: str, path: str, kwargs: dict,
                                  status: int, words: str) -> None:
    answer = getattr(api, method)(path, **kwargs)
    assert answer.status_code == status, answer.text
    assert words in answer.json()["error"]["message"]


def test_the_status_route_names_the_collection(api: httpx.Client) -> None:
    view = api.post("/v1/collections/kb/documents", json={"text": LOG}).json()
    answer = api.get(f"/v1/collections/other/ingestions/{view['id']}")
    assert answer.status_code == 404
    assert "in collection 'other'" in answer.json()["error"]["message"]


def test_another_tenants_ingestion_is_404(served: Served) -> None:
    view = served.client.post("/v1/collections/kb/documents", json={"text": LOG}).json()
    with served.client_for(add_key(served, "globex")) as other:
        answer = other.get(view["status_url"])
        assert answer.status_code == 404, answer.text
        # The same upload from another tenant is its own ingestion.
        own = other.post("/v1/collections/kb/documents", json={"text": LOG})
        assert own.status_code == 202 and own.json()["id"] != view["id"]
        assert finished(other, own.json()["status_url"])["status"] == "done"
    assert finished(served.client, view["status_url"])["status"] == "done"
