"""Evaluation: filtered ranking, metrics and the evaluator."""

from vlkge.evaluation.evaluator import Evaluator, model_scorer
from vlkge.evaluation.metrics import report, summarize
from vlkge.evaluation.ranking import TIES, rank_triples, ranks_from_scores

__all__ = [
    "TIES",
    "Evaluator",
    "model_scorer",
    "rank_triples",
    "ranks_from_scores",
    "report",
    "summarize",
]
