"""Ranked predictions for one query: the top-k entities for (h, r, ?) or (?, r, t), where the
known entity is one of the graph's (:func:`top_k`) or a brand-new one given by its text and/or
image (:func:`new_anchor`, :func:`predict_new_entity`), with no retraining."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import torch

from vlkge.data.graph import KnowledgeGraph
from vlkge.data.index import TripleIndex
from vlkge.encoders import canonical_name
from vlkge.encoders.base import Encoder
from vlkge.errors import VlkgeError, echo
from vlkge.evaluation.new_anchors import NewAnchors, Unscorable
from vlkge.evaluation.ranking import ScoreFn
from vlkge.evaluation.zero_shot import configured_encoder
from vlkge.models.model import KGEModel
from vlkge.terms import MODALITIES, check_side


@torch.no_grad()
def top_k(
    score_fn: ScoreFn,
    kg: KnowledgeGraph,
    side: str,
    anchor: str,
    relation: str,
    k: int = 10,
    exclude_known: bool = False,
) -> list[dict]:
    """Top-``k`` answers of ``score_fn`` (a run's final scorer,
    :func:`vlkge.training.final.recorded_scorer`) for a query given by labels; ``side`` is the
    side predicted.

    Each answer says whether the triple is already known (in any split), so a user can tell
    memorised facts from new predictions; ``exclude_known`` drops them instead.
    """
    anchor_id = torch.tensor([kg.entity_id(anchor)])
    relation_id = torch.tensor([kg.relation_id(relation)])
    scores = score_fn(side, anchor_id, relation_id)[0]
    return rank_answers(kg, side, int(anchor_id), int(relation_id), scores, k, exclude_known)


def rank_answers(
    kg: KnowledgeGraph,
    side: str,
    anchor: int,
    relation: int,
    scores: torch.Tensor,
    k: int = 10,
    exclude_known: bool = False,
    index: TripleIndex | None = None,
    known: torch.Tensor | None = None,
) -> list[dict]:
    """The top-``k`` of any scorer's ``scores`` (``[E]``) for the query (anchor id, relation
    id), as :func:`top_k` returns them; entities scored ``-inf`` (outside a candidate pool) are
    never answers. ``known`` (the ids of the query's known answers), or else ``index`` (of
    every known triple), saves rebuilding the index for many queries."""
    if k < 1:
        raise VlkgeError(f"--top-k must be positive, not {echo(k)}")
    if known is None:
        if index is None:
            index = TripleIndex(kg.all_triples(), kg.num_entities, kg.num_relations)
        known = index.known(side, torch.tensor([anchor]), torch.tensor([relation]))[1]
    scores = scores.float().cpu()
    if exclude_known and len(known):
        scores = scores.index_fill(0, known, float("-inf"))
    best = torch.topk(scores, min(k, len(scores)))
    keep = best.values > float("-inf")
    values, ids = best.values[keep], best.indices[keep]
    is_known = torch.isin(ids, known)
    return [
        {
            "rank": rank,
            "entity": kg.entities[e],
            "name": kg.display_name(e),
            "score": s,
            "known": flag,
        }
        for rank, (s, e, flag) in enumerate(
            zip(values.tolist(), ids.tolist(), is_known.tolist(), strict=True), start=1
        )
    ]


# --- a brand-new entity ----------------------------------------------------------------------
def new_anchor(
    cfg: dict,
    kg: KnowledgeGraph,
    text: str | None = None,
    image: str | Path | None = None,
    name: str | None = None,
    encoder=None,
    model: KGEModel | None = None,
    build: Callable[[dict, str], Encoder] | None = None,
    imaginary: str = "auto",
) -> NewAnchors:
    """A new entity as a run's final scorer reads it (:class:`NewAnchors`): its text and/or
    image encoded (:func:`new_entity_inputs`, :func:`encode_new_entities`), its text and
    ``name`` for the lexical baseline."""
    encoder, inputs = new_entity_inputs(cfg, kg, text, image, encoder, model, build, name)
    features = encode_new_entities(encoder, [inputs])[0]
    return NewAnchors([features], [inputs], encoder, [text or ""], [name or ""], imaginary)


def new_entity_inputs(
    cfg: dict,
    kg: KnowledgeGraph,
    text: str | None = None,
    image: str | Path | None = None,
    encoder=None,
    model: KGEModel | None = None,
    build: Callable[[dict, str], Encoder] | None = None,
    name: str | None = None,
) -> tuple[Encoder, dict[str, str | torch.Tensor]]:
    """The encoder for a new entity and its inputs (``{"text": str, "image": pixels}``),
    checked and decoded, so that encoding cannot fail on this entity's account and many new
    entities can be encoded in one batch (``vlkge serve`` does). With a ``name`` the encoder
    reads ``encoder.text_template`` filled with it and the text, as it read the graph's
    entities; without one, the text as given.

    The encoder is the one that wrote the run's feature cache (its metadata names it;
    ``encoder.name`` when the cache has no metadata), so the features are those the run's
    projections were trained on. ``encoder`` replaces that encoder (its weights fingerprint
    must still match); ``build`` (``cfg, name -> encoder``, a :class:`RunEncoders` where several
    callers share it) makes it. A run with a fine-tuned encoder
    (``encoder.finetune``) encodes with the tuned encoder held by its ``model``."""
    from vlkge.encoders.cache import FeatureCache, imported
    from vlkge.models.features import feature_cache_dir

    modalities = list(cfg["model"]["modalities"])
    if not modalities:
        raise VlkgeError(
            "this run is a structural model (model.modalities: []): it can only score entities "
            "it was trained on; train with model.modalities to predict for new entities"
        )
    if text is not None and not text.strip():
        raise VlkgeError("--new-text is empty: give the new entity's text")
    if text and name is not None:
        text = cfg["encoder"]["text_template"].format(text=text, name=name)
    given = {m: v for m, v in (("text", text), ("image", image)) if v}
    if not given:
        raise VlkgeError("a new entity needs a text (--new-text) and/or an image (--new-image)")
    for modality in given:
        if modality not in modalities:
            raise VlkgeError(
                f"the run's model does not use {modality} features (model.modalities: "
                f"{modalities}); give the new entity's {' or '.join(modalities)}"
            )
    towers = getattr(model.entities, "towers", {}) if model is not None else {}
    if towers:  # the tuned encoder is the one the run's projections were trained on
        encoder = next(iter(towers.values())).encoder
        return encoder, _decoded(encoder, given)
    cache = FeatureCache(feature_cache_dir(cfg, kg))
    metadata = {m: cache.metadata(m) for m in given}
    for modality, meta in metadata.items():
        if meta is not None and imported(meta):
            if encoder is None:
                raise VlkgeError(
                    f"the run's {modality} features were imported ({meta.get('encoder')}), not "
                    "encoded by vlkge: no encoder is known that produces features in their "
                    "space for a new entity"
                )
    if encoder is None:
        names = {meta["encoder"] for meta in metadata.values() if meta is not None}
        if len(names) > 1:
            raise VlkgeError(f"the run's features come from several encoders: {sorted(names)}")
        name = names.pop() if names else cfg["encoder"]["name"]
        encoder = (build or configured_encoder)(cfg, name)
    for modality in metadata:
        cache.check_encoder(modality, encoder)
    return encoder, _decoded(encoder, given)


class RunEncoders:
    """A run's encoders by name, each built once (``cfg, name -> encoder``; thread-safe): the
    ``build`` of :func:`new_entity_inputs` and the ``encoders`` of
    :func:`~vlkge.training.final.recorded_scorer`, so that the new entity's encoder and the
    zero-shot baseline's, usually one, are loaded once (``vlkge predict``, ``vlkge serve``)."""

    def __init__(self) -> None:
        self.built: dict[str, Encoder] = {}
        self._lock = threading.Lock()

    def __call__(self, cfg: dict, name: str) -> Encoder:
        key = canonical_name(name)  # minilm and its hub id are one encoder
        with self._lock:
            if key not in self.built:
                self.built[key] = configured_encoder(cfg, name)
            return self.built[key]


