"""HTML pages from the Jinja2 templates shipped in ``reports/templates/``.

Every page extends ``base.html.j2`` (head, inline styles, navigation, footer), so a page is one
self-contained file. Autoescaping is on: every name, text and value a template writes is
HTML-escaped; a page that needs markup writes it in the template, never in a value. Another
package's pages reuse the layout through :func:`environment` with its own package name.
"""

from __future__ import annotations

import datetime
import functools

import jinja2

from vlkge import __version__
from vlkge.reports.tables import METRIC_COLUMNS, number


def _now() -> str:
    return datetime.datetime.now().isoformat(timespec="seconds")


@functools.cache
def environment(*packages: str) -> jinja2.Environment:
    """Templates of ``packages`` (each a package with a ``templates/`` folder) before the
    reports' own, so their pages can ``{% extends "base.html.j2" %}``; undefined names are
    errors, not blanks."""
    loader = jinja2.ChoiceLoader(
        [jinja2.PackageLoader(package) for package in (*packages, __package__)]
    )
    env = jinja2.Environment(
        loader=loader,
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["number"] = number
    env.globals.update(version=__version__, now=_now, metric_columns=METRIC_COLUMNS)
    return env


def render(template: str, **context: object) -> str:
    """The page ``template`` (a file in ``reports/templates/``) filled with ``context``."""
    return environment().get_template(template).render(**context)
