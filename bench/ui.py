"""The dashboard in a browser: first contentful paint and full load of /ui/runs
(the first 25 of 50 runs) and of a run page with 200 steps, beside the same pages'
bytes served as static files (Python's http.server), in the same headless
Chromium (Debian's, through Selenium) in the same run.

`homeo serve --workers 0` runs as a subprocess on a new data dir (as
bench/api_latency.py starts it); the runs are written into its SQLite store
from here (a succeeded run with 200 steps, as a worker would leave it). Each
page is loaded --loads times, alternating dashboard and static, and the
browser's own Paint Timing and Navigation Timing give the figures (medians).

    .venv/bin/python bench/ui.py
    .venv/bin/python bench/ui.py --loads 30 --steps 500
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
from _common import free_port, machine, table
from api_latency import Server, start_homeo

from homeo.backends import open_backends
from homeo.config import Settings
from homeo.store.models import NewRun

# First contentful paint may come after the load event on a small page: wait for it.
TIMING = """
var done = arguments[arguments.length - 1];
var nav = performance.getEntriesByType("navigation")[0];
new PerformanceObserver(function (list, observer) {
  list.getEntries().forEach(function (entry) {
    if (entry.name !== "first-contentful-paint") { return; }
    observer.disconnect();
    done([entry.startTime, nav.loadEventEnd, nav.responseEnd - nav.requestStart,
          nav.decodedBodySize]);
  });
}).observe({type: "paint", buffered: true});
"""


def write_runs(data_dir: Path, runs: int, steps: int) -> str:
    """`runs` queued runs, and one succeeded run with `steps` steps; its id."""
    backends = open_backends(Settings(data_dir=data_dir).resolved_database_url())
    store = backends.store
    for n in range(runs):
        store.create_run(NewRun(tenant_id="default", agent="assistant", input=f"question {n}"))
    run, _ = store.create_run(NewRun(tenant_id="default", agent="assistant",
                                     input="a long run"))
    claim = store.claim_run("default", run.id)
    for seq in range(steps):
        kind, name = ("model", "model") if seq % 2 == 0 else ("tool", "calculator")
        store.begin_step("default", run.id, seq, kind, name, {"turn": seq},
                         fence=claim.lease_epoch)
        store.complete_step("default", run.id, seq, f"result {seq}",
                            {"next": "model", "state": {"turn": seq}}, fence=claim.lease_epoch)
    store.transition_run("default", run.id, "succeeded", allowed_from={"running"},
                         output="done", fence=claim.lease_epoch)
    backends.close()
    return run.id


def browser():  # noqa: ANN201 (a selenium WebDriver)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1280,900", "--disable-extensions"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    driver.set_script_timeout(30)
    return driver


def load(driver, url: str) -> list[float]:  # noqa: ANN001
    driver.get(url)
    return driver.execute_async_script(TIMING)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--loads", type=int, default=15, help="loads of each page")
    parser.add_argument("--runs", type=int, default=50, help="runs in the list")
    parser.add_argument("--steps", type=int, default=200, help="steps of the long run")
    args = parser.parse_args(argv)
    print(machine())
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        server, headers = start_homeo(scratch, "ui", "warning")
        static_server = None
        driver = browser()
        try:
            run_id = write_runs(scratch / "ui", args.runs, args.steps)
            key = headers["authorization"].removeprefix("Bearer ")
            pages = {"/ui/runs": "runs.html", f"/ui/runs/{run_id}": "run.html"}
            # The static baseline: the same HTML and stylesheet, as files.
            static = scratch / "static"
            (static / "ui" / "static").mkdir(parents=True)
            for path, name in pages.items():
                body = httpx.get(f"{server.base}{path}", headers=headers, timeout=30).text
                (static / name).write_text(body)
            (static / "ui" / "static" / "ui.css").write_text(
                httpx.get(f"{server.base}/ui/static/ui.css", timeout=30).text)
            port = free_port()
            static_server = Server([sys.executable, "-m", "http.server", str(port), "--bind",
                                    "127.0.0.1", "--directory", str(static)], port,
                                   scratch / "static.log", {})

            driver.get(f"{server.base}/ui")
            driver.find_element("id", "token").send_keys(key)
            driver.find_element("css selector", "form.sign-in button").click()
            rows = []
            for path, name in pages.items():
                ours, files = [], []
                load(driver, f"{server.base}{path}")  # warm: templates compiled, caches full
                load(driver, f"http://127.0.0.1:{port}/{name}")
                for n in range(args.loads):
                    # A new query each time: the browser may not answer from its cache.
                    ours.append(load(driver, f"{server.base}{path}?load={n}"))
                    files.append(load(driver, f"http://127.0.0.1:{port}/{name}?load={n}"))
                label = "/ui/runs/{id} (%d steps)" % args.steps if "run_" in path \
                    else f"/ui/runs (25 of {args.runs} runs)"
                for who, figures in ((label, ours), ("  same bytes, static file", files)):
                    rows.append([who,
                                 f"{statistics.median(f[0] for f in figures):.1f}",
                                 f"{statistics.median(f[1] for f in figures):.1f}",
                                 f"{statistics.median(f[2] for f in figures):.1f}",
                                 f"{figures[-1][3] / 1024:.1f}"])
            print(f"Headless Chromium, {args.loads} loads each, medians in ms:")
            print(table(["page", "first contentful paint", "load event end",
                         "request to response end", "KiB"], rows))
        finally:
            driver.quit()
            if static_server is not None:
                static_server.stop()
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
