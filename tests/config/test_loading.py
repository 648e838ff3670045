"""Loading a config: defaults, a user's file, --set overrides, unknown keys (vlkge.config.loading)."""

from __future__ import annotations

import copy

import pytest

from vlkge import config as cfgmod
from vlkge.errors import ConfigError, VlkgeError


def test_defaults_load_and_validate():
    text = cfgmod.default_text()
    assert text.startswith("#")
    cfg = cfgmod.load_config()
    assert cfg == cfgmod.validate(cfgmod.defaults())
    assert cfg["dataset"]["name"] == "wn9-img"
    assert cfg["model"]["dim"] == 768
    assert cfg["training"]["negatives"]["filter_splits"] == ["train"]
    assert cfg["evaluation"]["ties"] == "realistic"
    assert isinstance(cfg["model"]["gamma"], float)


@pytest.mark.parametrize(
    "text, key, value",
    [
        ("model.dim=16", "model.dim", 16),
        ("model.backbone=rotate", "model.backbone", "rotate"),
        ("model.gamma=6", "model.gamma", 6.0),  # ints become floats for float keys
        ("training.optimizer.lr=0.001", "training.optimizer.lr", 0.001),
        ("model.reciprocal=true", "model.reciprocal", True),
        ("dataset.unseen_entities=keep", "dataset.unseen_entities", "keep"),
        ("dataset.unseen_entities=null", "dataset.unseen_entities", None),
        ("dataset.data_dir=/tmp/data", "dataset.data_dir", "/tmp/data"),
        ("num_threads=2", "num_threads", 2),
        ("evaluation.splits=[test]", "evaluation.splits", ["test"]),
        ("training.negatives.filter_splits=[]", "training.negatives.filter_splits", []),
        ("training.progress=false", "training.progress", False),
        (" seed = 7", "seed", 7),
    ],
)
def test_overrides(text, key, value):
    cfg = cfgmod.load_config(overrides=[text])
    node = cfg
    for part in key.split("."):
        node = node[part]
    assert node == value
    assert type(node) is type(value)


def test_scientific_notation_for_a_float_key():
    """``lr=1e-3`` is how everyone writes a learning rate; PyYAML reads it as a string."""
    cfg = cfgmod.load_config(overrides=["training.optimizer.lr=1e-3"])
    assert cfg["training"]["optimizer"]["lr"] == pytest.approx(0.001)


def test_later_override_wins():
    cfg = cfgmod.load_config(overrides=["model.dim=16", "model.dim=32"])
    assert cfg["model"]["dim"] == 32


def test_parse_override():
    assert cfgmod.parse_override("a.b=[1, 2]") == ("a.b", [1, 2])
    assert cfgmod.parse_override("a=") == ("a", None)
    assert cfgmod.parse_override("a=x=y") == ("a", "x=y")
    assert cfgmod.parse_override("a=[unclosed") == ("a", "[unclosed")  # kept as a string
    for bad in ("model.dim", "=3"):
        with pytest.raises(ConfigError, match="key=value"):
            cfgmod.parse_override(bad)


def test_user_file_overrides_only_what_differs(tmp_path):
    path = tmp_path / "my.yaml"
    path.write_text("model:\n  backbone: distmult\ntraining:\n  epochs: 3\n", encoding="utf-8")
    cfg = cfgmod.load_config(path, ["training.epochs=5"])
    assert cfg["model"]["backbone"] == "distmult"
    assert cfg["model"]["dim"] == 768  # untouched default
    assert cfg["training"]["epochs"] == 5  # --set beats the file
    assert cfgmod.diff(cfgmod.load_config(), cfg) == {
        "model.backbone": ("transe", "distmult"),
        "training.epochs": (200, 5),
    }


