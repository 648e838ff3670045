"""The metric columns every table shows (the run report, ``vlkge compare``, the metrics printed
after ``train``/``evaluate``/``zero-shot``), how their values are written, and aligned text.

A metric in the ``metrics.json`` layout (``evaluation/metrics.py``) appears in those tables once
it is listed in :data:`METRIC_COLUMNS` (docs/architecture.md, "A metric").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from vlkge.evaluation.metrics import HITS_AT

MISSING = "–"  # a value that is absent or not a number


def number(value: object, digits: int = 4) -> str:
    """``value`` as a table cell: floats to ``digits`` places, integers with thousands
    separators, nothing (or NaN) as a dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


@dataclass(frozen=True)
class MetricColumn:
    """One metric as a table column: its key in a ``metrics.json`` block, its heading, the
    decimals shown, and which way is better (the best value of a comparison is marked)."""

    key: str
    label: str
    digits: int
    higher_is_better: bool

    def cell(self, block: dict) -> str:
        """This metric of one ``metrics.json`` block (a side, a relation) as a cell."""
        return number(block.get(self.key), self.digits)

    def best(self, blocks: list[dict]) -> str | None:
        """The cell of the best value among ``blocks`` (``None`` when none has a number)."""
        values = [b.get(self.key) for b in blocks]
        values = [v for v in values if isinstance(v, float) and not math.isnan(v)]
        if not values:
            return None
        return number(max(values) if self.higher_is_better else min(values), self.digits)


METRIC_COLUMNS: tuple[MetricColumn, ...] = (
    MetricColumn("mrr", "MRR", 4, higher_is_better=True),
    MetricColumn("mr", "MR", 2, higher_is_better=False),
    *(MetricColumn(f"hits@{k}", f"H@{k}", 4, higher_is_better=True) for k in HITS_AT),
)


def aligned(rows: list[list[str]], text_columns: int = 1) -> list[str]:
    """``rows`` (the header first) as lines of aligned text: the first ``text_columns``
    columns flush left, numbers flush right, two spaces between columns."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            cell.ljust(width) if i < text_columns else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return [line(row) for row in rows]


RELATION_CHARS = 30  # of a relation's name in a terminal table


def metrics_table(metrics: dict, title: str) -> str:
    """One split's ``metrics.json`` block as aligned text: both sides, each side, the roles of
    unseen entities (inductive runs), then every relation, indented."""
    blocks = [(key, metrics[key]) for key in ("both", "head", "tail") if key in metrics]
    blocks += list(metrics.get("by_role", {}).items())
    blocks += [
        (f"  {relation[:RELATION_CHARS]}", block)
        for relation, block in metrics.get("per_relation", {}).items()
    ]
    header = [title, *(c.label for c in METRIC_COLUMNS), "n"]
    rows = [[key, *(c.cell(m) for c in METRIC_COLUMNS), str(m["count"])] for key, m in blocks]
    return "\n".join(aligned([header, *rows]))
