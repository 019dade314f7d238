"""Collections, documents and search through both clients, with minilm in process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from homeo.client import AsyncHomeo, Document, Homeo, Ingestion, InvalidRequest, NotFound
from tests.api.conftest import Served

pytestmark = pytest.mark.slow  # loads the embedding model

PETS = "# Cats\nCats purr and nap in the sun.\n\n# Trains\nThe locomotive pulls freight."


def test_documents_are_added_listed_searched_and_removed(homeo: Homeo, tmp_path: Path) -> None:
    made = homeo.collections.add("kb", PETS, title="Pets", source="pets.md")
    assert made.chunks == 2 and made.collection == "kb" and made.text is None
    notes = tmp_path / "otters.md"
    notes.write_text("# Otters\nOtters hold hands while they sleep.")
    uploaded = homeo.collections.upload("kb", notes, title="Otters")
    assert uploaded.source == "otters.md" and uploaded.title == "Otters"
    [kb] = homeo.collections.list()
    assert kb.name == "kb" and kb.documents == 2 and kb.dimensions == 384
    listed = [doc.id for doc in homeo.collections.documents("kb", page_size=1)]
    assert listed == [uploaded.id, made.id]
    assert homeo.collections.document("kb", made.id).text == PETS

    found = homeo.collections.search("kb", "locomotive", k=1, mode="text")
    assert found.mode == "text" and found.results[0].document_id == made.id
    assert "locomotive" in found.results[0].text
    hits = homeo.collections.search("kb", "sea animals holding paws", k=1, mode="vector")
    assert hits.results[0].document_id == uploaded.id

    replaced = homeo.collections.replace("kb", made.id, "Dogs bark.", format="text")
    assert replaced.id == made.id and replaced.chunks == 1
    homeo.collections.delete_document("kb", made.id)
    with pytest.raises(NotFound):
        homeo.collections.document("kb", made.id)
    with pytest.raises(InvalidRequest) as bad:
        homeo.collections.search("kb", "x", k=0)
    assert bad.value.details[0]["field"] == "query.k"
    homeo.collections.delete("kb")
    assert homeo.collections.list() == []


def test_collections_over_the_async_client(served: Served) -> None:
    async def scenario() -> None:
        async with AsyncHomeo(served.url, served.key) as homeo:
            made = await homeo.collections.add("notes", "Walruses have tusks.", format="text")
            assert [d.id async for d in homeo.collections.documents("notes")] == [made.id]
            found = await homeo.collections.search("notes", "tusks")
            assert found.results[0].document_id == made.id
            await homeo.collections.delete("notes")
            with pytest.raises(NotFound):
                await homeo.collections.delete("notes")

    asyncio.run(scenario())


def test_a_long_document_comes_back_as_an_ingestion_to_follow(
        serve: Callable[..., Served]) -> None:
    served = serve(memory_ingest_inline_chars=100)
    text = "\n\n".join(f"Note {n}: the heron waits in the shallows." for n in range(12))

    async def scenario() -> None:
        async with AsyncHomeo(served.url, served.key) as homeo:
            accepted = await homeo.collections.add("birds", text, format="text")
            assert isinstance(accepted, Ingestion) and accepted.collection == "birds"
            now = accepted
            end = time.monotonic() + 120
            while now.status not in ("done", "failed"):
                assert time.monotonic() < end, f"not indexed: {now}"
                await asyncio.sleep(0.05)
                now = await homeo.collections.ingestion("birds", accepted.id)
            assert now.status == "done" and now.chunks_done == now.chunks_total
            document = await homeo.collections.document("birds", now.document_id)
            assert document.text == text
            with pytest.raises(NotFound):
                await homeo.collections.ingestion("other", accepted.id)

    asyncio.run(scenario())
    with Homeo(served.url, served.key) as homeo:
        again = homeo.collections.add("birds", text, format="text")
        assert isinstance(again, Ingestion) and again.status == "done"
        assert homeo.collections.ingestion("birds", again.id).document_id is not None
        short = homeo.collections.add("birds", "Herons stand still.", format="text")
        assert isinstance(short, Document)
        longer = homeo.collections.replace("birds", short.id, text + "\n\nThe end.",
                                           format="text")
        assert isinstance(longer, Ingestion) and longer.status in ("queued", "indexing", "done")
