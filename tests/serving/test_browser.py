"""The page as a person uses it: `vlkge serve` in a fresh interpreter on a free port, driven
by headless Chromium through Playwright: search, pick an entity, run a query, upload an image
for a new entity, and a screenshot."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from reports.test_browser import PNG_MAGIC, chromium

import vlkge
from serving.conftest import png

STARTED = re.compile(r"run\(s\) at (http://\S+/)")


@pytest.fixture
def server(runs, tmp_path):
    """``vlkge serve`` on both runs, port 0 (a free one); yields its URL."""
    src = str(Path(vlkge.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "vlkge", "serve", str(runs.multimodal), str(runs.structural)]
    process = subprocess.Popen(
        [*command, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        lines = []
        for line in process.stdout:  # the process prints its URL once the runs are loaded
            lines.append(line)
            found = STARTED.search(line)
            if found:
                yield found.group(1)
                break
        else:
            pytest.fail("vlkge serve ended before serving:\n" + "".join(lines[-20:]))
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_search_query_and_new_entity_in_chromium(server, tmp_path):
    browser_path = chromium()
    try:
        from playwright import sync_api
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("playwright is missing (the test extras install it)")
        pytest.skip("playwright is not installed (pip install -e '.[test]')")
    problems: list[str] = []
    picture = tmp_path / "pond.png"
    picture.write_bytes(png((80, 150, 210), size=(64, 48)))
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=browser_path, args=["--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.on("response", lambda r: problems.append(r.url) if r.status >= 400 else None)
        expect = sync_api.expect
        expect.set_options(timeout=15_000)

        page.goto(server)  # the run picker: two runs
        expect(page.locator("#runs tbody tr")).to_have_count(2)
        page.click("#runs a[href='/runs/vl']")
        expect(page.locator("h1")).to_have_text("vl")

        page.locator("#search").press_sequentially("mon", delay=40)  # autocomplete
        suggestion = page.locator("header .suggestions a").first
        expect(suggestion).to_contain_text("Claude Monet")
        suggestion.click()
        expect(page.locator("#entity-name")).to_have_text("Claude Monet")
        expect(page.locator("#entity-id")).to_have_text("monet")
        assert page.eval_on_selector("#modalities img", "img => img.naturalWidth") == 40
        expect(page.locator("#neighbours tbody tr")).to_have_count(10)

        page.select_option("#relation", "movement")  # a query from this entity
        page.click("#run-query")
        expect(page.locator("#query")).to_have_text("(monet, movement, ?)")
        expect(page.locator("#answers tbody tr")).to_have_count(10)
        expect(page.locator("#answers tr.known")).to_contain_text("Impressionism")
        page.click("#toggle")
        expect(page.locator("#answers tr.known")).to_have_count(0)

        page.goto(server + "runs/vl")  # a fill-in autocomplete picks an id
        page.locator("#anchor").press_sequentially("pica", delay=40)
        page.locator("#query-form .suggestions a").first.click()
        expect(page.locator("#anchor")).to_have_value("picasso")

        page.fill("#new-text", "a painter of water lilies")  # a new entity
        page.set_input_files("#new-image", str(picture))
        page.select_option("#new-relation", "movement")
        page.click("#run-new")
        expect(page.locator("#query")).to_have_text("(new, movement, ?)")
        expect(page.locator("#new-entity")).to_contain_text("pond.png")
        expect(page.locator("#answers tbody tr")).to_have_count(10)
        expect(page.locator("#neighbours tbody tr")).to_have_count(10)
        loaded = page.eval_on_selector_all(
            "#answers img.thumb", "images => images.map(i => i.complete && i.naturalWidth > 0)"
        )
        assert loaded and all(loaded)

        shot = tmp_path / "serve.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert shot.read_bytes().startswith(PNG_MAGIC) and shot.stat().st_size > 20_000
    assert problems == []  # no script error, no blocked resource
