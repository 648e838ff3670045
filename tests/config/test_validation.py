"""Validation: types, allowed values, bounds, list items, mappings, combinations
(vlkge.config.validation)."""

from __future__ import annotations

import re

import pytest

from vlkge import config as cfgmod
from vlkge.errors import ConfigError


@pytest.mark.parametrize(
    "text, message",
    [
        ("model.dim=abc", "model.dim must be int, not str"),
        ("model.dim=16.5", "model.dim must be int, not float"),
        ("model.dim=true", "model.dim must be int, not bool"),
        ("model.reciprocal=3", "model.reciprocal must be bool"),
        ("model.gamma=high", "model.gamma must be float"),
        ("seed=null", "seed must not be null"),
        ("num_threads=two", "num_threads must be int"),
        ("evaluation.exclude_relations=_hypernym", "must be list"),
        ("model=3", "model must be a mapping"),
    ],
)
def test_wrong_type(text, message):
    with pytest.raises(ConfigError, match=message):
        cfgmod.load_config(overrides=[text])


@pytest.mark.parametrize(
    "text",
    [
        "model.dim=-8",
        "model.dim=0",
        "training.epochs=0",
        "training.batch_size=-1",
        "training.negatives.num=0",
        "training.optimizer.lr=-0.1",
        "evaluation.max_scores=0",
        "training.regularizer.weight=-1.0",
        "training.label_smoothing=-0.1",
        "validation.patience=-1",
    ],
)
def test_impossible_values(text):
    with pytest.raises(ConfigError, match="must be positive|must not be negative"):
        cfgmod.load_config(overrides=[text])


def test_zero_is_fine_where_it_means_off():
    cfg = cfgmod.load_config(overrides=["validation.every=0", "validation.patience=0"])
    assert cfg["validation"]["every"] == 0


@pytest.mark.parametrize(
    "text",
    [
        "num_threads=-1",  # torch.set_num_threads(-1) fails at run time
        "training.label_smoothing=1.5",  # a smoothing of more than 1 inverts the labels
    ],
)
def test_more_impossible_values(text):
    with pytest.raises(ConfigError):
        cfgmod.load_config(overrides=[text])


@pytest.mark.parametrize(
    "text, allowed",
    [
        ("model.backbone=transr", "transe, distmult, complex, rotate"),
        ("evaluation.ties=random", "realistic, optimistic, pessimistic"),
        ("dataset.setting=semi", "transductive, inductive"),
        ("dataset.unseen_entities=ignore", "null, error, keep, drop"),
        ("training.negatives.side=tail_only", "both, head, tail"),
    ],
)
def test_invalid_choice(text, allowed):
    with pytest.raises(ConfigError, match="must be one of") as info:
        cfgmod.load_config(overrides=[text])
    assert allowed in str(info.value)


@pytest.mark.parametrize(
    "text",
    [
        "evaluation.splits=[]",
        "evaluation.splits=[holdout]",
        "evaluation.sides=tail",
        "training.negatives.filter_splits=[train, extra]",
    ],
)
def test_invalid_subsets(text):
    with pytest.raises(ConfigError, match="list drawn from"):
        cfgmod.load_config(overrides=[text])


@pytest.mark.parametrize(
    "overrides",
    [
        ["training.loss=bce"],  # bce needs 1vsall/kvsall
        ["training.regime=1vsall"],  # with the default logistic loss
    ],
)
def test_incompatible_combinations(overrides):
    with pytest.raises(ConfigError, match="needs regime"):
        cfgmod.load_config(overrides=overrides)


def test_compatible_combination():
    cfg = cfgmod.load_config(overrides=["training.regime=kvsall", "training.loss=ce"])
    assert cfg["training"]["loss"] == "ce"


def test_new_sections_are_validated():
    with pytest.raises(ConfigError, match="report.top_k must be positive"):
        cfgmod.load_config(overrides=["report.top_k=0"])
    with pytest.raises(ConfigError, match="report.samples must not be negative"):
        cfgmod.load_config(overrides=["report.samples=-1"])
    with pytest.raises(ConfigError, match="tracking.tensorboard must be one of"):
        cfgmod.load_config(overrides=["tracking.tensorboard=sometimes"])
    assert (
        cfgmod.load_config(overrides=["report.zero_shot=runs/z"])["report"]["zero_shot"] == "runs/z"
    )


