"""The dashboard's system, autonomic and memory pages in headless Chromium,
against a running server with real data: providers and breakers, the queue
and the worker, a decision of the autonomic loop with its explanation, a
collection's documents and a search; and none of it from another tenant."""

from __future__ import annotations

import sys
from pathlib import Path

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from homeo.store.models import DecisionRecord
from tests.api.conftest import Served, add_key
from tests.ui.test_dashboard import every_field_is_labelled, sign_in, snap, text_of

SUPPORT = Path(__file__).parents[1] / "support"


def decide(served: Served, tenant: str, action: str, why: str) -> None:
    """A decision of the loop about `tenant`'s flood, as Plan records one."""
    store = served.runtime.backends.store
    store.put_decision(DecisionRecord(
        id=f"dec_{tenant}_{action}", at=1_900_000_000.0, observer="test", kind="tenant_flooding",
        subject=tenant, action=action, status="dry_run", settle_at=1_900_000_060.0,
        explanation={"why": why, "chosen": action, "alternatives": [
            {"action": action, "eligible": True, "score": 0.7, "cleared_before": 3,
             "persisted_before": 1},
            {"action": "pause_agent", "eligible": False, "reason": f"{tenant} has one agent"}]}))


def test_system_autonomic_and_memory_pages(page, served: Served, screenshots: Path) -> None:
    sys.path.insert(0, str(SUPPORT))
    from hashembed import HashingEmbedder

    served.runtime.models.add("embedding", HashingEmbedder())
    api = served.client
    made = api.post("/v1/collections/pets/documents",
                    json={"title": "Cats", "text": "Cats purr when they are content."})
    assert made.status_code == 201, made.text
    globex = add_key(served, "globex", role="admin")
    theirs = served.client_for(globex).post(
        "/v1/collections/secrets/documents", json={"title": "Plans", "text": "globex plans"})
    assert theirs.status_code == 201, theirs.text
    decide(served, "default", "shed_load", "shed_load scored highest for default's flood")
    decide(served, "globex", "shed_load", "globex's flood, not yours")

    sign_in(page, served, served.key)
    page.find_element(By.LINK_TEXT, "System").click()
    providers = text_of(page, "providers")
    assert "closed" in providers, providers  # every breaker starts closed
    assert text_of(page, "queue-mine") == "0"
    assert "beating" in text_of(page, "workers")  # the server's own worker
    snap(page, screenshots, "system")

    page.find_element(By.LINK_TEXT, "Autonomic").click()
    decisions = text_of(page, "decisions")
    assert "shed_load scored highest for default's flood" in decisions
    assert "globex" not in decisions
    page.find_element(By.CSS_SELECTOR, "#decisions details summary").click()
    assert "not eligible: default has one agent" in text_of(page, "decisions")
    snap(page, screenshots, "autonomic")

    page.find_element(By.LINK_TEXT, "Memory").click()
    listed = text_of(page, "collections")
    assert "pets" in listed and "secrets" not in listed
    page.find_element(By.LINK_TEXT, "pets").click()
    assert "Cats" in text_of(page, "documents")
    every_field_is_labelled(page)
    page.find_element(By.ID, "q").send_keys("purr")
    Select(page.find_element(By.ID, "mode")).select_by_value("text")
    page.find_element(By.CSS_SELECTOR, "form[role=search] button").click()
    assert "Cats purr" in text_of(page, "hits")
    snap(page, screenshots, "collection")

    page.get(f"{served.url}/ui/memory/secrets")  # globex's collection, by its name
    assert "Not found" in page.title and "globex plans" not in page.page_source

    page.delete_all_cookies()
    viewer = add_key(served, "default", role="viewer")
    sign_in(page, served, viewer)
    assert not page.find_elements(By.LINK_TEXT, "Autonomic")  # admins only
    page.find_element(By.LINK_TEXT, "System").click()
    assert not page.find_elements(By.ID, "workers")
    page.get(f"{served.url}/ui/autonomic")
    assert "Not allowed" in page.title