def _decoded(encoder: Encoder, given: dict) -> dict[str, str | torch.Tensor]:
    """``given`` with its image file decoded into the encoder's pixels (one-line errors)."""
    if "image" not in given:
        return dict(given)
    from vlkge.encoders.images import failure_reason, load_image

    try:
        pixels = load_image(str(given["image"]), encoder.image_transform())
    except Exception as exc:  # missing, unreadable, not an image
        raise VlkgeError(f"{given['image']}: {failure_reason(exc)}") from None
    return {**given, "image": pixels}


@torch.no_grad()
def encode_new_entities(
    encoder: Encoder, inputs: list[dict[str, str | torch.Tensor]]
) -> list[dict[str, torch.Tensor]]:
    """Features (``{modality: FloatTensor[1, w]}``) of many new entities' inputs
    (:func:`new_entity_inputs`), every text in one batch and every image in another."""
    out: list[dict[str, torch.Tensor]] = [{} for _ in inputs]
    for modality in MODALITIES:
        rows = [i for i, given in enumerate(inputs) if modality in given]
        if not rows:
            continue
        if modality == "text":
            features = encoder.encode_texts([inputs[i]["text"] for i in rows])
        else:
            features = encoder.encode_pixels(torch.stack([inputs[i]["image"] for i in rows]))
        for position, i in enumerate(rows):
            out[i][modality] = features[position : position + 1]
    return out


@torch.no_grad()
def predict_new_entity(
    score_fn: ScoreFn,
    kg: KnowledgeGraph,
    new: NewAnchors,
    relation: str,
    direction: str = "tail",
    k: int = 10,
) -> list[dict]:
    """Rank every entity of the graph for the new entity ``new`` (one, :func:`new_anchor`)
    with ``score_fn``: a run's final scorer (:func:`vlkge.training.final.recorded_scorer`;
    the stages it cannot use for this entity are left out and named in ``new.left_out``) or
    its model's (:func:`vlkge.evaluation.evaluator.model_scorer`).

    ``direction="tail"``: queries ``(new, relation, ?)``, the graph's entities ranked as
    tails; ``"head"``: ``(?, relation, new)``. The model represents the new entity like an
    entity unseen in training (docs/method.md); nothing is retrained and the graph is
    unchanged. A model without modal features cannot represent it (one-line error).
    """
    check_side(direction, "direction")
    if k < 1:
        raise VlkgeError(f"--top-k must be positive, not {echo(k)}")
    relation_id = torch.tensor([kg.relation_id(relation)])
    try:
        scores = score_fn(direction, torch.tensor([0]), relation_id, new=new)[0]
    except Unscorable as why:  # the model itself
        raise VlkgeError(f"the run cannot score a new entity: {why}") from None
    best = torch.topk(scores.float().cpu(), min(k, kg.num_entities))
    return [
        {
            "rank": rank,
            "entity": kg.entities[int(e)],
            "name": kg.display_name(int(e)),
            "score": float(s),
        }
        for rank, (s, e) in enumerate(zip(best.values, best.indices, strict=True), start=1)
    ]
