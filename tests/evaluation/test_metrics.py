"""MRR, MR and Hits@k, per side and relation, against sums written out by hand."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vlkge.evaluation.metrics import report, summarize


def test_summarize_and_report():
    ranks = torch.tensor([1.0, 2.0, 4.0, 11.0, 1.5])
    m = summarize(ranks)
    assert m["mrr"] == pytest.approx(sum(1 / r for r in ranks.tolist()) / 5)
    assert m["mr"] == pytest.approx(19.5 / 5)
    assert m["hits@1"] == pytest.approx(0.2) and m["hits@3"] == pytest.approx(0.6)
    assert m["hits@10"] == pytest.approx(0.8)
    out = report({"head": ranks[:2], "tail": ranks[2:4]}, torch.tensor([0, 1]), ["r0", "r1"])
    assert out["both"]["count"] == 4 and out["head"]["count"] == 2
    assert out["per_relation"]["r0"]["mrr"] == pytest.approx((1 + 1 / 4) / 2)
    assert out["per_relation"]["r1"]["mrr"] == pytest.approx((1 / 2 + 1 / 11) / 2)
    assert all(isinstance(v, float) for k, v in out["both"].items() if k != "count")
    assert math.isnan(summarize(torch.tensor([]))["mrr"])


@settings(max_examples=80, deadline=None)
@given(ranks=st.lists(st.floats(1.0, 500.0, allow_subnormal=False), min_size=1, max_size=40))
def test_metric_summaries_are_consistent(ranks):
    m = summarize(torch.tensor(ranks, dtype=torch.float64))
    assert 0.0 < m["mrr"] <= 1.0 and m["mr"] >= 1.0
    assert 1.0 / m["mr"] <= m["mrr"] + 1e-12  # the mean of 1/r is at least 1/mean(r)
    assert 0.0 <= m["hits@1"] <= m["hits@3"] <= m["hits@10"] <= 1.0
    assert m["hits@1"] <= m["mrr"] + 1e-12  # a rank-1 answer contributes 1 to the MRR
