"""A run as ``vlkge serve`` holds it: loaded once (model, fused entity table, filter index,
names, texts, image paths, metrics), then only read, so that requests on many threads share
nothing they could change. The one exception, the encoder for new entities, is loaded on the
first request that needs it; concurrent new entities are encoded together in one batch
(:class:`~vlkge.serving.batching.Combiner`, docs/serving.md)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vlkge.data.graph import KnowledgeGraph
from vlkge.data.index import TripleIndex
from vlkge.encoders.base import Encoder
from vlkge.errors import echo
from vlkge.evaluation.new_anchors import NewAnchors
from vlkge.evaluation.ranking import ScoreFn, ranks_in_row
from vlkge.export import nearest_to, unit_rows
from vlkge.models.model import KGEModel
from vlkge.predict import (
    RunEncoders,
    encode_new_entities,
    new_entity_inputs,
    predict_new_entity,
    rank_answers,
)
from vlkge.serving.batching import Combiner, LoopBatcher
from vlkge.serving.inputs import NotFound, media_type
from vlkge.terms import SIDES, check_side
from vlkge.training.final import recorded_scorer

SNIPPET_CHARS = 200  # of an entity's text beside a ranked answer
MAX_TRIPLES = 200  # of an entity's triples per split and role on its page
WARM_SCORES = 2**22  # scores per call while warming (16 MB of float32)
DEFAULT_SIDE = "tail"  # the side a query predicts when it names none, as in vlkge predict


@dataclass
class ServedRun:
    """One loaded run; ``slug`` names it in URLs."""

    slug: str
    folder: Path
    cfg: dict
    kg: KnowledgeGraph
    model: KGEModel
    metrics: dict | None
    table: torch.Tensor = field(init=False, repr=False)  # what the backbone scores
    score_fn: ScoreFn = field(init=False, repr=False)  # the run's final scorer, as evaluated
    stages: list[str] = field(init=False)  # what that scorer blends in beside the model
    unit: torch.Tensor = field(init=False, repr=False)  # its rows L2-normalised (cosines)
    index: TripleIndex = field(init=False, repr=False)  # every known triple, all splits
    seen: torch.Tensor = field(init=False, repr=False)  # entities in training triples
    split_index: dict[str, TripleIndex] = field(init=False, repr=False)
    _search: list[tuple[str, str, str]] = field(init=False, repr=False)
    _thumbnails: list[int | None] = field(init=False, repr=False)  # first image that shows
    encoders: RunEncoders = field(init=False, repr=False, default_factory=RunEncoders)
    _encode: Combiner = field(init=False, repr=False)
    _score: LoopBatcher = field(init=False, repr=False)

    def __post_init__(self) -> None:
        kg = self.kg
        self.model.eval()
        self.table = self.model.entity_table().detach()
        self.score_fn, self.stages = recorded_scorer(
            self.folder, self.cfg, kg, self.model, self.metrics or {}, self.table, self.encoders
        )
        self.unit = unit_rows(self.table)
        self.index = TripleIndex(kg.all_triples(), kg.num_entities, kg.num_relations)
        self.seen = kg.seen_in_train()
        self.split_index = {  # the evaluated splits: training answers are marked known
            split: TripleIndex(triples, kg.num_entities, kg.num_relations)
            for split, triples in kg.splits.items()
            if split != "train"
        }
        self._search = [
            (label.lower(), kg.display_name(i).lower(), (self.text(label) or "").lower())
            for i, label in enumerate(kg.entities)
        ]
        self._thumbnails = [
            next((i for i, path in enumerate(self.images(label)) if media_type(path)), None)
            for label in kg.entities
        ]
        self._encode = Combiner(_encode_batch)
        self._score = LoopBatcher(self._score_queries)
        self._warm()

    # --- what the graph holds --------------------------------------------------------------
    def entity_id(self, label: str) -> int:
        index = self.kg.entity_index.get(label)
        if index is None:
            raise NotFound(f"unknown entity {echo(label)} in run {self.slug}")
        return index

    def relation_id(self, name: str) -> int:
        index = self.kg.relation_index.get(name)
        if index is None:
            raise NotFound(str(self.kg.unknown_relation(name)))
        return index

    def texts(self, label: str) -> list[str]:
        manifest = self.kg.manifest
        return list(manifest.texts.get(label, [])) if manifest is not None else []

    def text(self, label: str) -> str | None:
        texts = self.texts(label)
        return " ".join(texts[0].split()) if texts else None

    def images(self, label: str) -> list[str]:
        manifest = self.kg.manifest
        return list(manifest.images.get(label, [])) if manifest is not None else []

    def pictures(self, label: str) -> list[int]:
        """Which of the entity's images can be shown (read now: a page shows them all)."""
        return [i for i, path in enumerate(self.images(label)) if media_type(path)]

    def card(self, label: str) -> dict:
        """What a list shows of an entity beside its rank: name, a text snippet, and which of
        its images is the thumbnail (``None`` when none can be shown)."""
        index = self.entity_id(label)
        text = self.text(label)
        if text and len(text) > SNIPPET_CHARS:
            text = text[: SNIPPET_CHARS - 1] + "…"
        return {
            "entity": label,
            "name": self.kg.display_name(index),
            "text": text,
            "thumbnail": self._thumbnails[index],
        }

    def search(self, query: str, limit: int) -> list[dict]:
        """Entities whose id, name or text holds ``query`` (case-insensitive): exact ids and
        names first, then names and ids that start with it, then those that hold it, then
        texts that hold it; shorter names first within each."""
        needle = query.strip().lower()
        if not needle:
            return []
        found = []
        for i, (label, name, text) in enumerate(self._search):
            if needle == label or needle == name:
                tier = 0
            elif name.startswith(needle) or label.startswith(needle):
                tier = 1
            elif needle in name or needle in label:
                tier = 2
            elif needle in text:
                tier = 3
            else:
                continue
            found.append((tier, len(name), i))
        found.sort()
        return [self.card(self.kg.entities[i]) for _, _, i in found[:limit]]

    def triples(self, label: str) -> dict[str, dict]:
        """Per split, the entity's triples as head and as tail (the first
        :data:`MAX_TRIPLES` of each) and how many there are."""
        kg, entity = self.kg, self.entity_id(label)
        out = {}
        for split, triples in kg.splits.items():
            roles = {}
            for role, column in (("head", 0), ("tail", 2)):
                rows = triples[triples[:, column] == entity]
                roles[role] = {
                    "count": len(rows),
                    "triples": [
                        {
                            "head": kg.entities[h],
                            "relation": kg.relations[r],
                            "tail": kg.entities[t],
                            "other": self.card(kg.entities[t if role == "head" else h]),
                        }
                        for h, r, t in rows[:MAX_TRIPLES].tolist()
                    ],
                }
            out[split] = roles
        return out

    # --- queries ---------------------------------------------------------------------------
    @torch.no_grad()
    def scores(self, side: str, anchor: int, relation: int) -> torch.Tensor:
        """Every entity's score as the ``side`` of the query, as the run was evaluated (the
        model: one product with the table; then the blends its metrics record)."""
        return self._score_queries([(side, anchor, relation)])[0]

    def _warm(self) -> None:
        """Score every relation on both sides once, so that what the final scorer builds on
        its first use (a distance kernel's compilation, a zero-shot baseline's prompt features
        per template) is built now: requests, on the event loop and on the thread pool, then
        only read it."""
        relations = torch.arange(self.kg.num_relations)
        for side in SIDES:
            for block in relations.split(max(1, WARM_SCORES // self.kg.num_entities)):
                self._score_queries([(side, 0, relation) for relation in block.tolist()])

    @torch.no_grad()
    def _score_queries(self, queries: list[tuple[str, int, int]]) -> list[torch.Tensor]:
        """Scores (``[E]`` each) of many ``(side, anchor, relation)`` queries: one call of the
        run's scorer per side (one matrix product with the table)."""

        def score(side: str, rows: list[tuple[str, int, int]]) -> torch.Tensor:
            anchors = torch.tensor([anchor for _, anchor, _ in rows])
            relations = torch.tensor([relation for _, _, relation in rows])
            return self.score_fn(side, anchors, relations)

        return _by_group(queries, lambda query: query[0], score)

    def _query(self, side: str, anchor: str, relation: str) -> tuple[str, int, int]:
        """``(side, anchor id, relation id)`` of a query given by labels (one-line errors)."""
        return (
            check_side(side, "the side predicted"),
            self.entity_id(anchor),
            self.relation_id(relation),
        )

    def predict(self, side: str, anchor: str, relation: str, k: int, exclude_known: bool) -> dict:
        """The top-``k`` of a query, as ``vlkge predict`` ranks them, and the answers the
        dataset's splits hold with their raw and filtered ranks."""
        query = self._query(side, anchor, relation)
        return self._answer(query, self.scores(*query), k, exclude_known)

    async def predict_batched(
        self, side: str, anchor: str, relation: str, k: int, exclude_known: bool
    ) -> dict:
        """:meth:`predict` on the event loop, its product with the table shared with the other
        queries read in the same turn of the loop."""
        query = self._query(side, anchor, relation)
        return self._answer(query, await self._score(query), k, exclude_known)

    def _answer(
        self, query: tuple[str, int, int], scores: torch.Tensor, k: int, exclude_known: bool
    ) -> dict:
        """:meth:`predict`'s answer from the query's ``scores``."""
        side, anchor_id, relation_id = query
        ids = (torch.tensor([anchor_id]), torch.tensor([relation_id]))
        known = self.index.known(side, *ids)[1]
        top = rank_answers(
            self.kg, side, anchor_id, relation_id, scores, k, exclude_known, known=known
        )
        true = self._true_answers(side, ids, scores, known)
        splits = {a["entity"]: a["split"] for a in true}
        return {
            "query": {
                "side": side,
                "anchor": self.kg.entities[anchor_id],
                "relation": self.kg.relations[relation_id],
            },
            "answers": [
                {**self.card(a["entity"]), **a, "split": splits.get(a["entity"])} for a in top
            ],
            "true_answers": true,
        }

    def _true_answers(
        self,
        side: str,
        query: tuple[torch.Tensor, torch.Tensor],
        scores: torch.Tensor,
        known: torch.Tensor,
    ) -> list[dict]:
        """The query's answers in valid and test, ranked against every entity: raw, and filtered
        (the ``known`` answers other than each one left out, ties as the run's evaluation
        counts them)."""
        found = [(split, index.known(side, *query)[1]) for split, index in self.split_index.items()]
        answers = torch.cat([ids for _, ids in found])
        if not len(answers):
            return []
        raw, filtered = ranks_in_row(scores.float(), answers, known, self.cfg["evaluation"]["ties"])
        splits = [split for split, ids in found for _ in range(len(ids))]
        return [
            {**self.card(self.kg.entities[e]), "split": s, "rank_raw": r, "rank_filtered": f}
            for e, s, r, f in zip(
                answers.tolist(), splits, raw.tolist(), filtered.tolist(), strict=True
            )
        ]

    def neighbours(self, label: str, k: int) -> list[dict]:
        """As ``vlkge neighbours`` finds them, from the table normalised once."""
        index = self.entity_id(label)
        found = nearest_to(self.kg, self.unit[index], self.unit, k, exclude=index)
        return [{**self.card(n["entity"]), **n} for n in found]

    @torch.no_grad()
    def new_entity(
        self,
        text: str | None,
        image: Path | None,
        relation: str,
        direction: str,
        k: int,
        name: str | None = None,
    ) -> dict:
        """Top-``k`` and nearest neighbours of a new entity given by its text and/or image
        (and ``name``), ranked by the run's final scorer as ``vlkge predict --new-text`` ranks
        it; ``left_out`` names the stages that scorer could not use for it."""
        self.relation_id(relation)
        check_side(direction, "the side predicted")
        encoder, inputs = new_entity_inputs(
            self.cfg, self.kg, text, image, model=self.model, build=self.encoders, name=name
        )
        features = self._encode((encoder, inputs))  # with the new entities of other requests
        new = NewAnchors([features], [inputs], encoder, [text or ""], [name or ""])
        top = predict_new_entity(self.score_fn, self.kg, new, relation, direction, k)
        vector = self.model.entities.represent(features)[0]
        near = nearest_to(self.kg, vector, self.unit, k)
        return {
            "query": {"direction": direction, "relation": relation},
            "blends": [stage for stage in self.stages if stage not in new.left_out],
            "left_out": new.left_out,
            "answers": [{**self.card(a["entity"]), **a} for a in top],
            "neighbours": [{**self.card(n["entity"]), **n} for n in near],
        }

    # --- what the run folder holds ---------------------------------------------------------
    def report(self) -> Path | None:
        path = self.folder / "report.html"
        return path if path.is_file() else None

    def summary(self) -> dict:
        cfg, kg = self.cfg, self.kg
        split = "test" if self.metrics and "test" in self.metrics else None
        return {
            "run": self.slug,
            "folder": str(self.folder),
            "dataset": kg.name,
            "backbone": cfg["model"]["backbone"],
            "modalities": list(cfg["model"]["modalities"]),
            "fusion": cfg["model"]["fusion"],
            "entities": kg.num_entities,
            "relations": list(kg.relations),
            "triples": {split: len(t) for split, t in kg.splits.items()},
            "test_mrr": self.metrics[split]["both"]["mrr"] if split else None,
            "blends": self.stages,
            "report": self.report() is not None,
        }


def _encode_batch(batch: list[tuple[Encoder, dict]]) -> list[dict[str, torch.Tensor]]:
    """Features of the new entities of concurrent requests, each encoder's in one batch (one
    thread at a time: an encoder's tokenizer is not shared between threads)."""

    def encode(encoder: Encoder, rows: list[tuple[Encoder, dict]]) -> list:
        return encode_new_entities(encoder, [inputs for _, inputs in rows])

    return _by_group(batch, lambda item: item[0], encode)


def _by_group(items: list, key: Callable, work: Callable) -> list:
    """``work(k, group)`` for each group of ``items`` with the same ``key`` (one result per
    item of the group), the results back in the order of ``items``."""
    groups: dict[object, list[int]] = {}
    for i, item in enumerate(items):
        groups.setdefault(key(item), []).append(i)
    out: list = [None] * len(items)
    for k, rows in groups.items():
        for i, result in zip(rows, work(k, [items[i] for i in rows]), strict=True):
            out[i] = result
    return out


def load_served_runs(folders: list[str | Path]) -> dict[str, ServedRun]:
    """Every run folder loaded once, keyed by a URL-safe slug of its folder name."""
    from vlkge.reports.runs import read_run
    from vlkge.training.setup import load_run

    runs: dict[str, ServedRun] = {}
    for folder in folders:
        # the first run's threads, seed and kernels hold for the server; later ones keep them
        cfg, kg, model = load_run(folder, configure=not runs)
        path = Path(folder).resolve()
        metrics = read_run(path).metrics if (path / "metrics.json").is_file() else None
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", path.name).strip("-.") or "run"
        base, n = slug, 1
        while slug in runs:
            n += 1
            slug = f"{base}-{n}"
        runs[slug] = ServedRun(slug, path, cfg, kg, model, metrics)
    return runs
