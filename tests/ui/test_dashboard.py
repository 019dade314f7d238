"""The dashboard in headless Chromium against a running server with real runs:
sign in, the runs list, a run, a step; approving a waiting run; and another
tenant's run that never shows."""

from __future__ import annotations

from pathlib import Path

from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as shown
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.api.conftest import Served, add_key
from tests.api.test_runs import run_id_of, wait_for
from tests.api.test_waits import waiting
from tests.ui.conftest import WAIT_SECONDS


def sign_in(page, served: Served, key: str) -> None:  # noqa: ANN001
    """With the keyboard only: Tab reaches the skip link first, then the key
    field after the links before it; Enter submits."""
    page.get(f"{served.url}/ui")
    page.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
    assert page.switch_to.active_element.get_attribute("class") == "skip"
    for _ in range(3):  # past the header's and the page's links
        if page.switch_to.active_element.get_attribute("id") == "token":
            break
        page.switch_to.active_element.send_keys(Keys.TAB)
    assert page.switch_to.active_element.get_attribute("id") == "token"
    page.switch_to.active_element.send_keys(key + Keys.ENTER)
    WebDriverWait(page, WAIT_SECONDS).until(shown.url_contains("/ui/runs"))


def every_field_is_labelled(page) -> None:  # noqa: ANN001
    fields = page.find_elements(By.CSS_SELECTOR, "input:not([type=hidden]), select")
    unlabelled = [field.get_attribute("name") for field in fields
                  if not page.find_elements(By.CSS_SELECTOR,
                                            f"label[for='{field.get_attribute('id')}']")]
    assert not unlabelled, f"fields without a label on {page.current_url}: {unlabelled}"


def text_of(page, element_id: str) -> str:  # noqa: ANN001
    return WebDriverWait(page, WAIT_SECONDS).until(
        shown.presence_of_element_located((By.ID, element_id))).text


def snap(page, folder: Path, name: str) -> None:  # noqa: ANN001
    assert page.save_screenshot(str(folder / f"{name}.png")), f"no screenshot of {name}"


def test_from_the_runs_list_to_a_run_to_a_step(page, served: Served, screenshots: Path) -> None:
    run_id = run_id_of(served.client, "echo", "hello dashboard")
    assert wait_for(served.client, run_id)["status"] == "succeeded"

    page.get(f"{served.url}/ui/runs")  # not signed in yet
    assert "Sign in needed" in page.title
    page.find_element(By.LINK_TEXT, "Sign in").click()
    page.find_element(By.ID, "token").send_keys("hk_not_a_real_key")
    page.find_element(By.CSS_SELECTOR, "form.sign-in button").click()
    assert "malformed API key" in text_of(page, "error")
    every_field_is_labelled(page)
    snap(page, screenshots, "sign-in-refused")

    sign_in(page, served, served.key)
    assert text_of(page, "tenant") == served.runtime.settings.default_tenant
    every_field_is_labelled(page)
    snap(page, screenshots, "runs")
    page.find_element(By.LINK_TEXT, run_id).click()

    assert text_of(page, "run-status") == "succeeded"
    assert "hello dashboard" in text_of(page, "run-input")
    assert not page.find_elements(By.ID, "cancel")  # a finished run cannot be cancelled
    snap(page, screenshots, "run")
    steps = page.find_elements(By.CSS_SELECTOR, "#steps tbody tr")
    assert steps, "the run page lists no steps"
    steps[0].find_element(By.TAG_NAME, "a").click()

    assert text_of(page, "step-status") == "succeeded"
    assert "hello dashboard" in text_of(page, "step-input")
    snap(page, screenshots, "step")

    # Filters: no run of this agent failed; the echo runs are there.
    page.get(f"{served.url}/ui/runs")
    Select(page.find_element(By.ID, "status")).select_by_value("failed")
    page.find_element(By.CSS_SELECTOR, "form.filters button").click()
    assert "No runs match" in text_of(page, "no-runs")
    page.find_element(By.ID, "agent").send_keys("echo")
    Select(page.find_element(By.ID, "status")).select_by_value("succeeded")
    page.find_element(By.CSS_SELECTOR, "form.filters button").click()
    assert run_id in text_of(page, "runs")

    # The agents, and a version's KPIs: the run above counts for the current one.
    page.find_element(By.LINK_TEXT, "Agents").click()
    page.find_element(By.LINK_TEXT, "echo").click()
    versions = page.find_elements(By.CSS_SELECTOR, "#versions tbody tr")
    current = [row for row in versions if "current" in row.text]
    assert len(current) == 1
    assert current[0].find_elements(By.TAG_NAME, "td")[2].text == "1"  # runs
    assert current[0].find_elements(By.TAG_NAME, "td")[3].text.startswith("100%")
    snap(page, screenshots, "agent")

    # The SLOs, measured over this tenant's runs: the one run succeeded.
    page.find_element(By.LINK_TEXT, "SLOs").click()
    rows = {row.find_element(By.TAG_NAME, "strong").text: row
            for row in page.find_elements(By.CSS_SELECTOR, "#slos tbody tr")}
    assert rows, "no SLOs shown"
    success = [row for name, row in rows.items() if name == "runs-succeed"]
    assert success and "1 / 1" in success[0].text
    snap(page, screenshots, "slo")


