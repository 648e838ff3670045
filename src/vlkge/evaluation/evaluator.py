"""Evaluate a model on a split with the filtered ranking protocol (SPEC section 5).

The filter index (at the first evaluation) and candidate pools are built once per evaluator
and reused for every validation; the full entity table is computed once per evaluation.
"""

from __future__ import annotations

import functools
import logging

import torch

from vlkge.allocator import release_freed_memory
from vlkge.data.graph import KnowledgeGraph
from vlkge.data.index import TripleIndex
from vlkge.errors import ConfigError
from vlkge.evaluation.blend import blended, remembered
from vlkge.evaluation.calibration import fit_weights, hub_penalties, penalty_scorer
from vlkge.evaluation.metrics import report, role_report
from vlkge.evaluation.new_anchors import NewAnchors, Unscorable
from vlkge.evaluation.ranking import ScoreFn, rank_triples
from vlkge.models.model import KGEModel
from vlkge.models.sharded import entity_shard
from vlkge.precision import autocast, model_device

log = logging.getLogger(__name__)


class Evaluator:
    """Filtered link-prediction evaluation for one graph and one ``evaluation`` config."""

    def __init__(self, kg: KnowledgeGraph, cfg: dict, precision: str = "fp32"):
        self.kg = kg
        self.precision = precision  # of the model's scores (vlkge.precision); ranks use fp32
        self.sides = tuple(cfg["sides"])
        self.ties = cfg["ties"]
        self.max_scores = int(cfg["max_scores"])
        cap = cfg.get("max_memory_mb")
        self.max_memory = None if cap is None else int(cap * 2**20)
        unknown = [s for s in cfg["filter_splits"] if s not in kg.splits]
        if unknown:
            raise ConfigError(f"evaluation.filter_splits names missing split(s): {unknown}")
        self.filter_splits = list(cfg["filter_splits"])
        self.merged = cfg["filter"] == "merged"  # the reference's one map for both directions
        self.excluded = {kg.relation_id(name) for name in cfg["exclude_relations"]}
        self.candidates = cfg["candidates"]
        self.same_split = torch.tensor(
            [kg.relation_id(name) for name in cfg["pool_same_split_relations"]], dtype=torch.long
        )
        self._pools: dict[str, torch.Tensor] = {}
        # inductive metrics: only triples with an entity unseen in training (head or tail)
        self.only_unseen = bool(cfg.get("only_unseen", False))
        self.seen = kg.seen_in_train() if self.only_unseen else None
        self.calibration = cfg.get("calibration") or {"weights": []}
        self.zero_shot_blend = cfg.get("zero_shot_blend") or {"weights": []}
        self.lexical_blend = cfg.get("lexical_blend") or {"weights": []}
        self.run_blend = cfg.get("run_blend") or {"run": None, "weights": []}

    @functools.cached_property
    def index(self) -> TripleIndex:
        """The filter, built at the first evaluation: a training run that evaluates only at
        its end does not hold it (~56 bytes per known triple) while it trains."""
        known = torch.cat([self.kg.splits[s] for s in self.filter_splits])
        return TripleIndex(known, self.kg.num_entities, self.kg.num_relations, self.merged)

    def pool(self, split: str) -> torch.Tensor | None:
        """Per-relation candidate mask: tails of r in any split (or in ``split`` only, for the
        relations listed in ``pool_same_split_relations``)."""
        if self.candidates == "all":
            return None
        if split not in self._pools:
            mask = torch.zeros(self.kg.num_relations, self.kg.num_entities, dtype=torch.bool)
            for name, triples in self.kg.splits.items():
                keep = ~torch.isin(triples[:, 1], self.same_split) | (name == split)
                mask[triples[keep, 1], triples[keep, 2]] = True
            self._pools[split] = mask
        return self._pools[split]

    def triples(self, split: str) -> torch.Tensor:
        """The evaluated triples of ``split``: excluded relations left out and, with
        ``only_unseen``, only triples whose head or tail never occurs in training."""
        if split not in self.kg.splits:
            have = ", ".join(self.kg.splits)
            raise ConfigError(f"dataset {self.kg.name} has no {split} split (it has {have})")
        triples = self.kg.splits[split]
        if self.excluded:
            keep = ~torch.isin(triples[:, 1], torch.tensor(sorted(self.excluded)))
            triples = triples[keep]
        if self.seen is not None:
            triples = triples[~(self.seen[triples[:, 0]] & self.seen[triples[:, 2]])]
        return triples

    def rank(
        self,
        score_fn: ScoreFn,
        split: str,
        progress: bool = False,
        triples: torch.Tensor | None = None,
    ) -> dict:
        """Ranks of the evaluated triples of ``split`` (or of ``triples``, some of them)."""
        if triples is None:
            triples = self.triples(split)
            if self.seen is not None and len(triples) == 0:
                log.warning(
                    "evaluation.only_unseen: no %s triple touches an entity unseen in training "
                    "(is this an inductive dataset?); the metrics are empty",
                    split,
                )
        return rank_triples(
            score_fn,
            triples,
            self.kg.num_entities,
            self.index,
            sides=self.sides,
            ties=self.ties,
            max_scores=self.max_scores,
            pool=self.pool(split),
            progress=progress,
            max_memory=self.max_memory,
        )

    def evaluate_scores(self, score_fn: ScoreFn, split: str, progress: bool = False) -> dict:
        """Metrics (``metrics.json`` layout) for any scorer, trained model or zero-shot."""
        ranks = self.rank(score_fn, split, progress)
        triples = self.triples(split)
        out = report(ranks, triples[:, 1], self.kg.relations)
        if self.seen is not None:
            out["by_role"] = role_report(ranks, triples, self.seen)
        return out

    def calibrate(self, score_fn: ScoreFn) -> tuple[ScoreFn, dict | None]:
        """``score_fn`` with the hubness correction of ``evaluation.calibration``
        (:mod:`vlkge.evaluation.calibration`), its weights fit on the calibration split, and a
        summary for ``metrics.json``; ``score_fn`` itself (and ``None``) when it is off."""
        if not self.calibration["weights"]:
            return score_fn, None
        temperature = self.calibration["temperature"]
        scorer, summary = self.blend(
            score_fn, self.hub_scorer(score_fn, temperature), "calibration"
        )
        return scorer, {**summary, "temperature": temperature}

    def hub_scorer(self, score_fn: ScoreFn, temperature: float) -> ScoreFn:
        """The negated hub penalties of ``score_fn``'s candidates at ``temperature`` (the
        calibration's second scorer)."""
        return penalty_scorer(self.hub_penalties(score_fn, temperature))

    def hub_penalties(self, score_fn: ScoreFn, temperature: float) -> dict[str, torch.Tensor]:
        """``{side: [R, E]}`` hub penalties of ``score_fn``'s candidates at ``temperature``
        (:func:`~vlkge.evaluation.calibration.hub_penalties`; its bank:
        ``evaluation.calibration.bank``)."""
        penalties = hub_penalties(
            score_fn,
            self.kg.num_entities,
            self.kg.num_relations,
            self.sides,
            temperature,
            self.calibration["bank"],
        )
        release_freed_memory()  # the bank's score matrices: the peak of a long evaluation
        return penalties

    def blend(
        self, score_fn: ScoreFn, other_fn: ScoreFn, key: str = "zero_shot_blend"
    ) -> tuple[ScoreFn, dict | None]:
        """``score_fn + w * other_fn`` (:mod:`vlkge.evaluation.blend`) with ``w`` per relation
        and side fit on ``evaluation.<key>.split`` from its ``weights`` (``key``:
        ``zero_shot_blend``, ``lexical_blend``, ``run_blend`` or ``calibration``), and a
        summary for ``metrics.json``; ``score_fn`` itself (and ``None``) when its grid is empty."""
        settings = getattr(self, key)
        if not settings["weights"]:
            return score_fn, None
        scorer, chosen = self.fit_blend(score_fn, other_fn, settings)
        log.info("%s fit on %s: %s", key, settings["split"], chosen)
        return scorer, {"split": settings["split"], "weights": chosen}

    def fit_blend(
        self, score_fn: ScoreFn, other_fn: ScoreFn, settings: dict
    ) -> tuple[ScoreFn, dict[str, dict[str, float]]]:
        """``blended(score_fn, other_fn, w)`` with, per side and relation, the weight of
        ``settings["weights"]`` (and 0) whose ranks have the best MRR on ``settings["split"]``,
        and the chosen nonzero weights by relation name. The split is ranked in pieces of
        ``max_scores / E`` triples, every weight's pass over a piece reading the two scorers'
        scores of the first pass from memory (:func:`~vlkge.evaluation.blend.remembered`:
        one scoring per part instead of one per weight, one piece's scores held)."""
        split, num_relations = settings["split"], self.kg.num_relations
        grid = sorted({0.0, *map(float, settings["weights"])})
        uniform = {w: {s: torch.full((num_relations,), w) for s in self.sides} for w in grid}
        first, forget_first = remembered(score_fn)
        other, forget_other = remembered(other_fn)
        triples = self.triples(split)
        pieces = {w: [] for w in grid}
        for piece in triples.split(max(1, self.max_scores // self.kg.num_entities)):
            for w in grid:
                pieces[w].append(self.rank(blended(first, other, uniform[w]), split, triples=piece))
            forget_first()
            forget_other()
        ranks = {
            w: {s: torch.cat([p[s] for p in found]) for s in self.sides}
            for w, found in pieces.items()
        }
        weights = fit_weights(ranks, triples[:, 1], num_relations)
        chosen = {
            side: {self.kg.relations[r]: float(w) for r, w in enumerate(weights[side]) if w}
            for side in self.sides
        }
        return blended(score_fn, other_fn, weights), chosen

    @torch.no_grad()
    def evaluate(self, model: KGEModel, split: str, progress: bool = False) -> dict:
        was_training = model.training
        model.eval()
        try:
            return self.evaluate_scores(model_scorer(model, self.precision), split, progress)
        finally:
            model.train(was_training)


def model_scorer(
    model: KGEModel, precision: str = "fp32", table: torch.Tensor | None = None
) -> ScoreFn:
    """A ``ScoreFn`` over a model, computing the entity table once (on the model's device,
    under ``precision``) unless ``table`` is that table already; ids are moved to the model's
    device. With ``new``, the anchors are new entities (:func:`new_vectors`). A model with
    sharded tables gets a :class:`ShardedScorer`."""
    if entity_shard(model) is not None:
        return ShardedScorer(model, precision)
    device = model_device(model)
    if table is None:
        with autocast(device, precision):
            table = model.entity_table()

    def score(
        side: str,
        anchor: torch.Tensor,
        relation: torch.Tensor,
        span: tuple[int, int] | None = None,
        new: NewAnchors | None = None,
    ) -> torch.Tensor:
        with autocast(device, precision):
            if new is None:
                return model.score_against(
                    side, anchor.to(device), relation.to(device), table=table, span=span
                )
            vectors = new_vectors(model, new, anchor).to(device)
            pool = table if span is None else table[span[0] : span[1]]
            return model.score_vectors(side, vectors, relation.to(device), pool)

    score.blocked = model.interaction.inner_product  # vlkge.evaluation.ranking.ScoreFn
    return score


def new_vectors(model: KGEModel, new: NewAnchors, anchor: torch.Tensor) -> torch.Tensor:
    """The model's vectors of the new entities ``anchor`` (rows of ``new``), from the features
    of theirs it reads (:meth:`~vlkge.models.representations.Representation.represent`);
    :class:`Unscorable` for a model that reads none of them."""
    usable = list(model.entities.modalities)
    if not usable:
        raise Unscorable("its model is structural")
    return model.entities.represent(new.given(anchor, usable), new.imaginary)


class ShardedScorer:
    """A ``ScoreFn`` of a model whose tables are sharded across ranks (every rank calls it
    alike): the vectors of this rank's entities ``shard = (lo, hi)`` are computed once; each
    chunk's anchors are fetched once, from their owners, on its first call (a new ``anchor``
    tensor), since fetching is a collective that every rank makes at the same point."""

    def __init__(self, model: KGEModel, precision: str = "fp32"):
        self.model, self.precision = model, precision
        self.device = model_device(model)
        self.shard = entity_shard(model)
        with autocast(self.device, precision):
            self.pool = model.entities(torch.arange(*self.shard, device=self.device))
        self._anchor: torch.Tensor | None = None
        self._vectors: torch.Tensor | None = None

    def __call__(self, side, anchor, relation, span: tuple[int, int] | None = None):
        with autocast(self.device, self.precision):
            if anchor is not self._anchor:
                self._anchor = anchor
                self._vectors = self.model.entities(anchor.to(self.device))
            start, end = span or self.shard
            pool = self.pool[start - self.shard[0] : end - self.shard[0]]
            return self.model.score_vectors(side, self._vectors, relation.to(self.device), pool)
