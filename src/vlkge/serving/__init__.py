"""``vlkge serve``: an interactive page and a JSON API over trained runs, each loaded once
(docs/serving.md)."""

from vlkge.serving.app import create_app, serve
from vlkge.serving.inputs import Limits
from vlkge.serving.state import ServedRun, load_served_runs

__all__ = ["Limits", "ServedRun", "create_app", "load_served_runs", "serve"]
