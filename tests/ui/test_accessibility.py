"""Accessibility of every dashboard page in headless Chromium: each field has
a label, each piece of text has a contrast of at least 4.5:1 against its
background (WCAG AA, measured from the browser's computed colours), and Tab
reaches every link, button and field, each showing a focus outline.
A screenshot of each page goes with the artefacts."""

from __future__ import annotations

from pathlib import Path

from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from tests.api.conftest import Served
from tests.api.test_runs import run_id_of, wait_for
from tests.api.test_waits import waiting
from tests.ui.test_dashboard import every_field_is_labelled, sign_in, snap

# The lowest contrast of any text on the page, and where it is.
LOWEST_CONTRAST = """
function channel(c) { c /= 255; return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4); }
function rgba(text) { var m = text.match(/[\\d.]+/g).map(Number); return m.length === 3 ? m.concat([1]) : m; }
function luminance(c) { return 0.2126 * channel(c[0]) + 0.7152 * channel(c[1]) + 0.0722 * channel(c[2]); }
function background(element) {
  for (var e = element; e; e = e.parentElement) {
    var c = rgba(getComputedStyle(e).backgroundColor);
    if (c[3] > 0) { return c; }
  }
  return [255, 255, 255, 1];
}
var worst = [99, ""];
document.querySelectorAll("body *").forEach(function (e) {
  var own = Array.from(e.childNodes).some(function (n) { return n.nodeType === 3 && n.textContent.trim(); });
  if (!own || !e.getClientRects().length) { return; }
  var a = luminance(rgba(getComputedStyle(e).color)), b = luminance(background(e));
  var ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
  if (ratio < worst[0]) { worst = [ratio, e.tagName + ": " + e.textContent.trim().slice(0, 40)]; }
});
return worst;
"""
FOCUSABLE = "a[href], button, input:not([type=hidden]), select, summary"


def check(page, screenshots: Path, name: str) -> None:  # noqa: ANN001
    every_field_is_labelled(page)
    ratio, where = page.execute_script(LOWEST_CONTRAST)
    assert ratio >= 4.5, f"{page.current_url}: contrast {ratio:.2f} at {where}"
    wanted = len(page.find_elements(By.CSS_SELECTOR, FOCUSABLE))
    page.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
    reached = set()
    for _ in range(wanted):
        focused = page.switch_to.active_element
        if focused.tag_name == "body":  # past the last one
            break
        style = page.execute_script("var s = getComputedStyle(arguments[0]);"
                                    " return [s.outlineStyle, s.outlineWidth];", focused)
        assert style[0] != "none" and style[1] != "0px", \
            f"{page.current_url}: no focus outline on {focused.get_attribute('outerHTML')[:80]}"
        reached.add(focused.id)
        focused.send_keys(Keys.TAB)
    assert len(reached) >= wanted, f"{page.current_url}: Tab reached {len(reached)} of {wanted}"
    snap(page, screenshots, f"a11y-{name}")


def test_every_page_is_labelled_readable_and_reachable_by_keyboard(
        page, served: Served, screenshots: Path) -> None:
    done = run_id_of(served.client, "echo", "for the accessibility check")
    wait_for(served.client, done)
    held = run_id_of(served.client, "payer", "40")
    wait_for(served.client, held, waiting)

    page.get(f"{served.url}/ui")
    check(page, screenshots, "sign-in")
    sign_in(page, served, served.key)
    for name, path in (("runs", "/ui/runs"), ("run", f"/ui/runs/{done}"),
                       ("step", f"/ui/runs/{done}/steps/0"), ("agents", "/ui/agents"),
                       ("agent", "/ui/agents/echo"), ("slo", "/ui/slo"),
                       ("system", "/ui/system"), ("memory", "/ui/memory"),
                       ("autonomic", "/ui/autonomic"), ("not-found", "/ui/runs/run_" + "0" * 22)):
        page.get(f"{served.url}{path}")
        check(page, screenshots, name)
    page.get(f"{served.url}/ui/runs/{held}")
    check(page, screenshots, "run-waiting")
    page.get("about:blank")  # the waiting run's live page would hold the server open
