"""``compat.paper``: expanded once, when a config is resolved, into the keys it stands for
(vlkge.config.compat); nothing else reads it."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from vlkge import config as cfgmod

PAPER_ON = ["compat.paper=true"]


def test_off_by_default_and_the_keys_keep_their_defaults():
    cfg = cfgmod.load_config()
    assert cfg["compat"]["paper"] is False
    defaults = cfgmod.defaults()
    for key in cfgmod.PAPER:
        assert cfgmod.get_key(cfg, key) == cfgmod.get_key(defaults, key)


def test_the_switch_sets_every_key_it_stands_for(caplog):
    with caplog.at_level(logging.WARNING):
        cfg = cfgmod.load_config(overrides=PAPER_ON)
    assert caplog.text == ""  # keys at their defaults take the reference's values silently
    assert cfg["evaluation"]["ties"] == "ordinal"
    assert cfg["evaluation"]["filter"] == "merged"
    assert cfg["training"]["negatives"]["filter_splits"] == ["train", "valid", "test"]
    assert cfg["model"]["rotate_distance"] == "l2"
    assert cfg["model"]["reference_fusion"] is True
    assert cfgmod.changed_keys(cfg) == {"compat.paper", *cfgmod.PAPER}


def test_an_expanded_config_reloads_unchanged_and_quietly(tmp_path, caplog):
    """A run's config.yaml holds the expanded keys: loading it again sets the same values."""
    cfg = cfgmod.load_config(overrides=PAPER_ON)
    path = tmp_path / "config.yaml"
    path.write_text(cfgmod.dump(cfg), encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        assert cfgmod.load_config(path) == cfg
    assert caplog.text == ""


def test_a_config_written_before_the_expansion_loads_with_the_reference_values(tmp_path):
    """An older paper run's config.yaml holds the switch and the keys' defaults."""
    path = tmp_path / "config.yaml"
    path.write_text("compat:\n  paper: true\nevaluation:\n  ties: realistic\n", encoding="utf-8")
    assert cfgmod.load_config(path) == cfgmod.load_config(overrides=PAPER_ON)


def test_the_switch_wins_over_a_contradicting_key_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING):
        cfg = cfgmod.load_config(
            overrides=[
                *PAPER_ON,
                "evaluation.ties=pessimistic",
                "training.negatives.filter_splits=[]",
            ]
        )
    assert cfg["evaluation"]["ties"] == "ordinal"
    assert cfg["training"]["negatives"]["filter_splits"] == ["train", "valid", "test"]
    assert (
        "compat.paper: true sets evaluation.ties: ordinal (the config's pessimistic" in caplog.text
    )
    assert "training.negatives.filter_splits: [train, valid, test]" in caplog.text


def test_the_concrete_keys_work_without_the_switch():
    cfg = cfgmod.load_config(overrides=["evaluation.ties=ordinal", "evaluation.filter=merged"])
    assert cfg["compat"]["paper"] is False
    assert (cfg["evaluation"]["ties"], cfg["evaluation"]["filter"]) == ("ordinal", "merged")


def test_every_key_of_the_switch_is_a_valid_default_key():
    cfg = cfgmod.defaults()
    for key, value in cfgmod.PAPER.items():
        cfgmod.set_key(cfg, key, value)
    cfgmod.validate(cfg)


@pytest.mark.parametrize(
    "evaluation, paper, expected",
    [
        ({"ties": "realistic", "filter": "per_direction"}, True, ("ordinal", "merged")),
        ({"ties": "ordinal", "filter": "merged"}, False, ("realistic", "per_direction")),
        (
            {"ties": "pessimistic", "filter": "per_direction"},
            False,
            ("pessimistic", "per_direction"),
        ),
        ({"ties": "pessimistic", "filter": "merged"}, True, ("ordinal", "merged")),
    ],
)
def test_with_protocol(evaluation, paper, expected):
    section = {**cfgmod.defaults()["evaluation"], **evaluation}
    before = dict(section)
    out = cfgmod.with_protocol(section, paper)
    assert (out["ties"], out["filter"]) == expected
    assert section == before  # a copy


def test_nothing_but_the_expansion_reads_the_switch():
    package = Path(cfgmod.__file__).parents[1]
    readers = [
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if '["compat"]' in path.read_text(encoding="utf-8")
    ]
    assert readers == ["config/compat.py"]


def test_the_resolved_switch_survives_yaml():
    cfg = cfgmod.load_config(overrides=PAPER_ON)
    assert cfgmod.validate(yaml.safe_load(cfgmod.dump(cfg))) == cfg
