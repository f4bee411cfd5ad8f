"""hpcjobs view in a real headless Chromium (Debian's package): the page of a real job result
loads, the map and the series zoom, screenshots are not blank, and the page asked the server
for tiles and windows as it zoomed. Screenshots are saved as test artefacts
(``$HPCJOBS_TEST_ARTEFACTS/view``, else a pytest temporary folder; the path is printed)."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest

from hpcjobs.view.server import ViewServer
from tests.browser_fixtures import artefacts, browser, chromium_path  # noqa: F401 - fixtures
from tests.view_fixtures import view_result  # noqa: F401 - a fixture

pytestmark = pytest.mark.slow


def _pixels(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def _not_blank(png: bytes, least_colours: int = 4) -> np.ndarray:
    img = _pixels(png)
    colours = np.unique(img.reshape(-1, 3), axis=0)
    assert len(colours) >= least_colours, f"{len(colours)} colours: blank"
    assert img.std() > 5
    return img


def _wait(page, what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not page.evaluate(what):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def page(browser, view_result):  # noqa: F811 - the fixtures
    server = ViewServer(view_result).start()
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    pg = context.new_page()
    pg.requests, pg.errors = [], []
    pg.on("request", lambda r: pg.requests.append(r.url))
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    pg.server = server
    yield pg
    context.close()
    server.close()


def _zoom(page, selector: str, steps: int, dy: int = -300, at=(0.55, 0.4)) -> None:
    canvas = page.locator(selector).first
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + box["width"] * at[0], box["y"] + box["height"] * at[1])
    for _ in range(steps):
        page.mouse.wheel(0, dy)
        time.sleep(0.15)


def test_page_of_a_real_result_zooms_and_draws(page, artefacts):  # noqa: F811
    page.goto(page.server.url)
    page.wait_for_selector("body[data-ready='1']", timeout=60_000)
    cards = page.locator("section.card")
    assert cards.count() == 13  # provenance + 12 steps
    assert "complete" in page.locator("#title").inner_text()
    # every step's view: wait for the data each asks for, then a screenshot of each
    _wait(page, "window.hpcjobsStats.tiles > 0 && window.hpcjobsStats.windows >= 3")
    time.sleep(1.5)
    shots = {}
    for i in range(cards.count()):
        card = cards.nth(i)
        card.scroll_into_view_if_needed()
        time.sleep(0.3)
        name = card.get_attribute("id")
        shots[name] = card.screenshot(path=str(artefacts / f"{name}.png"))
    for name in ("step-pyr", "step-density", "step-series", "step-mp", "step-emb", "step-km",
                 "step-stats"):
        _not_blank(shots[name], least_colours=8)
    # the map: canvases, not blank; the tiles came over HTTP
    tiles_before = sum("/api/tile/pyr/" in u for u in page.requests)
    assert tiles_before >= 1
    map_canvas = page.locator("#step-pyr canvas")
    before = _not_blank(map_canvas.screenshot())
    _zoom(page, "#step-pyr canvas", 8)
    page.wait_for_load_state("networkidle")
    time.sleep(1.0)
    zoomed = map_canvas.screenshot()
    page.locator("#step-pyr").screenshot(path=str(artefacts / "step-pyr-zoomed.png"))
    after = _not_blank(zoomed)
    assert np.abs(after.astype(int) - before).mean() > 5  # the view changed
    new_tiles = [u for u in page.requests if "/api/tile/pyr/" in u][tiles_before:]
    zooms = {int(u.split("/api/tile/pyr/")[1].split("/")[0]) for u in new_tiles}
    assert new_tiles and max(zooms) >= 2, zooms  # finer zooms asked for as the map zoomed in
    assert "zoom" in page.locator("#step-pyr .info").inner_text()
    # the series: zooming in asks for new windows, answered from the full series
    windows_before = sum("/api/series/series/full" in u for u in page.requests)
    series_canvas = page.locator("#step-series canvas")
    s_before = _not_blank(series_canvas.screenshot())
    _zoom(page, "#step-series canvas", 10, dy=-500, at=(0.4, 0.5))
    page.wait_for_load_state("networkidle")
    time.sleep(1.0)
    page.locator("#step-series").screenshot(path=str(artefacts / "step-series-zoomed.png"))
    s_after = _not_blank(series_canvas.screenshot())
    assert np.abs(s_after.astype(int) - s_before).mean() > 1
    windows = [u for u in page.requests if "/api/series/series/full" in u][windows_before:]
    assert windows, "no window requests while zooming"
    info = page.locator("#step-series .info").first.inner_text()
    assert "(raw)" in info or "(summary)" in info, info
    shown = int(info.split(": ")[1].split(" points in view")[0].replace(",", ""))
    assert shown < 200_000  # a window, not the whole series
    # the scatter zooms too (drawn in the page); the tables sort by a click
    _zoom(page, "#step-emb canvas", 4)
    page.locator("#step-emb").screenshot(path=str(artefacts / "step-emb-zoomed.png"))
    header = page.locator("#step-fi table[data-view=table] th", has_text="count")
    column = ("[...document.querySelectorAll('#step-fi table[data-view=table] tbody tr')]"
              ".map(r => +r.cells[3].textContent.replace(/,/g, ''))")
    header.click()  # a number column sorts largest first, then smallest first
    down = page.evaluate(column)
    header.click()
    up = page.evaluate(column)
    assert down == sorted(down, reverse=True) and up == sorted(up) and len(up) > 10
    # the server saw them too, and the page saw no errors
    counts = page.server.counts
    assert counts["tile"] >= len(new_tiles) and counts["window"] >= len(windows)
    assert page.evaluate("window.hpcjobsStats.errors") == 0 and not page.errors
    print(f"\nscreenshots in {artefacts}")


def test_large_embedding_is_aggregated_to_pixels(browser, view_result, artefacts,  # noqa: F811
                                                 monkeypatch):
    from hpcjobs.view import result

    monkeypatch.setattr(result, "MAX_POINTS", 1000)  # the demo's 20,000 rows count as many
    server = ViewServer(view_result).start()
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    try:
        pg = context.new_page()
        images = []
        pg.on("request", lambda r: images.append(r.url) if "/image.png" in r.url else None)
        pg.goto(server.url)
        pg.wait_for_selector("body[data-ready='1']", timeout=60_000)
        _wait(pg, "window.hpcjobsStats.scatter >= 1")
        pg.wait_for_load_state("networkidle")
        time.sleep(0.5)
        card = pg.locator("#step-emb")
        assert "aggregated to pixels" in card.inner_text()
        _not_blank(card.locator("canvas").screenshot(), least_colours=6)
        card.screenshot(path=str(artefacts / "step-emb-aggregated.png"))
        n = len(images)
        _zoom(pg, "#step-emb canvas", 4)
        pg.wait_for_load_state("networkidle")
        time.sleep(0.5)
        assert len(images) > n  # a zoom re-aggregates the range it shows
        card.screenshot(path=str(artefacts / "step-emb-aggregated-zoomed.png"))
        assert server.counts["scatter"] >= 2
    finally:
        context.close()
        server.close()


def test_page_without_token_shows_no_data(page):
    response = page.goto(page.server.url.split("?")[0])
    assert response.status == 403
    assert "token" in page.content() and "steps" not in page.content()