@pytest.mark.parametrize(
    "text, message",
    [
        ("model.dim=65537", "model.dim must be at most 65536, not 65537"),
        ("num_threads=100000", "num_threads must be at most 4096, not 100000"),
        ("training.batch_size=16777217", "training.batch_size must be at most 16777216"),
        ("evaluation.max_scores=99999999999999999999999", "must be at most 1099511627776"),
        ("training.epochs=1048577", "training.epochs must be at most 1048576"),
        ("model.gamma=1e7", "model.gamma must be at most 1000000.0, not 10000000.0"),
        ("model.gamma=-1", "model.gamma must not be negative"),
        ("training.optimizer.lr=1e400", "lr must be a finite number, not inf"),
        ("training.optimizer.lr=-.inf", "lr must be a finite number, not -inf"),
        (f"model.gamma={'9' * 400}", "model.gamma must be a finite number, not inf"),
        ("evaluation.max_memory_mb=.inf", "max_memory_mb must be a finite number"),
        ("evaluation.max_memory_mb=1e12", "max_memory_mb must be at most 1073741824"),
        ("training.adversarial_temperature=.nan", "must be a finite number, not nan"),
    ],
)
def test_values_beyond_their_bounds(text, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        cfgmod.load_config(overrides=[text])


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "evaluation.exclude_relations=[r, 1]",
            "evaluation.exclude_relations[1] must be str, not int 1",
        ),
        ("evaluation.pool_same_split_relations=[[r]]", "relations[0] must be str, not list ['r']"),
        ("evaluation.exclude_relations=['']", "exclude_relations[0] must not be empty"),
        ("evaluation.calibration.weights=[0.5, x]", "weights[1] must be float, not str 'x'"),
        ("evaluation.calibration.weights=[.nan]", "weights[0] must be a finite number, not nan"),
        ("evaluation.calibration.weights=[-1]", "weights[0] must not be negative, not -1.0"),
        ("evaluation.calibration.weights=[1e9]", "weights[0] must be at most 1000.0"),
        ("evaluation.calibration.weights={a: 1}", "weights must be list, not dict"),
        ("evaluation.zero_shot_blend.weights=[.nan]", "weights[0] must be a finite number"),
        ("evaluation.zero_shot_blend.weights=[-1]", "weights[0] must not be negative, not -1.0"),
        ("evaluation.zero_shot_blend.weights=[1e9]", "weights[0] must be at most 1000000.0"),
        ("evaluation.zero_shot_blend.weights=1", "zero_shot_blend.weights must be list, not int"),
        (
            "evaluation.splits=[[test]]",
            "drawn from ['train', 'valid', 'test']; ['test'] is not one",
        ),
        ("evaluation.sides=[{head: 1}]", "{'head': 1} is not one of them"),
        ("model.modalities=[image, 3]", "model.modalities must be a list drawn from"),
        ("zero_shot.anchor_modalities=[true]", "True is not one of them"),
    ],
)
def test_list_items_are_checked(text, message):
    with pytest.raises(ConfigError) as info:
        cfgmod.load_config(overrides=[text])
    assert message in str(info.value)


def test_list_items_are_coerced():
    cfg = cfgmod.load_config(overrides=["evaluation.calibration.weights=[0, 1, 2.5]"])
    assert cfg["evaluation"]["calibration"]["weights"] == [0.0, 1.0, 2.5]
    assert all(type(w) is float for w in cfg["evaluation"]["calibration"]["weights"])


@pytest.mark.parametrize(
    "text, message",
    [
        ("training.subsample={r: x}", "training.subsample.r must be float, not str 'x'"),
        ("training.subsample={r: .nan}", "training.subsample.r must be a finite number"),
        ("training.subsample={r: 2}", "training.subsample.r must be a fraction in [0, 1]"),
        ("dataset.inverse_relations={r: 1}", "dataset.inverse_relations.r must be str, not int"),
        ("dataset.inverse_relations.r=", "dataset.inverse_relations.r must be str, not NoneType"),
        ("dataset.inverse_relations={r: [a]}", "must be str, not list ['a']"),
        ("zero_shot.templates={1: 'a {}'}", "zero_shot.templates: keys must be relation names"),
        ("zero_shot.head_templates=[a]", "zero_shot.head_templates must be a mapping"),
    ],
)
def test_mapping_entries_are_checked(text, message):
    with pytest.raises(ConfigError) as info:
        cfgmod.load_config(overrides=[text])
    assert message in str(info.value)


@pytest.mark.parametrize(
    "text, message",
    [
        ("training.progress=1", "training.progress must be one of auto, True, False, not 1"),
        ("compile=0", "compile must be one of"),
        ("dataset.name=''", "dataset.name must not be empty"),
        ('features.cache_dir="a\\0b"', "features.cache_dir must not contain a NUL character"),
    ],
)
def test_choices_are_exact_and_strings_usable(text, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        cfgmod.load_config(overrides=[text])
