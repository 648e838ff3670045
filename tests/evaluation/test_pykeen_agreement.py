"""vlkge's filtered ranks agree with PyKEEN's on the same scores.

Three references for the same numbers:

- PyKEEN's own code path: ``create_sparse_positive_filter_`` builds the filter from the known
  triples, ``filter_scores_`` sets the filtered scores to NaN, the true score is written back,
  and ``Ranks.from_scores`` / ``RankBasedEvaluator`` compute optimistic, pessimistic and
  realistic ranks (``pykeen.evaluation.evaluator._evaluate_batch`` does exactly this);
- a brute-force pure-Python rank over lists;
- end to end: a tiny DistMult trained with vlkge on Nations, whose test MRR from vlkge's
  ``Evaluator`` must equal the MRR PyKEEN's ``RankBasedEvaluator`` computes from the same
  model's scores with the same filter (train + valid + test).

Scores are integer-valued so that ties are frequent, which is where tie policies differ.
"""

from __future__ import annotations

import math

import pytest
import torch

pykeen_evaluator = pytest.importorskip("pykeen.evaluation.evaluator")
from pykeen.evaluation import RankBasedEvaluator  # noqa: E402
from pykeen.evaluation.ranks import Ranks  # noqa: E402

from vlkge.config import load_config  # noqa: E402
from vlkge.data.index import TripleIndex  # noqa: E402
from vlkge.evaluation.evaluator import Evaluator, model_scorer  # noqa: E402
from vlkge.evaluation.ranking import rank_triples, ranks_from_scores  # noqa: E402
from vlkge.training.setup import prepare  # noqa: E402
from vlkge.training.trainer import Trainer  # noqa: E402

PYKEEN_TIES = ("optimistic", "pessimistic", "realistic")
COLUMN = {"head": 0, "tail": 2}


# --- references ------------------------------------------------------------------------------
def pykeen_ranks(scores: torch.Tensor, targets: torch.Tensor, filter_batch: torch.Tensor | None):
    """PyKEEN's filtered ranks of ``targets`` in ``scores`` (a copy is modified).

    ``filter_batch`` is ``[m, 2]`` (row, entity) pairs to filter, as PyKEEN's
    ``create_sparse_positive_filter_`` returns them (it includes the target itself).
    """
    scores = scores.clone().float()
    rows = torch.arange(len(targets))
    true = scores[rows, targets].clone()
    if filter_batch is not None and len(filter_batch):
        scores = pykeen_evaluator.filter_scores_(scores=scores, filter_batch=filter_batch)
    scores[rows, targets] = true
    return Ranks.from_scores(true_score=true.unsqueeze(1), all_scores=scores)


def brute_force_rank(row: list[float], target: int, filtered: set[int], ties: str) -> float:
    """Rank of ``row[target]`` among the candidates not filtered (pure Python)."""
    true = row[target]
    others = [j for j in range(len(row)) if j != target and j not in filtered]
    others = [j for j in others if row[j] != -math.inf]  # -inf on entry: not a candidate
    greater = sum(1 for j in others if row[j] > true)
    equal = sum(1 for j in others if row[j] == true)
    before = sum(1 for j in others if row[j] == true and j < target)
    return {
        "optimistic": greater + 1,
        "pessimistic": greater + equal + 1,
        "realistic": greater + equal / 2 + 1,
        "ordinal": greater + before + 1,
    }[ties]


def random_case(seed: int, rows: int = 48, cols: int = 30, levels: int = 4):
    """Integer scores (many ties), targets, and a random filter that often hits the target."""
    g = torch.Generator().manual_seed(seed)
    scores = torch.randint(levels, (rows, cols), generator=g).float()
    targets = torch.randint(cols, (rows,), generator=g)
    mask = torch.rand(rows, cols, generator=g) < 0.3
    mask[torch.arange(rows), targets] |= torch.rand(rows, generator=g) < 0.5
    frows, fcols = mask.nonzero(as_tuple=True)
    return scores, targets, frows, fcols


# --- (a) + (b): random score matrices ----------------------------------------------------------
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("ties", PYKEEN_TIES)
def test_ranks_from_scores_match_pykeen(seed, ties):
    scores, targets, frows, fcols = random_case(seed, levels=2 + seed)
    expected = getattr(pykeen_ranks(scores, targets, torch.stack([frows, fcols], 1)), ties)
    got = ranks_from_scores(scores.clone(), targets, frows, fcols, ties)
    torch.testing.assert_close(got, expected.double(), rtol=0, atol=0)


