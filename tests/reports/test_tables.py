"""The one list of metric columns: every metric the evaluation writes has a column, cells and
best values are written one way, and the terminal table follows the list."""

from __future__ import annotations

import math

import torch

from vlkge.evaluation.metrics import summarize
from vlkge.reports.tables import METRIC_COLUMNS, aligned, metrics_table, number


def test_every_metric_of_the_layout_has_one_column():
    keys = [column.key for column in METRIC_COLUMNS]
    assert len(set(keys)) == len(keys)
    assert set(keys) == set(summarize(torch.tensor([1.0, 2.0]))) - {"count"}
    assert [c.label for c in METRIC_COLUMNS] == ["MRR", "MR", "H@1", "H@3", "H@10"]
    assert [c.key for c in METRIC_COLUMNS if not c.higher_is_better] == ["mr"]


def test_cells_and_best_values():
    mrr, mr = METRIC_COLUMNS[0], METRIC_COLUMNS[1]
    assert mrr.cell({"mrr": 0.123456}) == "0.1235"
    assert mr.cell({"mr": 12.345}) == "12.35"
    assert mrr.cell({}) == mrr.cell({"mrr": math.nan}) == "–"
    blocks = [{"mrr": 0.2, "mr": 9.0}, {"mrr": 0.5, "mr": 3.0}, {"mrr": math.nan}]
    assert mrr.best(blocks) == "0.5000"  # higher is better; NaN never wins
    assert mr.best(blocks) == "3.00"  # lower is better
    assert mrr.best([{}, {"mrr": None}]) is None
    assert number(12345) == "12,345" and number(None) == "–" and number("x") == "x"


def test_aligned_text():
    lines = aligned([["run", "MRR"], ["a-long-name", "0.5"]], text_columns=1)
    assert lines == ["run          MRR", "a-long-name  0.5"]


def test_terminal_table_follows_the_columns():
    block = {"mrr": 0.5, "mr": 2.0, "hits@1": 0.25, "hits@3": 0.75, "hits@10": 1.0, "count": 4}
    metrics = {
        "both": block,
        "head": block,
        "by_role": {"unseen_anchor": block},
        "per_relation": {"r" * 40: block},
    }
    lines = metrics_table(metrics, "test").splitlines()
    assert lines[0].split() == ["test", *(c.label for c in METRIC_COLUMNS), "n"]
    assert [line.split()[0] for line in lines[1:]] == ["both", "head", "unseen_anchor", "r" * 30]
    assert lines[-1].startswith("  r")  # relations are indented
    assert lines[1].split()[1:] == ["0.5000", "2.00", "0.2500", "0.7500", "1.0000", "4"]
    assert len({len(line) for line in lines}) == 1  # aligned
