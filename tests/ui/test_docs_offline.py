"""/docs (Swagger UI) and /redoc in headless Chromium with the network to
anything but this server unused: each renders the API's operations under its
Content-Security-Policy, which blocks the one image ReDoc's bundle would
fetch from a CDN; nothing is requested from anywhere else."""

from __future__ import annotations

from pathlib import Path

from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as shown
from selenium.webdriver.support.ui import WebDriverWait

from tests.api.conftest import Served
from tests.ui.conftest import WAIT_SECONDS
from tests.ui.test_dashboard import snap

WATCH = ("window.__violations = [];"
         "document.addEventListener('securitypolicyviolation', function (e) {"
         " window.__violations.push(e.violatedDirective + ' ' + e.blockedURI); });")


def test_docs_and_redoc_render_offline_under_their_policy(page, served: Served,
                                                          screenshots: Path) -> None:
    page.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": WATCH})
    for path, rendered in (("/docs", ".opblock"), ("/redoc", "[data-section-id]")):
        answer = served.client.get(path)
        policy = answer.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "default-src 'none'" in policy
        page.get(f"{served.url}{path}")
        WebDriverWait(page, WAIT_SECONDS).until(
            shown.presence_of_element_located((By.CSS_SELECTOR, rendered)))
        assert "/v1/runs" in page.find_element(By.TAG_NAME, "body").text
        # ReDoc's bundle shows its maker's logo from a CDN: the policy blocks it.
        blocked = page.execute_script("return window.__violations")
        assert [v for v in blocked if not v.startswith("img-src ")] == [], blocked
        others = [u for u in page.execute_script(
            "return performance.getEntriesByType('resource').map(function (r) {"
            " return r.name; })") if not u.startswith(served.url) and not u.startswith("blob:")
            and not u.startswith("data:")]
        stopped = {v.split(" ", 1)[1] for v in blocked}
        assert [u for u in others if u not in stopped] == [], f"{path} fetched {others}"
        snap(page, screenshots, path.strip("/"))