@pytest.mark.parametrize("ties", PYKEEN_TIES)
def test_unfiltered_ranks_match_pykeen(ties):
    scores, targets, _, _ = random_case(11, levels=3)
    expected = getattr(pykeen_ranks(scores, targets, None), ties)
    got = ranks_from_scores(scores.clone(), targets, ties=ties)
    torch.testing.assert_close(got, expected.double(), rtol=0, atol=0)


@pytest.mark.parametrize("ties", PYKEEN_TIES)
def test_all_tied_rows(ties):
    """Every candidate tied with the target: the extreme case of the tie policies."""
    scores = torch.zeros(5, 12)
    targets = torch.tensor([0, 3, 11, 5, 7])
    frows = torch.tensor([0, 0, 1, 2, 2, 2])
    fcols = torch.tensor([1, 2, 3, 0, 1, 11])
    expected = getattr(pykeen_ranks(scores, targets, torch.stack([frows, fcols], 1)), ties)
    got = ranks_from_scores(scores.clone(), targets, frows, fcols, ties)
    torch.testing.assert_close(got, expected.double(), rtol=0, atol=0)
    unfiltered = {"optimistic": 1.0, "pessimistic": 12.0, "realistic": 6.5}[ties]
    assert got[3] == got[4] == unfiltered


@pytest.mark.parametrize("ties", PYKEEN_TIES)
def test_excluded_candidates_match_pykeen_nan(ties):
    """A candidate at -inf on entry (outside a pool) never counts in vlkge; PyKEEN's way of
    leaving a candidate out is NaN. Both must give the same rank."""
    scores, targets, frows, fcols = random_case(5, levels=3)
    g = torch.Generator().manual_seed(99)
    out = torch.rand(scores.shape, generator=g) < 0.2
    out[torch.arange(len(targets)), targets] = False
    ours = scores.masked_fill(out, float("-inf"))
    theirs = scores.masked_fill(out, float("nan"))
    expected = getattr(pykeen_ranks(theirs, targets, torch.stack([frows, fcols], 1)), ties)
    got = ranks_from_scores(ours, targets, frows, fcols, ties)
    torch.testing.assert_close(got, expected.double(), rtol=0, atol=0)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("ties", (*PYKEEN_TIES, "ordinal"))
def test_ranks_from_scores_match_brute_force(seed, ties):
    scores, targets, frows, fcols = random_case(100 + seed, rows=20, cols=15, levels=3)
    filtered: list[set[int]] = [set() for _ in range(len(targets))]
    for r, c in zip(frows.tolist(), fcols.tolist(), strict=True):
        filtered[r].add(c)
    got = ranks_from_scores(scores.clone(), targets, frows, fcols, ties)
    for i, row in enumerate(scores.tolist()):
        assert got[i].item() == brute_force_rank(row, int(targets[i]), filtered[i], ties), i


# --- filters built from triples: vlkge's TripleIndex vs PyKEEN's sparse filter -----------------
def random_graph(seed: int, num_entities: int = 12, num_relations: int = 3, n: int = 90):
    g = torch.Generator().manual_seed(seed)
    triples = torch.stack(
        [
            torch.randint(num_entities, (n,), generator=g),
            torch.randint(num_relations, (n,), generator=g),
            torch.randint(num_entities, (n,), generator=g),
        ],
        dim=1,
    )
    return torch.unique(triples, dim=0), num_entities, num_relations


@pytest.mark.parametrize("side", ("head", "tail"))
def test_filter_index_matches_pykeen_filter(side):
    known, num_entities, num_relations = random_graph(0)
    batch = known[::3]
    index = TripleIndex(known, num_entities, num_relations)
    anchor = batch[:, 0] if side == "tail" else batch[:, 2]
    rows, cols = index.known(side, anchor, batch[:, 1])
    theirs, _ = pykeen_evaluator.create_sparse_positive_filter_(
        hrt_batch=batch, all_pos_triples=known, filter_col=COLUMN[side]
    )
    ours = sorted(zip(rows.tolist(), cols.tolist(), strict=True))
    assert ours == sorted(map(tuple, theirs.tolist()))


