"""The registry-backed choices (vlkge.training.choices): read from the registries, disjoint
from the base table, each naming a default key that every config load then checks."""

from __future__ import annotations

import pytest

from vlkge import config as cfgmod
from vlkge.errors import ConfigError
from vlkge.models.backbones import BACKBONES
from vlkge.training.choices import registry_choices


def test_the_choices_are_the_registries():
    choices = registry_choices()
    assert choices["model.backbone"] == tuple(BACKBONES)
    assert choices["validation.metric"] == ("mrr", "hits@1", "hits@3", "hits@10")
    assert "ordinal" in choices["evaluation.ties"]


def test_every_registry_key_is_a_default_key_not_in_the_base_table():
    choices = {k: v for k, v in registry_choices().items() if "/" not in k}
    assert not set(choices) & set(cfgmod.CHOICES)
    defaults = cfgmod.defaults()
    for key, allowed in choices.items():
        assert cfgmod.get_key(defaults, key) in allowed, key


@pytest.mark.parametrize("key", sorted(k for k in registry_choices() if "/" not in k))
def test_each_registry_key_rejects_what_its_registry_lacks(key):
    with pytest.raises(ConfigError, match=f"{key} must be one of .*, not 'nothing'"):
        cfgmod.load_config(overrides=[f"{key}=nothing"])


def test_a_new_registry_entry_is_a_valid_value(monkeypatch):
    """Adding a backbone is its file and its registration: the config accepts it at once."""
    monkeypatch.setitem(BACKBONES, "transr", BACKBONES["transe"])
    registry_choices.cache_clear()
    try:
        cfg = cfgmod.load_config(overrides=["model.backbone=transr"])
    finally:
        monkeypatch.undo()
        registry_choices.cache_clear()
    assert cfg["model"]["backbone"] == "transr"
    assert "transr" not in registry_choices()["model.backbone"]


def test_the_package_root_hands_them_to_the_base_layer():
    keys = {k: v for k, v in registry_choices().items() if "/" not in k}
    assert cfgmod.allowed() == {**cfgmod.CHOICES, **keys}


def test_the_losses_a_regime_computes_come_from_the_regime():
    from vlkge.training.regimes import REGIMES

    for name, regime in REGIMES.items():
        assert cfgmod.allowed_given("training.loss", name) == regime.LOSSES
    with pytest.raises(ConfigError, match="training.loss ce needs regime 1vsall or kvsall"):
        cfgmod.load_config(overrides=["training.regime=negative_sampling", "training.loss=ce"])
    with pytest.raises(ConfigError, match="training.loss logistic needs regime negative_sampling"):
        cfgmod.load_config(overrides=["training.regime=1vsall", "training.loss=logistic"])
