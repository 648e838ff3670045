"""The zero-shot vision-language baseline (SPEC 5): link prediction with no training at all.

For a tail query ``(h, r, ?)`` every candidate ``t`` is scored by

    score(h, r, t) = cosine(anchor feature of h, text feature of template_r filled with name(t))

where ``template_r`` is ``zero_shot.templates[r]`` (else ``zero_shot.default_template``), e.g.
``"This painting was created by {}."``. The anchor feature is the first of
``zero_shot.anchor_modalities`` (default ``[image, text]``: the image feature when the entity has
one, else its text feature) that the entity has; an entity with neither scores every candidate
0, a full tie that the realistic rank turns into the middle rank.

Head queries ``(?, r, t)`` mirror this: every candidate head ``h`` is named in the head template
of ``r`` (``zero_shot.head_templates[r]``, else the tail template) and compared with ``t``'s
anchor feature. The prompt always carries the candidate and the known entity is always the
anchor, so a relation whose tail template reads "a kind of {}" wants a head template such as
"a category that includes {}".

Entity names and prompts: :mod:`vlkge.evaluation.prompts`. Features come from the feature cache (``features.cache_dir``, by default the
cache of the dataset and ``encoder.name``): a modality that the cache lacks is encoded there
first with ``encoder.name``; one written by another encoder is an error, since the anchors and
the prompts must live in one joint space (imported precomputed features are trusted, with a
warning). Prompts are encoded with the same encoder.

Vectorised: a query batch is one matrix product per relation against the prompts of its
template, each encoded once (:class:`~vlkge.evaluation.prompts.PromptBank`). With candidate pools (``evaluation.candidates:
relation_pool``) a tail query only encodes its pool; entities outside it score ``-inf`` and are
never ranked. Everything else (filters, ties, pools, sides,
excluded relations, ``only_unseen``) is the :class:`~vlkge.evaluation.Evaluator`'s protocol, and
``metrics.json`` has the layout of a trained run's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from vlkge import config as config_mod
from vlkge.data.datasets import load_graph
from vlkge.data.graph import KnowledgeGraph
from vlkge.errors import VlkgeError
from vlkge.evaluation.evaluator import Evaluator
from vlkge.evaluation.lexical import LexicalScorer
from vlkge.evaluation.new_anchors import NewAnchors, Unscorable
from vlkge.evaluation.prompts import PromptBank, entity_names, prompt_templates
from vlkge.evaluation.ranking import ScoreFn
from vlkge.files import write_text
from vlkge.runfolder import CONFIG, absolute_paths, new_run, require_run_folder, write_metrics
from vlkge.terms import check_side

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

# the end of the error for anchor features written by another encoder (encoder.name)
ONE_ENCODER = (
    "; zero-shot needs features and prompts from one encoder: set encoder.name to that "
    "encoder or features.cache_dir to a cache of this one"
)


def anchor_table(
    features: dict[str, tuple[torch.Tensor, torch.Tensor]], order: Sequence[str], count: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """L2-normalised anchor vectors ``[E, w]`` (the first modality in ``order`` each entity has)
    and, per entity, the index in ``order`` of the modality used (-1: none, zero row)."""
    usable = [m for m in order if m in features]
    if not usable:
        raise VlkgeError(
            f"zero-shot needs {' or '.join(order)} features of the entities; none are available"
        )
    widths = {m: features[m][0].shape[1] for m in usable}
    if len(set(widths.values())) > 1:
        raise VlkgeError(f"anchor features of different widths {widths}: use one encoder's")
    table = torch.zeros(count, widths[usable[0]])
    source = torch.full((count,), -1, dtype=torch.long)
    for m in reversed(usable):  # earlier modalities overwrite later ones
        values, mask = features[m]
        mask = torch.as_tensor(mask).bool()
        table[mask] = torch.as_tensor(values).float()[mask]
        source[mask] = list(order).index(m)
    return F.normalize(table, dim=-1), source


class ZeroShotScorer:
    """A ``ScoreFn`` (``side, anchors [b], relations [b] -> [b, E]``) of the zero-shot baseline;
    ``anchor_modalities`` (``zero_shot.anchor_modalities``) says which of a new entity's
    features is its anchor."""

    def __init__(
        self,
        anchors: torch.Tensor,
        prompts: PromptBank,
        tail_templates: Sequence[str],
        head_templates: Sequence[str],
        anchor_modalities: Sequence[str],
    ):
        self.anchors = anchors
        self.prompts = prompts
        self.anchor_modalities = list(anchor_modalities)
        self.templates = {"tail": list(tail_templates), "head": list(head_templates)}
        # per side, the distinct templates and each relation's: relations sharing a template
        # (FB15k-237's 237 share one) are scored in one product against all candidates
        self.groups = {side: _distinct(names) for side, names in self.templates.items()}
        self.count = anchors.shape[0]

    def scorer(self, pool: torch.Tensor | None = None) -> ScoreFn:
        """The scorer for one evaluated split; ``pool`` (``[R, E]`` bool) limits the
        candidates of tail queries to the relation's pool. Called with ``new``
        (:mod:`vlkge.evaluation.new_anchors`), it scores those entities."""
        every = torch.arange(self.count)

        @torch.no_grad()
        def score(
            side: str,
            anchor: torch.Tensor,
            relation: torch.Tensor,
            span: tuple[int, int] | None = None,
            new: NewAnchors | None = None,
        ) -> torch.Tensor:
            check_side(side)
            queries = self.anchors[anchor] if new is None else self.new_queries(new, anchor)
            if pool is not None and side == "tail":  # candidates differ per relation
                out = torch.full((len(anchor), self.count), float("-inf"))
                for r in relation.unique().tolist():
                    ids = pool[r].nonzero().squeeze(1)
                    if len(ids) == 0:
                        continue
                    rows = (relation == r).nonzero().squeeze(1)
                    prompts = self._prompts(self.templates[side][r], ids, queries)
                    out[rows.unsqueeze(1), ids.unsqueeze(0)] = queries[rows] @ prompts.T
            else:
                distinct, of_relation = self.groups[side]
                keys = of_relation[relation]
                found = keys.unique().tolist()
                if len(found) == 1:  # one template for the chunk: one product, no copy
                    out = queries @ self._prompts(distinct[found[0]], every, queries).T
                else:  # every row is written by its template's product
                    out = torch.empty(len(anchor), self.count)
                    for k in found:
                        rows = (keys == k).nonzero().squeeze(1)
                        out[rows] = queries[rows] @ self._prompts(distinct[k], every, queries).T
            return out if span is None else out[:, span[0] : span[1]]  # a block, not bounded

        return score

    def new_queries(self, new: NewAnchors, anchor: torch.Tensor) -> torch.Tensor:
        """``[b, w]`` anchor vectors of the new entities ``anchor``: the first of
        ``anchor_modalities`` each one has, L2-normalised: its features where an encoder with
        the prompts' encoder's weights encoded them, else encoded by the prompts' encoder (a
        fine-tuned model's entity, whose encoder of the same name has other weights)."""
        encoder, rows = self.prompts.encoder, []
        for i in anchor.tolist():
            usable = [m for m in self.anchor_modalities if m in new.inputs[i] and encoder.has(m)]
            if not usable:
                order = " or ".join(self.anchor_modalities)
                raise Unscorable(f"it anchors on {order} features, which the entity lacks")
            modality, given = usable[0], new.inputs[i][usable[0]]
            if modality in new.features[i] and _same_weights(new.encoder, encoder):
                rows.append(new.features[i][modality])
            elif new.encoder is None or new.encoder.name != encoder.name:
                raise Unscorable(
                    f"it reads {encoder.name}'s features, not the new entity's encoder's"
                )
            elif modality == "text":
                rows.append(encoder.encode_texts([given]))
            else:  # pixels decoded for an encoder of the same name: the same transform
                rows.append(encoder.encode_pixels(given.unsqueeze(0)))
        return F.normalize(torch.cat(rows).float().cpu(), dim=-1)

    def _prompts(self, template: str, ids: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        prompts = self.prompts.vectors(template, ids)
        if prompts.shape[1] != queries.shape[1]:
            raise VlkgeError(
                f"entity features are {queries.shape[1]}-d but prompt features "
                f"{prompts.shape[1]}-d: both must come from one encoder"
            )
        return prompts

    def __call__(self, side: str, anchor: torch.Tensor, relation: torch.Tensor) -> torch.Tensor:
        """Scores against every entity (no candidate pool)."""
        return self.scorer()(side, anchor, relation)


def _same_weights(one, other) -> bool:
    """Whether two encoders are one, or have the same weights (fingerprints computed once)."""
    return one is other or (one is not None and one.fingerprint == other.fingerprint)


def _distinct(templates: list[str]) -> tuple[list[str], torch.Tensor]:
    """The distinct ``templates`` (first seen first) and each one's position among them."""
    distinct = list(dict.fromkeys(templates))
    position = {template: i for i, template in enumerate(distinct)}
    return distinct, torch.tensor([position[t] for t in templates], dtype=torch.long)


def zero_shot_features(
    cfg: dict, kg: KnowledgeGraph, encoder, progress: bool = False
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Anchor features from the feature cache, encoding a missing modality there first."""
    from vlkge.encoders.cache import FeatureCache, imported
    from vlkge.encoders.cache.policy import encoder_manifest
    from vlkge.models.features import feature_cache_dir

    wanted = list(cfg["zero_shot"]["anchor_modalities"])
    cache = FeatureCache(feature_cache_dir(cfg, kg))
    out = {}
    for modality in wanted:
        meta = (
            cache.check_encoder(modality, encoder, ONE_ENCODER)
            if cache.features_path(modality).is_file()
            else None
        )
        if meta is not None:
            if imported(meta):
                log.warning(
                    "%s features in %s were imported (%s); zero-shot assumes they share "
                    "encoder %s's joint space",
                    modality,
                    cache.folder,
                    meta.get("encoder"),
                    encoder.name,
                )
        elif not encoder.has(modality):
            log.info("encoder %s has no %s tower; anchors use the others", encoder.name, modality)
            continue
        else:
            manifest = encoder_manifest(cfg, kg)
            if manifest is None or not (manifest.texts if modality == "text" else manifest.images):
                log.info("dataset %s has no %s inputs", kg.name, modality)
                continue
            log.info("encoding %s features into %s", modality, cache.folder)
            cache.update(
                encoder,
                manifest,
                kg.entities,
                [modality],
                workers=cfg["encoder"]["workers"],
                progress=progress,
            )
        out[modality] = tuple(cache.load(kg.entities, [modality])[modality])
    return out


def build_scorer(
    cfg: dict,
    kg: KnowledgeGraph,
    encoder,
    features: dict[str, tuple[torch.Tensor, torch.Tensor]],
) -> tuple[ZeroShotScorer, torch.Tensor]:
    """The configured baseline's scorer and, per entity, the index in
    ``zero_shot.anchor_modalities`` of its anchor's modality (-1: none). Prompt features are
    kept in the run's feature cache (``features.cache_dir``)."""
    from vlkge.encoders.cache import FeatureCache
    from vlkge.models.features import feature_cache_dir

    settings = cfg["zero_shot"]
    order = list(settings["anchor_modalities"])
    anchors, source = anchor_table(features, order, kg.num_entities)
    tails, heads = prompt_templates(cfg, kg)
    cache = FeatureCache(feature_cache_dir(cfg, kg))
    bank = PromptBank(encoder, entity_names(kg, settings["name_source"]), cache)
    return ZeroShotScorer(anchors, bank, tails, heads, order), source


def load_zero_shot(
    run_dir: str | Path, encoder=None, progress: bool = False
) -> tuple[dict, KnowledgeGraph, ZeroShotScorer | LexicalScorer]:
    """Config, graph and scorer of a ``vlkge zero-shot`` run folder (for reports), with its
    features from the run's feature cache; ``encoder`` replaces ``encoder.name``."""
    run_dir = require_run_folder(run_dir)
    cfg = config_mod.load_config(run_dir / CONFIG)
    kg = load_graph(cfg["dataset"], quiet=True)
    if cfg["zero_shot"]["scorer"] == "lexical":
        return cfg, kg, lexical_scorer(cfg, kg)
    return cfg, kg, configured_scorer(cfg, kg, encoder, progress)


def lexical_scorer(cfg: dict, kg: KnowledgeGraph) -> LexicalScorer:
    """The lexical baseline (:mod:`vlkge.evaluation.lexical`) over the entities' names
    (``zero_shot.name_source``) and all their manifest texts, for ``vlkge zero-shot`` with
    ``zero_shot.scorer: lexical`` and ``evaluation.lexical_blend``."""
    texts = kg.manifest.texts if kg.manifest is not None else {}
    names = entity_names(kg, cfg["zero_shot"]["name_source"])
    return LexicalScorer(names, [" ".join(texts.get(e) or ()) for e in kg.entities])


def configured_scorer(
    cfg: dict, kg: KnowledgeGraph, encoder=None, progress: bool = False
) -> ZeroShotScorer:
    """The prompt baseline of ``cfg``'s ``zero_shot:`` section (anchors from the feature
    cache), for reports and ``evaluation.zero_shot_blend``; ``encoder`` replaces
    ``encoder.name``."""
    encoder = configured_encoder(cfg) if encoder is None else encoder
    features = zero_shot_features(cfg, kg, encoder, progress)
    return build_scorer(cfg, kg, encoder, features)[0]


def configured_encoder(cfg: dict, name: str | None = None):
    """The encoder ``name`` (by default ``cfg``'s ``encoder.name``) on ``cfg``'s device with
    its ``encoder.batch_size`` (imported when needed: encoders are heavy)."""
    from vlkge.encoders import build_encoder

    settings = cfg["encoder"]
    name = settings["name"] if name is None else name
    return build_encoder(name, device=cfg["device"], batch_size=settings["batch_size"])


def zero_shot(
    cfg: dict,
    kg: KnowledgeGraph,
    encoder,
    features: dict[str, tuple[torch.Tensor, torch.Tensor]] | None,
    splits: Sequence[str] | None = None,
    progress: bool = False,
) -> dict:
    """Metrics (``metrics.json`` layout) of the baseline of ``zero_shot.scorer`` on ``splits``
    (default: ``evaluation.splits``); for the prompt baseline ``features`` are the entities'
    anchor features (the lexical one reads neither them nor ``encoder``)."""
    start = time.perf_counter()
    if cfg["zero_shot"]["scorer"] == "lexical":
        scorer = lexical_scorer(cfg, kg)
        summary = {"scorer": "lexical", "vocabulary": scorer.vocabulary, "pairs": scorer.pairs}
    else:
        order = list(cfg["zero_shot"]["anchor_modalities"])
        scorer, source = build_scorer(cfg, kg, encoder, features)
        summary = {
            "scorer": "prompts",
            "encoder": encoder.name,
            "anchors": {
                **{m: int((source == i).sum()) for i, m in enumerate(order)},
                "none": int((source < 0).sum()),
            },
        }
    evaluator = Evaluator(kg, cfg["evaluation"])
    out: dict = {}
    fitted = None  # the calibrated scorer (candidate pools are applied by the ranking)
    if evaluator.calibration["weights"]:
        fitted, out["calibration"] = evaluator.calibrate(scorer.scorer())
    for split in splits or cfg["evaluation"]["splits"]:
        score_fn = fitted or scorer.scorer(evaluator.pool(split))
        out[split] = evaluator.evaluate_scores(score_fn, split, progress)
        both = out[split]["both"]
        log.info(
            "zero-shot %s: MRR %.4f  H@1 %.4f  H@10 %.4f",
            split,
            both["mrr"],
            both["hits@1"],
            both["hits@10"],
        )
    out["ties"] = evaluator.ties
    if isinstance(scorer, ZeroShotScorer):
        summary["prompts_encoded"] = scorer.prompts.encoded
    out["zero_shot"] = {**summary, "time_s": time.perf_counter() - start}
    return out


def run_zero_shot(
    cfg: dict,
    out_dir: str | Path,
    encoder=None,
    features: dict | None = None,
    progress: bool = False,
) -> dict:
    """``vlkge zero-shot``: evaluate the baseline as configured; writes ``out_dir/config.yaml``
    and ``out_dir/metrics.json`` and returns the metrics. ``encoder`` and ``features`` replace
    ``encoder.name`` and the feature cache."""
    out_dir, cfg = Path(out_dir), absolute_paths(cfg)
    with new_run(out_dir, cfg):
        kg = load_graph(cfg["dataset"])
        if cfg["zero_shot"]["scorer"] == "prompts":
            prompt_templates(cfg, kg)
            if encoder is None:
                encoder = configured_encoder(cfg)
            if features is None:
                features = zero_shot_features(cfg, kg, encoder, progress)
        write_text(out_dir / CONFIG, config_mod.dump(cfg))
        metrics = zero_shot(cfg, kg, encoder, features, progress=progress)
        write_metrics(out_dir, metrics)
    return metrics
