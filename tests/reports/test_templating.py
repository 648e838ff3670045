"""Pages from the shipped templates: autoescaping everywhere, the shared layout reusable by
another package's pages, an unknown name an error, every template shipped in the wheel."""

from __future__ import annotations

import fnmatch
from pathlib import Path

import jinja2
import pytest

from vlkge.reports.templating import environment, render

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "src" / "vlkge" / "reports" / "templates"
ATTACK = "<script>alert('x')</script>"


def test_another_package_extends_the_base_layout(tmp_path, monkeypatch):
    package = tmp_path / "other_pages"
    (package / "templates").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "templates" / "page.html.j2").write_text(
        '{% extends "base.html.j2" %}{% block body %}<p id="x">{{ text }}</p>{% endblock %}'
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    page = (
        environment("other_pages")
        .get_template("page.html.j2")
        .render(title=ATTACK, text=ATTACK, nav=[("/search?q=a&b=c", ATTACK)])
    )
    assert "<script>" not in page
    assert page.count("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;") == 3
    assert '<a href="/search?q=a&amp;b=c">' in page
    assert "<style>" in page and "font:" in page  # the shared styles, inline
    assert "vlkge " in page.rsplit('<p class="meta">', 1)[1]  # the shared footer


def test_unknown_names_are_errors_not_blanks():
    with pytest.raises(jinja2.UndefinedError):
        render("compare.html.j2", title="t")


def test_every_template_is_package_data():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["vlkge"]
    shipped = [str(p.relative_to(ROOT / "src" / "vlkge")) for p in TEMPLATES.iterdir()]
    assert {"base.html.j2", "style.css"} <= {Path(p).name for p in shipped}
    for path in shipped:
        assert any(fnmatch.fnmatch(path, pattern) for pattern in patterns), path
