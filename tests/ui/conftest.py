"""The dashboard in a real browser: Debian's headless Chromium driven by
Selenium through /usr/bin/chromedriver (nothing is downloaded), against a real
homeo app (tests/api/conftest.py's `Servers`) with a worker, the scripted
agents of tests/support, and waitkit's agent that waits for an approval.

Without Chromium these tests skip, and fail under CI=true. Screenshots of each
page go to $HOMEO_UI_SCREENSHOTS, else to a pytest temporary folder."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.api.conftest import Served, serve  # noqa: F401 (a fixture, used by name)
from tests.conftest import IN_CI

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT_SECONDS = 60.0  # a busy machine may be slow; nothing here waits when things go right
PAYER = "model: scripted:waitkit:payer_model\ntools: [waitkit:wire_money]\n"


@pytest.fixture(scope="module")
def browser() -> Iterator["WebDriver"]:  # noqa: F821
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if shutil.which(path) is None]
    if missing:
        message = (f"{', '.join(missing)} missing: apt-get install chromium chromium-driver"
                   " (scripts/setup does it)")
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1280,900", "--no-first-run",
                     "--disable-extensions"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(WAIT_SECONDS)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def page(browser):  # noqa: ANN001, ANN201
    """The browser, signed out (no cookie from an earlier test). Afterwards it
    leaves the page, so a live run page's event stream does not hold the
    test's server open."""
    browser.delete_all_cookies()
    yield browser
    browser.get("about:blank")


@pytest.fixture
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = os.environ.get("HOMEO_UI_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        return Path(folder)
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture
def served(serve: Callable[..., Served], tmp_path: Path,  # noqa: F811
           monkeypatch: pytest.MonkeyPatch) -> Served:
    import waitkit

    monkeypatch.setenv(waitkit.LOG_ENV, str(tmp_path / "effects.log"))
    served = serve()
    folder = Path(served.runtime.settings.agents_dir)
    (folder / "payer.yaml").write_text(f"name: payer\n{PAYER}")
    served.runtime.publish_agents()
    return served
