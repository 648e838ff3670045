"""The report as a person sees it: headless Chromium loads the file from disk (no server, no
network), the rendered DOM has every section, and a screenshot is taken."""

from __future__ import annotations

import os
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from vlkge.reports import write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("CI"):
        pytest.fail("headless Chromium is missing (.ci/run installs the chromium package)")
    pytest.skip("headless Chromium is not installed (apt-get install chromium)")


def headless(*args: str, cwd) -> subprocess.CompletedProcess:
    command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", *args]
    env = {**os.environ, "HOME": str(cwd)}  # Chromium writes its profile under HOME
    return subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=cwd, env=env)


class Elements(HTMLParser):
    """Ids, classes and image sources of a rendered DOM."""

    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()
        self.classes: list[str] = []
        self.images: list[dict] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        self.classes += (attrs.get("class") or "").split()
        if tag == "img":
            self.images.append(attrs)


def test_report_renders_in_headless_chromium(runs, tmp_path):
    report = write_report(
        runs.multimodal, tmp_path / "report.html", zero_shot=runs.zero_shot, encoder=runs.encoder
    )
    url = report.resolve().as_uri()

    dom = headless("--dump-dom", url, cwd=tmp_path)
    assert dom.returncode == 0, dom.stderr[-2000:]
    found = Elements()
    found.feed(dom.stdout)
    for element in (
        "summary",
        "metrics",
        "metrics-valid",
        "metrics-test",
        "relations-test",
        "curves",
        "relation-bars",
        "coverage",
        "coverage-bars",
        "predictions",
        "config",
    ):
        assert element in found.ids, element
    assert found.classes.count("query") == 3
    assert found.classes.count("ranking") == 6  # the model's and the zero-shot baseline's
    assert found.classes.count("per-relation") == 2
    assert "answer" in found.classes or "known" in found.classes
    plots = [i for i in found.images if "plot" in (i.get("class") or "")]
    assert len(plots) == 3
    assert all(i["src"].startswith("data:") for i in found.images)  # nothing loaded from outside

    shot = tmp_path / "report.png"
    result = headless(f"--screenshot={shot}", "--window-size=1280,2400", url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    data = shot.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 20_000
    width = int.from_bytes(data[16:20], "big")
    height = int.from_bytes(data[20:24], "big")
    assert (width, height) == (1280, 2400)