def test_approving_a_waiting_run_lets_it_continue(page, served: Served, tmp_path: Path,
                                                  screenshots: Path) -> None:
    import waitkit

    run_id = run_id_of(served.client, "payer", "700")
    wait_for(served.client, run_id, waiting)
    viewer = add_key(served, served.runtime.settings.default_tenant, role="viewer")
    sign_in(page, served, viewer)
    page.get(f"{served.url}/ui/runs/{run_id}")
    assert text_of(page, "run-status") == "waiting"
    assert not page.find_elements(By.ID, "approve"), "a viewer may not approve"

    page.delete_all_cookies()
    sign_in(page, served, served.key)  # the admin's
    page.get(f"{served.url}/ui/runs/{run_id}")
    assert "wire_money" in text_of(page, "waiting")
    every_field_is_labelled(page)
    snap(page, screenshots, "run-waiting")
    page.find_element(By.ID, "approve-comment").send_keys("fine")
    page.find_element(By.ID, "approve").click()

    # The run page follows the run live (live.js) and reloads when it ends.
    WebDriverWait(page, WAIT_SECONDS).until(
        shown.text_to_be_present_in_element((By.ID, "run-status"), "succeeded"))
    assert waitkit.logged(tmp_path / "effects.log") == ["wire 700"]
    snap(page, screenshots, "run-approved")


def test_another_tenants_run_never_shows(page, served: Served, screenshots: Path) -> None:
    run_id = run_id_of(served.client, "echo", "only for the default tenant")
    wait_for(served.client, run_id)
    globex = add_key(served, "globex", role="admin")
    mine = run_id_of(served.client_for(globex), "echo", "globex's own")
    wait_for(served.client_for(globex), mine)

    sign_in(page, served, globex)
    assert text_of(page, "tenant") == "globex"
    listed = text_of(page, "runs")
    assert mine in listed and run_id not in listed

    page.get(f"{served.url}/ui/runs/{run_id}")
    assert "Not found" in page.title
    assert "only for the default tenant" not in page.page_source
    snap(page, screenshots, "other-tenant-404")
    page.get(f"{served.url}/ui/runs/{run_id}/steps/0")
    assert "Not found" in page.title


def test_an_agents_evaluations_show_with_the_runs_of_failed_cases(
        page, served: Served, screenshots: Path) -> None:  # noqa: ANN001
    """A real evaluation: two cases run by the server's worker and scored; the
    agent page lists it, and a case that did not pass links to its run."""
    import asyncio

    from homeo.evolve.evals import Case, Expect, Suite, run_suite

    runtime = served.runtime
    version = runtime.backends.store.get_agent("default", "echo").version

    async def ended(run_ids: list[str]) -> None:  # the served worker runs them
        for run_id in run_ids:
            await asyncio.to_thread(wait_for, served.client, run_id)

    suite = Suite(name="greetings", cases=[
        Case(id="hello", input="hello", expect=Expect(contains=["hello"])),
        Case(id="bye", input="bye", expect=Expect(exact="farewell"))])
    report = asyncio.run(run_suite(runtime.backends, suite, tenant_id="default", agent="echo",
                                   version=version, models=runtime.models.get, serve=ended))
    assert [case.passed for case in report.cases] == [True, False]

    sign_in(page, served, served.key)
    page.get(f"{served.url}/ui/agents/echo")
    rows = page.find_elements(By.CSS_SELECTOR, "#evaluations tbody tr")
    assert len(rows) == 1 and report.eval_id in rows[0].text and "greetings" in rows[0].text
    assert rows[0].find_elements(By.TAG_NAME, "td")[4].text == "2"  # cases
    assert rows[0].find_elements(By.TAG_NAME, "td")[5].text.startswith("0.50")
    snap(page, screenshots, "agent-evaluations")
    rows[0].find_element(By.LINK_TEXT, "bye").click()
    assert text_of(page, "run-status") == "succeeded"
    assert "bye" in text_of(page, "run-input")


def test_an_agents_canary_and_evolution_show(page, served: Served,
                                            screenshots: Path) -> None:  # noqa: ANN001
    import time

    from homeo.engine import canary

    store = served.runtime.backends.store
    record = store.get_agent("default", "echo")
    store.put_agent("default", "echo", {**record.spec, "max_steps": 7}, author="test")
    canary.start(store, "default", "echo", record.version, 0.3, by="test", now=time.time())
    store.put_agent("default", "echo-evolve", {**record.spec, "name": "echo-evolve"},
                    author="evolve")
    sign_in(page, served, served.key)
    page.get(f"{served.url}/ui/agents/echo")
    shown = text_of(page, "canary")
    assert "active" in shown and record.version in shown and "30% of new runs" in shown
    snap(page, screenshots, "agent-canary")
    page.find_element(By.PARTIAL_LINK_TEXT, "candidate versions").click()
    assert "echo-evolve" in page.title