@pytest.mark.parametrize("ties", PYKEEN_TIES)
def test_rank_triples_matches_pykeen_and_brute_force(ties):
    """Whole pipeline on integer scores from a lookup table, with tiny chunks: vlkge's
    ``rank_triples`` vs PyKEEN's filter + ranks vs brute force over the known triples."""
    known, num_entities, num_relations = random_graph(1)
    test = known[1::4]
    g = torch.Generator().manual_seed(3)
    table = torch.randint(3, (num_entities, num_relations, num_entities), generator=g).float()

    def score_fn(side, anchor, relation):
        return table[anchor, relation] if side == "tail" else table[:, relation, anchor].T

    index = TripleIndex(known, num_entities, num_relations)
    ours = rank_triples(score_fn, test, num_entities, index, ties=ties, max_scores=3 * num_entities)
    known_set = set(map(tuple, known.tolist()))
    for side in ("head", "tail"):
        col = COLUMN[side]
        anchor = test[:, 2 - col]
        filter_batch, _ = pykeen_evaluator.create_sparse_positive_filter_(
            hrt_batch=test, all_pos_triples=known, filter_col=col
        )
        theirs = pykeen_ranks(score_fn(side, anchor, test[:, 1]), test[:, col], filter_batch)
        torch.testing.assert_close(ours[side], getattr(theirs, ties).double(), rtol=0, atol=0)
        for i, (h, r, t) in enumerate(test.tolist()):
            target = h if side == "head" else t
            row = score_fn(side, anchor[i : i + 1], test[i : i + 1, 1])[0].tolist()
            filtered = {
                e
                for e in range(num_entities)
                if ((e, r, t) if side == "head" else (h, r, e)) in known_set
            }
            assert ours[side][i].item() == brute_force_rank(row, target, filtered, ties)


# --- (c) end to end: a trained DistMult on Nations ---------------------------------------------
class _ScoresAsPykeenModel:
    """Just enough of a PyKEEN model for ``_evaluate_batch``: ``predict`` from a vlkge model."""

    def __init__(self, model):
        self.score = model_scorer(model)

    def predict(self, hrt_batch, target, slice_size=None, mode=None, **kwargs):
        if target == "head":
            return self.score("head", hrt_batch[:, 2], hrt_batch[:, 1]).float()
        return self.score("tail", hrt_batch[:, 0], hrt_batch[:, 1]).float()


def pykeen_metrics(model, test: torch.Tensor, all_pos: torch.Tensor) -> dict[str, float]:
    """PyKEEN's filtered realistic metrics of ``model`` on ``test`` (its own batch loop)."""
    evaluator = RankBasedEvaluator(filtered=True)
    adapter = _ScoresAsPykeenModel(model)
    for batch in test.split(64):
        relation_filter = None
        for target in ("head", "tail"):
            relation_filter = pykeen_evaluator._evaluate_batch(
                batch=batch,
                model=adapter,
                target=target,
                evaluator=evaluator,
                slice_size=None,
                all_pos_triples=all_pos,
                relation_filter=relation_filter,
                restrict_entities_to=None,
                mode=None,
            )
    result = evaluator.finalize()
    keys = {
        "mrr": "inverse_harmonic_mean_rank",
        "mr": "arithmetic_mean_rank",
        "hits@1": "hits_at_1",
        "hits@3": "hits_at_3",
        "hits@10": "hits_at_10",
    }
    return {
        f"{side}.{ours}": float(result.get_metric(f"{side}.realistic.{theirs}"))
        for side in ("both", "head", "tail")
        for ours, theirs in keys.items()
    }


@pytest.fixture(scope="module")
def nations_distmult(tmp_path_factory):
    cfg = load_config(
        overrides=[
            "dataset.name=nations",
            "model.backbone=distmult",
            "model.dim=16",
            "training.epochs=2",
            "training.batch_size=256",
            "training.negatives.num=8",
            # only the scores matter here; unfiltered negatives keep the fixture independent of
            # how the sampler treats Nations' dense queries (up to 13 of 14 entities known)
            "training.negatives.filter_splits=[]",
            "training.progress=false",
            "training.checkpoint_every=0",
            "validation.every=0",
            "seed=7",
        ]
    )
    kg, model = prepare(cfg)
    Trainer(cfg, kg, model, tmp_path_factory.mktemp("run")).fit()
    model.eval()
    return cfg, kg, model


def test_end_to_end_mrr_matches_pykeen(nations_distmult):
    cfg, kg, model = nations_distmult
    assert cfg["evaluation"]["filter_splits"] == ["train", "valid", "test"]
    assert cfg["evaluation"]["ties"] == "realistic"
    ours = Evaluator(kg, cfg["evaluation"]).evaluate(model, "test")
    all_pos = torch.cat([kg.splits[s] for s in ("train", "valid", "test")])
    theirs = pykeen_metrics(model, kg.splits["test"], all_pos)
    # the model learned something (otherwise agreement is cheap): far from random ranking
    assert ours["both"]["mrr"] > 2.0 / kg.num_entities
    for key, value in theirs.items():
        side, metric = key.split(".", 1)
        # PyKEEN accumulates in float32; vlkge in float64
        assert ours[side][metric] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    assert ours["both"]["count"] == 2 * len(kg.splits["test"])
