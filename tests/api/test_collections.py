"""/v1/collections over real HTTP, with minilm in process: documents as JSON
or files, search in each mode, replace and delete, bad input, and another
tenant's collections and documents are a 404 on every route."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import httpx
import pytest

from homeo.memory.embedder import Embedder
from homeo.memory.extract import from_text
from homeo.memory.knowledge import Knowledge
from homeo.memory.store import open_store

sys.path.insert(0, str(Path(__file__).parent.parent / "support"))
sys.path.insert(0, str(Path(__file__).parent.parent / "memory"))
from hashembed import HashingEmbedder  # noqa: E402
from test_extract import pdf_with_text  # noqa: E402

from tests.api.conftest import Served, add_key  # noqa: E402

pytestmark = pytest.mark.slow  # loads the embedding model

PETS = {"text": "# Cats\nCats purr and nap in the sun.\n\n# Trains\nThe locomotive pulls"
                " freight cars along the rails.", "title": "Pets", "source": "pets.md"}


def add(api: httpx.Client, collection: str = "kb", body: dict | None = None) -> dict:
    answer = api.post(f"/v1/collections/{collection}/documents", json=body or PETS)
    assert answer.status_code == 201, answer.text
    return answer.json()


def test_a_document_is_added_listed_fetched_and_searched(api: httpx.Client) -> None:
    made = add(api)
    assert made["chunks"] == 2 and made["title"] == "Pets" and made["format"] == "markdown"
    assert api.get("/v1/collections").json()["collections"] == [{
        "name": "kb", "documents": 1, "chunks": 2, "model": "all-MiniLM-L6-v2",
        "dimensions": 384, "created_at": made["created_at"]}]
    page = api.get("/v1/collections/kb/documents").json()
    assert [d["id"] for d in page["documents"]] == [made["id"]] and page["next_before"] is None
    assert api.get(f"/v1/collections/kb/documents/{made['id']}").json()["text"] == PETS["text"]
    for mode in ("hybrid", "text", "vector"):
        answer = api.get("/v1/collections/kb/search",
                         params={"q": "a railway engine hauling goods" if mode == "vector"
                                 else "locomotive", "k": 1, "mode": mode}).json()
        [hit] = answer["results"]
        assert answer["mode"] == mode and hit["document_id"] == made["id"]
        assert hit["position"] == 1 and hit["text"].startswith("Trains\n\nThe locomotive")
        assert hit["score"] > 0 and hit["source"] == "pets.md"
        assert PETS["text"][hit["start"]:hit["end"]] in hit["text"]


def test_files_are_read_by_their_suffix(api: httpx.Client) -> None:
    files = {"notes.md": b"# Otters\nOtters hold hands.",
             "page.html": b"<h1>Walrus</h1><p>Walruses have tusks.</p><script>x()</script>",
             "doc.pdf": pdf_with_text("Penguins cannot fly."), "plain.txt": b"Ravens are clever."}
    for name, data in files.items():
        answer = api.post("/v1/collections/files/documents", files={"file": (name, data)},
                          data={"title": name.upper()})
        assert answer.status_code == 201, answer.text
        assert answer.json()["source"] == name and answer.json()["title"] == name.upper()
    hit = api.get("/v1/collections/files/search", params={"q": "tusks", "mode": "text"}).json()
    assert hit["results"][0]["text"] == "Walrus\n\nWalruses have tusks."
    hit = api.get("/v1/collections/files/search", params={"q": "flightless birds"}).json()
    assert hit["results"][0]["source"] == "doc.pdf"
    refused = api.post("/v1/collections/files/documents", files={"file": ("a.docx", b"x")})
    assert refused.status_code == 415 and ".pdf" in refused.json()["error"]["message"]
    refused = api.post("/v1/collections/files/documents", files={"file": ("a.txt", b"\xff\xfe")})
    assert refused.status_code == 400 and "UTF-8" in refused.json()["error"]["message"]


def test_replacing_and_deleting_a_document_changes_what_is_found(api: httpx.Client) -> None:
    made = add(api)
    add(api, body={"text": "Otters hold hands while they sleep."})
    replaced = api.put(f"/v1/collections/kb/documents/{made['id']}",
                       json={"text": "Zeppelins are airships.", "format": "text"})
    assert replaced.status_code == 200 and replaced.json()["chunks"] == 1
    found = api.get("/v1/collections/kb/search", params={"q": "locomotive", "mode": "text"})
    assert found.json()["results"] == []
    assert api.delete(f"/v1/collections/kb/documents/{made['id']}").status_code == 204
    assert api.get(f"/v1/collections/kb/documents/{made['id']}").status_code == 404
    for mode in ("text", "vector", "hybrid"):
        hits = api.get("/v1/collections/kb/search", params={"q": "zeppelin airship",
                                                            "mode": mode}).json()["results"]
        assert all(hit["document_id"] != made["id"] for hit in hits)
    assert api.get("/v1/collections").json()["collections"][0]["chunks"] == 1
    assert api.delete("/v1/collections/kb").status_code == 204
    assert api.get("/v1/collections").json()["collections"] == []


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "words"), [
    ("post", "/v1/collections/bad name/documents", {"json": PETS}, 400, "collection name"),
    ("post", "/v1/collections/kb/documents", {"json": {"title": "x"}}, 422, "text"),
    ("post", "/v1/collections/kb/documents", {"json": {"text": "x", "format": "pdf"}}, 422,
     "format"),
    ("post", "/v1/collections/kb/documents", {"content": b"{", "headers": {
        "content-type": "application/json"}}, 422, "invalid document"),
    ("post", "/v1/collections/kb/documents", {"content": b"hi", "headers": {
        "content-type": "text/plain"}}, 415, "multipart/form-data"),
    ("post", "/v1/collections/kb/documents", {"data": {"title": "x"}, "files": {
        "other": ("a.txt", b"x")}}, 400, "`file`"),
    ("get", "/v1/collections/kb/search?q=cats&k=0", {}, 422, "k"),
    ("get", "/v1/collections/kb/search?q=cats&mode=fuzzy", {}, 422, "mode"),
    ("get", "/v1/collections/kb/search?q=", {}, 422, "q"),
    ("get", "/v1/collections/nope/search?q=cats", {}, 404, "no collection 'nope'"),
    ("get", "/v1/collections/nope/documents", {}, 404, "no collection 'nope'"),
    ("put", "/v1/collections/kb/documents/doc_nope", {"json": PETS}, 404, "no document"),
])
def test_bad_input_is_a_clear_4xx(api: httpx.Client, method: str, path: str, kwargs: dict,
                                  status: int, words: str) -> None:
    add(api)
    answer = getattr(api, method)(path, **kwargs)
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert words in error["message"] and error["type"]


def test_another_tenants_collections_and_documents_are_404(served: Served) -> None:
    made = add(served.client)
    with served.client_for(add_key(served, "globex")) as other:
        assert other.get("/v1/collections").json() == {"collections": []}
        doc = f"/v1/collections/kb/documents/{made['id']}"
        for method, path, kwargs in [
            ("get", "/v1/collections/kb/documents", {}),
            ("get", doc, {}),
            ("put", doc, {"json": PETS}),
            ("delete", doc, {}),
            ("get", "/v1/collections/kb/search?q=cats", {}),
            ("delete", "/v1/collections/kb", {}),
        ]:
            answer = getattr(other, method)(path, **kwargs)
            assert answer.status_code == 404, (method, path, answer.text)
        # Its own collection of the same name is another collection.
        assert other.post("/v1/collections/kb/documents",
                          json={"text": "Globex sells anvils."}).status_code == 201
        hits = other.get("/v1/collections/kb/search", params={"q": "cats purr"}).json()
        assert [h["text"] for h in hits["results"]] == ["Globex sells anvils."]
    assert served.client.get(doc).json()["text"] == PETS["text"]
    assert served.client.get("/v1/collections").json()["collections"][0]["documents"] == 1


def test_vectors_of_another_model_are_a_409_that_says_to_reembed(served: Served) -> None:
    # Another embedding model wrote this collection (as if HOMEO_MEMORY_EMBEDDING_MODEL changed).
    other = Knowledge(open_store(served.runtime.backends), Embedder(HashingEmbedder(), "hash"))
    asyncio.run(other.add("default", "old", from_text("Cats purr.", "text")))
    answer = served.client.get("/v1/collections/old/search", params={"q": "cats"})
    assert answer.status_code == 409
    assert "homeo memory reembed --collection old" in answer.json()["error"]["message"]
    answer = served.client.post("/v1/collections/old/documents", json={"text": "Dogs bark."})
    assert answer.status_code == 409 and "hashing-64" in answer.json()["error"]["message"]
    text = served.client.get("/v1/collections/old/search", params={"q": "cats", "mode": "text"})
    assert text.status_code == 200 and len(text.json()["results"]) == 1
