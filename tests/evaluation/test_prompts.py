"""Entity names, relation templates and the prompt bank of the zero-shot baseline."""

import pytest
import torch

from tests.evaluation.test_zero_shot import ENTITIES, BagOfWords, toy_graph
from vlkge.config import load_config
from vlkge.data.manifest import EntityManifest
from vlkge.errors import ConfigError
from vlkge.evaluation.prompts import PromptBank, entity_names, relation_templates


def test_identical_prompts_are_encoded_once():
    kg = toy_graph()
    kg.names["dog"] = "cat"
    encoder = BagOfWords()
    bank = PromptBank(encoder, entity_names(kg))
    bank.vectors("kind of {}", torch.arange(6))
    assert encoder.seen.count("kind of cat") == 1 and bank.encoded == 5
    assert sorted(set(encoder.seen)) == sorted(f"kind of {e}" for e in ENTITIES if e != "dog")


def test_name_sources():
    kg = toy_graph()
    kg.names = {"cat": "house  cat"}
    kg.manifest = EntityManifest()
    kg.manifest.add_text("dog", "a domestic\tanimal")
    assert entity_names(kg, "names")[:2] == ["house cat", "animal"]
    assert entity_names(kg, "label")[0] == "cat"
    text = entity_names(kg, "text")
    assert text[kg.entity_id("dog")] == "a domestic animal" and text[0] == "house cat"


def test_template_validation():
    kg = toy_graph()
    with pytest.raises(ConfigError, match="did you mean hyper"):
        relation_templates(kg, {"hypr": "{}"}, "{}")
    with pytest.raises(ConfigError, match="needs a"):
        load_config(overrides=["zero_shot.templates.hyper=no placeholder"])
    with pytest.raises(ConfigError, match="needs a"):
        load_config(overrides=["zero_shot.default_template=plain"])
    with pytest.raises(ConfigError, match="name_source"):
        load_config(overrides=["zero_shot.name_source=wiki"])
    with pytest.raises(ConfigError, match="anchor_modalities"):
        load_config(overrides=["zero_shot.anchor_modalities=[audio]"])
    cfg = load_config(overrides=["zero_shot.templates.hyper=kind of {}"])
    assert cfg["zero_shot"]["templates"] == {"hyper": "kind of {}"}


def test_a_long_relation_name_is_cut_in_template_errors():
    kg = toy_graph()
    with pytest.raises(ConfigError) as info:
        relation_templates(kg, {"h" * 10_000: "{}"}, "{}")
    assert len(str(info.value)) < 400 and "hhh..." in str(info.value)
