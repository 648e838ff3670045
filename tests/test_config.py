"""Configuration: documented defaults, user files, --set overrides, strict validation."""

from __future__ import annotations

import copy
import re

import pytest
import yaml

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


def test_every_default_key_is_documented():
    """Each leaf key in default.yaml carries a comment on its line (or the lines after it)."""
    lines = cfgmod.default_text().splitlines()
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or stripped.endswith(":"):
            continue
        assert "#" in line, f"undocumented default: {line!r} (line {i + 1})"


def test_dump_round_trips():
    cfg = cfgmod.load_config(overrides=["model.dim=16"])
    assert cfgmod.validate(yaml.safe_load(cfgmod.dump(cfg))) == cfg


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


# --- documented output and suggestions ------------------------------------------------------
def test_documented_config_round_trips_with_every_comment():
    assert cfgmod.documented(cfgmod.defaults()) == cfgmod.default_text()
    cfg = cfgmod.load_config(
        overrides=[
            "model.dim=32",
            "evaluation.splits=[test]",
            "zero_shot.templates.painter=by {}, it is",
            "report.zero_shot=runs/zero shot",
        ]
    )
    full = cfgmod.documented(cfg)
    assert yaml.safe_load(full) == cfg
    assert "  dim: 32                 # width d of the" in full
    assert len(full.splitlines()) == len(cfgmod.default_text().splitlines())


def test_documented_changed_keys_only():
    cfg = cfgmod.load_config(overrides=["model.dim=32", "zero_shot.templates.r=x {}", "seed=1"])
    assert cfgmod.changed_keys(cfg) == {"model.dim", "zero_shot.templates", "seed"}
    short = cfgmod.documented(cfg, cfgmod.changed_keys(cfg))
    assert yaml.safe_load(short) == {
        "seed": 1,
        "model": {"dim": 32},
        "zero_shot": {"templates": {"r": "x {}"}},
    }
    assert "# default 768; width d" in short
    assert "every key has its default" in cfgmod.documented(cfgmod.load_config(), set())


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


# --- bounds, list items, mapping entries, long values ---------------------------------------
def _numeric_keys() -> list[str]:
    cfg = cfgmod.defaults()
    out = []
    for key in cfgmod.dotted_keys(cfg):
        node = cfg
        for part in key.split("."):
            node = node[part]
        kind = cfgmod.NULLABLE_TYPES.get(key) if node is None else type(node)
        if kind in (int, float) or cfgmod.ITEMS.get(key) in (int, float):
            out.append(key)
    return out


def test_every_numeric_key_has_an_upper_bound():
    numeric = _numeric_keys()
    assert {"model.dim", "num_threads", "evaluation.calibration.weights"} <= set(numeric)
    assert [k for k in numeric if k not in cfgmod.AT_MOST and k not in cfgmod.BELOW_ONE] == []
    assert set(cfgmod.AT_MOST) <= set(numeric)  # no bound for a key that is gone
    for key, bound in cfgmod.AT_MOST.items():  # the bound itself is allowed
        value = f"[{bound}]" if key in cfgmod.ITEMS else bound
        cfgmod.load_config(overrides=[f"{key}={value}"])


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


def test_check_key_checks_one_value_on_its_own():
    assert cfgmod.check_key("model.dim", 16) == 16
    assert cfgmod.check_key("training.optimizer.lr", 1) == 1.0  # a float key's int
    assert cfgmod.check_key("training.subsample.rel", 0.5) == 0.5  # a mapping's entry
    assert cfgmod.check_key("training.loss", "ce") == "ce"  # its regime is not checked here
    with pytest.raises(ConfigError, match="^space.yaml: unknown key 'model.dimm'; did you mean"):
        cfgmod.check_key("model.dimm", 16, "space.yaml")
    with pytest.raises(ConfigError, match="model.dim must be positive, not -1"):
        cfgmod.check_key("model.dim", -1)
    with pytest.raises(ConfigError, match=r"training.subsample.rel must be a fraction in \[0, 1\]"):
        cfgmod.check_key("training.subsample.rel", 2)