def test_empty_user_file(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing\n", encoding="utf-8")
    assert cfgmod.load_config(path) == cfgmod.load_config()


@pytest.mark.parametrize(
    "text, suggestion",
    [
        ("model.dimm=3", "did you mean model.dim?"),
        ("trainig.epochs=3", "did you mean training?"),
        ("training.negatives.nums=3", "did you mean training.negatives.num?"),
    ],
)
def test_unknown_key_suggests(text, suggestion):
    with pytest.raises(ConfigError, match="unknown key") as info:
        cfgmod.load_config(overrides=[text])
    assert suggestion in str(info.value)
    assert isinstance(info.value, VlkgeError)


def test_unknown_key_in_file_names_the_file(tmp_path):
    path = tmp_path / "my.yaml"
    path.write_text("model:\n  backbon: rotate\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="did you mean model.backbone") as info:
        cfgmod.load_config(path)
    assert str(info.value).startswith(str(path))


def test_unknown_key_without_close_match():
    with pytest.raises(ConfigError, match="unknown key 'zzzzzz'") as info:
        cfgmod.load_config(overrides=["zzzzzz=1"])
    assert "did you mean" not in str(info.value)


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("model:\n  dim: 16\n  backbone: [transe\ntraining:\n  epochs: 2\n")
    with pytest.raises(ConfigError, match="invalid YAML") as info:
        cfgmod.load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}:")
    line = int(message[len(str(path)) + 1 :].split(":", 1)[0])
    assert 3 <= line <= 4  # the unclosed bracket opens on line 3


def test_bad_indentation_names_file_and_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("seed: 1\nmodel:\n  dim: 16\n    backbone: rotate\n")
    with pytest.raises(ConfigError, match="invalid YAML") as info:
        cfgmod.load_config(path)
    assert str(info.value).startswith(f"{path}:4:")


@pytest.mark.parametrize(
    "content, message",
    [
        ("- a\n- b\n", "must be a mapping"),
        ("model: 3\n", "model must be a mapping"),
    ],
)
def test_file_of_wrong_shape(tmp_path, content, message):
    path = tmp_path / "c.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        cfgmod.load_config(path)


def test_missing_and_non_utf8_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        cfgmod.load_config(tmp_path / "none.yaml")
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"seed: 1 # caf\xe9\n")
    with pytest.raises(ConfigError, match="UTF-8"):
        cfgmod.load_config(path)


def test_set_key_rejects_unknown_and_keeps_the_rest():
    cfg = cfgmod.defaults()
    before = copy.deepcopy(cfg)
    cfgmod.set_key(cfg, "model.dim", 8)
    assert cfg["model"]["dim"] == 8
    assert cfgmod.diff(before, cfg) == {"model.dim": (768, 8)}
    with pytest.raises(ConfigError, match="--set: unknown key 'model.size'"):
        cfgmod.set_key(cfg, "model.size", 8)


@pytest.mark.parametrize(
    "key, unknown, suggestion",
    [
        ("training.dim", "training.dim", "model.dim"),  # right name, wrong section
        ("dim", "dim", "model.dim"),
        ("model.dimm", "model.dimm", "model.dim"),
        ("trainng.epochs", "trainng", "training"),
        ("report.sample", "report.sample", "report.samples"),
        ("tracking.tensorbord", "tracking.tensorbord", "tracking.tensorboard"),
    ],
)
def test_unknown_keys_get_a_suggestion(key, unknown, suggestion):
    message = f"unknown key '{unknown}'; did you mean {suggestion}\\?"
    with pytest.raises(ConfigError, match=message):
        cfgmod.load_config(overrides=[f"{key}=1"])


LONG = "x" * 10_000


@pytest.mark.parametrize(
    "text",
    [
        f"model.backbone={LONG}",
        f"dataset.name=[{LONG}]",
        f"model.dim={LONG}",
        f"evaluation.splits=[{LONG}]",
        f"evaluation.exclude_relations=[[{LONG}]]",
        f"training.subsample.{LONG}=x",
        f"zero_shot.templates={{r: {LONG}}}",
        f"{LONG}=1",
        f"model.{LONG}=1",
        f"model.dim={'1' * 5000}",  # past Python's int conversion limit: read as a string
        LONG,  # no '='
    ],
)
def test_long_values_are_cut_in_errors(text):
    with pytest.raises(ConfigError) as info:
        cfgmod.load_config(overrides=[text])
    message = str(info.value)
    assert len(message) < 400 and "\n" not in message
    assert "..." in message


def test_a_file_with_a_value_yaml_cannot_build(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(f"model:\n  dim: {'1' * 5000}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="invalid value") as info:
        cfgmod.load_config(path)
    assert str(info.value).startswith(str(path)) and len(str(info.value)) < 400 + len(str(path))
