"""End to end in headless Chromium: upload a CIF, see the Plotly plots render; open a material from the map.

Needs Debian's ``chromium`` and the ``playwright`` Python package (driven with ``executable_path``, no browser
download). Every request the page makes is checked to stay on the loopback server. Screenshots go to
``$OPTILADDER_SCREENSHOTS`` if set, else to the test's tmp folder.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from optiladder.service.app import create_app
from optiladder.service.loadtest import ThreadedServer

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser_page(predictor, tmp_path_factory):
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed (apt-get install chromium)")
    profile = tmp_path_factory.mktemp("chromium-profile")  # a fresh user-data-dir
    with ThreadedServer(create_app(predictor)) as server, sync_api.sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
            viewport={"width": 1280, "height": 1000},
        )
        page = ctx.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
        page.on(
            "console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None
        )

        def only_loopback(route):
            if route.request.url.startswith(server.url):
                route.continue_()
            else:
                problems.append(f"blocked off-host request {route.request.url}")
                route.abort()

        page.route("**/*", only_loopback)
        yield page, server.url, problems
        ctx.close()


def _shot_dir(tmp_path: Path) -> Path:
    d = Path(os.environ.get("OPTILADDER_SCREENSHOTS", tmp_path))
    d.mkdir(parents=True, exist_ok=True)
    return d


def test_upload_cif_and_see_the_plots(browser_page, examples, tmp_path):
    page, url, problems = browser_page
    page.goto(url + "/")
    page.set_input_files("#file", str(examples / "SiC.cif"))
    page.click("#submit")
    page.wait_for_selector("body[data-state=plotted]", timeout=60_000)
    # two curves (IPA, RPA) drawn as SVG paths in each plot
    for plot in ("#plot-im", "#plot-re", "#plot-optics"):
        assert page.locator(f"{plot} .scatterlayer .trace").count() == 2
        d = page.locator(f"{plot} .scatterlayer .trace path.js-line").first.get_attribute("d")
        # a real, non-flat line through many points (Plotly merges nearly collinear segments at pixel resolution,
        # so a smooth spectrum of 2001 points keeps ~100 vertices: 97 for v2026.12.07's SiC)
        pts = re.findall(r"[ML](-?[\d.]+),(-?[\d.]+)", d or "")
        assert len(pts) > 50 and len({y for _, y in pts}) > 30, d
    assert "SiC" in page.inner_text("#title")
    assert page.inner_text("#verdict").startswith("IPA is")
    page.select_option("#optic-select", "R")
    assert "reflectivity" in page.evaluate("document.getElementById('plot-optics').layout.title.text")
    page.screenshot(path=str(_shot_dir(tmp_path) / "predict-SiC.png"), full_page=True)
    assert not problems, problems


def test_bad_paste_shows_one_line_error(browser_page):
    page, url, problems = browser_page
    page.goto(url + "/")
    page.fill("#text", "this is not a crystal")
    page.fill("#filename", "junk.cif")
    page.click("#submit")
    page.wait_for_selector("body[data-state=error]", timeout=30_000)
    msg = page.inner_text("#error")
    assert msg.startswith("junk.cif: unreadable CIF") and "\n" not in msg
    # the 422 answer itself is logged by Chromium as a failed resource load; nothing else may go wrong
    assert all("422" in p for p in problems), problems
    problems.clear()


def test_map_point_click_opens_the_material(browser_page, tmp_path):
    page, url, problems = browser_page
    page.goto(url + "/ui/map")
    page.wait_for_selector("body[data-state=plotted]", timeout=60_000)
    n_points = page.locator("#map .scatterlayer .point").count()
    assert n_points >= 50
    page.screenshot(path=str(_shot_dir(tmp_path) / "map.png"), full_page=True)
    x, y, target = page.evaluate(
        """() => {
          const gd = document.getElementById('map'), xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
          const tr = gd.data[0], i = tr.customdata.indexOf('agm003157621');
          const r = gd.getBoundingClientRect();
          return [r.left + xa._offset + xa.l2p(tr.x[i]), r.top + ya._offset + ya.l2p(tr.y[i]), tr.customdata[i]];
        }"""
    )
    assert target == "agm003157621"
    page.mouse.move(x, y)
    page.mouse.click(x, y)
    page.wait_for_url("**/ui/materials/*", timeout=30_000)
    page.wait_for_selector("body[data-state=plotted]", timeout=60_000)
    assert page.locator("#plot-im .scatterlayer .trace").count() == 4  # IPA/RPA from DFT and from the model
    assert "agm" in page.inner_text("#title")
    page.screenshot(path=str(_shot_dir(tmp_path) / "material.png"), full_page=True)
    assert not problems, problems
