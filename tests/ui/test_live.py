"""A run page in headless Chromium follows its run live (static/live.js over
GET /ui/runs/{id}/events): approved over the API, the waiting run's page
shows it succeed with no reload by the test; and a step page forks a new run
through the same function as POST /v1/runs/{id}/fork."""

from __future__ import annotations

from pathlib import Path

from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as shown
from selenium.webdriver.support.ui import WebDriverWait

from tests.api.conftest import Served
from tests.api.test_runs import run_id_of, wait_for
from tests.api.test_waits import waiting
from tests.ui.conftest import WAIT_SECONDS
from tests.ui.test_dashboard import sign_in, snap, text_of


def test_a_run_page_follows_its_run_and_a_step_forks_it(page, served: Served,
                                                        screenshots: Path) -> None:
    run_id = run_id_of(served.client, "payer", "300")
    wait_for(served.client, run_id, waiting)
    sign_in(page, served, served.key)
    page.get(f"{served.url}/ui/runs/{run_id}")
    assert text_of(page, "run-status") == "waiting"
    WebDriverWait(page, WAIT_SECONDS).until(
        shown.text_to_be_present_in_element((By.ID, "live-note"), "Updating live"))
    snap(page, screenshots, "run-live-waiting")

    approved = served.client.post(f"/v1/runs/{run_id}/approve", json={"comment": "via API"})
    assert approved.status_code == 200, approved.text
    # The page changes by itself: the events move the status, the end reloads it.
    WebDriverWait(page, WAIT_SECONDS).until(
        shown.text_to_be_present_in_element((By.ID, "run-status"), "succeeded"))
    WebDriverWait(page, WAIT_SECONDS).until(
        shown.presence_of_element_located((By.ID, "run-output")))
    assert not page.find_elements(By.ID, "live")  # a final run is not followed
    rows = page.find_elements(By.CSS_SELECTOR, "#steps tbody tr")
    assert len(rows) >= 3 and all(r.find_elements(By.TAG_NAME, "rect") for r in rows)
    snap(page, screenshots, "run-live-ended")

    page.get(f"{served.url}/ui/runs/{run_id}/steps/0")
    page.find_element(By.ID, "fork").click()
    WebDriverWait(page, WAIT_SECONDS).until(lambda p: run_id not in p.current_url)
    forked = page.current_url.rsplit("/", 1)[-1]
    assert forked.startswith("run_") and forked != run_id
    assert run_id in page.find_element(By.CSS_SELECTOR, ".facts").text  # "Forked from"
    assert served.client.get(f"/v1/runs/{forked}").json()["forked_from"]["run_id"] == run_id
    snap(page, screenshots, "run-forked")
    # The fork asks for approval again; cancelled over the API, its page shows it.
    wait_for(served.client, forked, waiting)
    assert served.client.post(f"/v1/runs/{forked}/cancel").status_code == 200
    WebDriverWait(page, WAIT_SECONDS).until(
        shown.text_to_be_present_in_element((By.ID, "run-status"), "cancelled"))
    WebDriverWait(page, WAIT_SECONDS).until_not(
        shown.presence_of_element_located((By.ID, "live")))
