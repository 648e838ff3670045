"""The search report: one page on the shared layout with the best trial, every trial (pruned
and failed ones marked), the history, validation per epoch, importances and parallel
coordinates."""

from __future__ import annotations

from html.parser import HTMLParser

import optuna

from vlkge.tuning.report import write_report
from vlkge.tuning.results import trial_rows


class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()
        self.states: list[str] = []
        self.links: list[str] = []
        self.images = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.ids.add(attrs.get("id", ""))
        if tag == "a" and attrs.get("href", "").startswith("#"):
            self.links.append(attrs["href"][1:])
        if tag == "tr" and "data-state" in attrs:
            self.states.append(attrs["data-state"])
        if tag == "img" and attrs.get("src", "").startswith("data:image/png;base64,"):
            self.images += 1


def test_report_of_a_search(finished_search):
    settings, study = finished_search
    scored = {"metrics": {"test": {"both": {"mrr": 0.5, "mr": 3.0, "count": 4}}}}
    path = write_report(settings, study, trial_rows(study), 5, scored)
    assert path == settings.folder / "report.html"
    text = path.read_text()
    page = Page()
    page.feed(text)
    assert page.states == ["complete", "pruned", "complete", "requeued", "complete", "failed"]
    assert {"summary", "trial-table", "history-plot", "epochs-plot", "parallel-plot"} <= page.ids
    assert {"best-test", "finished", "best-value"} <= page.ids
    assert "importance-plot" in page.ids and page.images >= 4
    assert 'class="best"' in text and "trials/0002" in text
    assert "<script" not in text  # self-contained, nothing runs
    assert page.links and set(page.links) <= page.ids  # the navigation reaches every section


def test_report_before_any_trial_finished(finished_search):
    settings, _ = finished_search
    empty = optuna.create_study(direction="maximize")
    text = write_report(settings, empty, [], 5, None).read_text()
    assert "no trial has completed yet" in text and "no trial has finished yet" in text
    assert "parameter importances need at least two completed trials" in text
