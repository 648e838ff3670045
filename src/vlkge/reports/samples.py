"""Qualitative predictions for a report (cf. the paper's Figure 3): sample queries from an
evaluated split, the top-k answers of the model (and of the zero-shot baseline), and what a
person needs to judge them: each entity's name, text and a small image.
"""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from vlkge.data.graph import KnowledgeGraph
from vlkge.data.index import TripleIndex
from vlkge.predict import rank_answers
from vlkge.untrusted import check_regular_file

log = logging.getLogger(__name__)

ScoreFn = Callable[[str, torch.Tensor, torch.Tensor], torch.Tensor]
THUMBNAIL = 96  # pixels, longer side
TEXT_CHARS = 180


@dataclass
class Query:
    """One sample query: ``side`` is predicted, ``answer`` the split's true entity."""

    split: str
    side: str
    anchor: int
    relation: int
    answer: int
    predictions: dict[str, list[dict]] = field(default_factory=dict)  # scorer name -> top-k
    answer_rank: dict[str, float] = field(default_factory=dict)  # scorer name -> filtered rank


def pick_queries(kg: KnowledgeGraph, cfg: dict, split: str, count: int) -> list[Query]:
    """``count`` queries from ``split``'s evaluated triples (excluded relations left out; only
    triples touching an unseen entity with ``evaluation.only_unseen``), drawn with the run's
    seed, as many relations as possible, sides taking turns over ``evaluation.sides``."""
    if count <= 0 or split not in kg.splits:
        return []
    triples = kg.splits[split]
    excluded = [kg.relation_index[r] for r in cfg["evaluation"]["exclude_relations"]]
    if excluded:
        triples = triples[~torch.isin(triples[:, 1], torch.tensor(excluded))]
    if cfg["evaluation"]["only_unseen"]:
        seen = kg.seen_in_train()
        triples = triples[~(seen[triples[:, 0]] & seen[triples[:, 2]])]
    order = torch.randperm(len(triples), generator=torch.Generator().manual_seed(cfg["seed"]))
    chosen: list[int] = []
    relations: set[int] = set()
    for i in order.tolist():  # first one triple per relation, then the rest in order
        if int(triples[i, 1]) not in relations:
            relations.add(int(triples[i, 1]))
            chosen.append(i)
        if len(chosen) == count:
            break
    taken = set(chosen)
    chosen += [i for i in order.tolist() if i not in taken][: count - len(chosen)]
    sides = list(cfg["evaluation"]["sides"])
    out = []
    for n, i in enumerate(chosen):
        h, r, t = (int(x) for x in triples[i])
        side = sides[n % len(sides)]
        anchor, answer = (h, t) if side == "tail" else (t, h)
        out.append(Query(split, side, anchor, r, answer))
    return out


@contextmanager
def eager_kernels() -> Iterator[None]:
    """Scores without compiled distance kernels: a few queries do not repay compiling them
    (seconds per new shape); the setting is restored afterwards."""
    from vlkge.models.backbones.kernels import Kernels

    enabled = Kernels.enabled
    Kernels.enabled = False
    try:
        yield
    finally:
        Kernels.enabled = enabled


@torch.no_grad()
def predict(queries: list[Query], kg: KnowledgeGraph, name: str, score_fn: ScoreFn, k: int) -> None:
    """Fill each query's top-``k`` of ``score_fn`` under ``name``, with the true answer marked
    and its filtered rank (realistic ties, as the metrics count it)."""
    index = TripleIndex(kg.all_triples(), kg.num_entities, kg.num_relations)
    with eager_kernels():
        scored = [
            score_fn(q.side, torch.tensor([q.anchor]), torch.tensor([q.relation]))[0].float().cpu()
            for q in queries
        ]
    for query, scores in zip(queries, scored, strict=True):
        answers = rank_answers(kg, query.side, query.anchor, query.relation, scores, k, index=index)
        for answer in answers:
            answer["answer"] = answer["entity"] == kg.entities[query.answer]
        query.predictions[name] = answers
        _, known = index.known(
            query.side, torch.tensor([query.anchor]), torch.tensor([query.relation])
        )
        others = torch.ones(kg.num_entities, dtype=torch.bool)
        others[known] = False  # filtered: other true answers do not count
        target = scores[query.answer]
        higher = int(((scores > target) & others).sum())
        ties = int(((scores == target) & others).sum()) - int(bool(others[query.answer]))
        query.answer_rank[name] = 1 + higher + ties / 2


@dataclass
class EntityView:
    """What the page shows of an entity."""

    label: str
    name: str
    text: str | None
    image: str | None  # a data: URI thumbnail


class EntityViews:
    """Names, texts and thumbnails of entities, each image decoded at most once."""

    def __init__(self, kg: KnowledgeGraph):
        self.kg = kg
        self.images = kg.manifest is not None and bool(kg.manifest.images)  # any at all
        self._cache: dict[int, EntityView] = {}

    def __call__(self, entity: int) -> EntityView:
        if entity not in self._cache:
            label = self.kg.entities[entity]
            manifest = self.kg.manifest
            texts = manifest.texts.get(label, []) if manifest is not None else []
            images = manifest.images.get(label, []) if manifest is not None else []
            text = " ".join(texts[0].split()) if texts else None
            if text and len(text) > TEXT_CHARS:
                text = text[: TEXT_CHARS - 1] + "…"
            self._cache[entity] = EntityView(
                label, self.kg.display_name(entity), text, thumbnail(images)
            )
        return self._cache[entity]


def thumbnail(paths: list[str], size: int = THUMBNAIL) -> str | None:
    """The first readable image of ``paths`` downscaled to a JPEG ``data:`` URI; ``None`` when
    none can be read (missing, corrupt, not an image, not a regular file: a FIFO or a device
    would block or never end): a report never fails on an image."""
    try:
        from PIL import Image
    except ImportError:  # pillow comes with matplotlib; without it, no thumbnails
        return None
    for path in paths:
        try:
            check_regular_file(path)
            with Image.open(path) as image:
                image.draft("RGB", (size * 2, size * 2))  # JPEG: decode at a reduced scale
                small = image.convert("RGB")
                small.thumbnail((size, size))
            buffer = io.BytesIO()
            small.save(buffer, format="JPEG", quality=85)
        except Exception as exc:  # PIL raises many types for damaged files
            log.debug("%s: no thumbnail (%s)", path, exc)
            continue
        return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
    return None
