"""The pages as HTML: every page renders from the loaded runs, names are escaped, forms post
back to the server, errors are a page for a browser and JSON for anything else."""

from __future__ import annotations

from html.parser import HTMLParser

from serving.conftest import NAMES, png

HTML = {"accept": "text/html"}


class Page(HTMLParser):
    """Ids, classes and raw tags of a page."""

    def __init__(self, text: str):
        super().__init__()
        self.ids: set[str] = set()
        self.classes: list[str] = []
        self.scripts: list[dict] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        self.classes += (attrs.get("class") or "").split()
        if tag == "script":
            self.scripts.append(attrs)


def page(client, url: str, status: int = 200, **kwargs) -> tuple[str, Page]:
    response = client.get(url, headers=HTML, **kwargs)
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    return response.text, Page(response.text)


def test_the_run_picker_and_the_run_page(client):
    text, home = page(client, "/")
    assert home.ids >= {"runs"} and "/runs/vl" in text and "/runs/structural" in text
    text, run = page(client, "/runs/vl")
    assert run.ids >= {"search", "query-form", "new-form", "metrics", "metrics-test", "report-link"}
    assert run.ids >= {"relations-test", "new-text", "new-image"}
    assert run.scripts == [{"src": "/static/vlkge.js", "defer": None}]  # no inline script
    assert "http" not in "".join(s["src"] for s in run.scripts)
    _, structural = page(client, "/runs/structural")
    assert "new-text" not in structural.ids and "report-link" not in structural.ids


def test_names_and_texts_are_escaped(client):
    raw = NAMES["xss"]
    for url in ("/runs/vl/entity?id=xss", "/runs/vl/query?anchor=degas&relation=influenced"):
        text, _ = page(client, url)
        assert raw not in text and "<script>alert" not in text
        assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &lt;b&gt;co&lt;/b&gt;" in text


def test_the_entity_page(client):
    text, entity = page(client, "/runs/vl/entity?id=monet")
    assert entity.ids >= {"entity-name", "modalities", "neighbours", "triples", "query-form"}
    assert "Claude Monet is part of the history of painting" in text
    assert "/api/runs/vl/image?id=monet&amp;i=0" in text
    assert 'value="monet"' in text  # the query form starts from this entity
    _, unseen = page(client, "/runs/vl/entity?id=impressionism")
    assert "picture" in unseen.classes


def test_the_query_page_and_its_toggle(client):
    url = "/runs/vl/query?anchor=braque&relation=movement&k=11"
    text, raw = page(client, url)
    assert raw.ids >= {"query", "answers", "true-answers", "toggle"}
    assert "(braque, movement, ?)" in text and "test answer" in text
    assert raw.classes.count("answer-row") == 11 and "known" in raw.classes
    assert "&amp;filtered=true" in text
    text, filtered = page(client, url + "&filtered=true")
    assert "known" not in filtered.classes and "show raw" in text
    text, _ = page(client, "/runs/vl/query?anchor=cubism&relation=movement&side=head")
    assert "(?, movement, cubism)" in text


def test_the_new_entity_page(client):
    response = client.post(
        "/runs/vl/new",
        headers=HTML,
        data={"text": "water <lilies>", "relation": "movement", "k": "3"},
        files={"image": ("pond.png", png(), "image/png")},
    )
    assert response.status_code == 200
    found = Page(response.text)
    assert found.ids >= {"query", "new-entity", "answers", "neighbours"}
    assert found.classes.count("answer-row") == 6  # 3 answers and 3 neighbours
    assert "water &lt;lilies&gt;" in response.text and "pond.png" in response.text
    empty_file = client.post(  # a form whose file input was left empty
        "/runs/vl/new",
        headers=HTML,
        data={"text": "water", "relation": "movement"},
        files={"image": ("", b"", "application/octet-stream")},
    )
    assert empty_file.status_code == 200


def test_errors_are_pages_for_browsers_and_json_otherwise(client):
    text, error = page(client, "/runs/vl/entity?id=%3Cnobody%3E", 404)
    assert "error" in error.ids and "unknown entity &#39;&lt;nobody&gt;&#39;" in text
    page(client, "/runs/nope", 404)
    as_json = client.get("/runs/vl/entity?id=nobody")
    assert as_json.status_code == 404 and as_json.json()["detail"].startswith("unknown entity")
    page(client, "/runs/vl/query?anchor=monet&relation=movement&k=0", 422)


def test_the_report(client):
    report = client.get("/runs/vl/report.html")
    assert report.status_code == 200 and "<html" in report.text
    assert report.headers["content-security-policy"].startswith("default-src 'none'")
    assert "no report.html" in client.get("/runs/structural/report.html").json()["detail"]
