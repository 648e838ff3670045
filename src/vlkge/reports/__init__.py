"""Reports a person reads: one HTML page per run (:func:`write_report`) and a table comparing
runs (:func:`compare_runs`), both rendered from the Jinja2 templates in ``templates/``. Figures
need matplotlib."""

from vlkge.reports.compare import compare_runs, format_table, render_html
from vlkge.reports.html import write_report
from vlkge.reports.runs import RunFolder, read_run

__all__ = ["RunFolder", "compare_runs", "format_table", "read_run", "render_html", "write_report"]
