"""The search space: every kind of parameter, the settings and their defaults, and a one-line
error for every mistake (unknown key with a suggestion, empty range, low > high, a value the
key rejects)."""

from __future__ import annotations

import re
from pathlib import Path

import optuna
import pytest
import yaml

from vlkge.cli import main
from vlkge.config import load_config
from vlkge.errors import ConfigError
from vlkge.tuning.space import SETTING_CHOICES, load_space, parse_space, space_text
from vlkge.tuning.study import apply_params


def test_parameters_of_every_kind():
    space = parse_space(
        {
            "parameters": {
                "training.optimizer.lr": {"low": 1e-3, "high": 1, "log": True},
                "model.dim": {"low": 16, "high": 64, "step": 16},
                "model.gamma": {"low": 1, "high": 12},  # a float key: ints become floats
                "model.modalities": [[], ["text"]],
                "model.fusion": {"choices": ["average", "concat"]},
            }
        },
        "space.yaml",
    )
    kinds = {p.key: p.kind for p in space.parameters}
    assert kinds == {
        "training.optimizer.lr": "float",
        "model.dim": "int",
        "model.gamma": "float",
        "model.modalities": "choice",
        "model.fusion": "choice",
    }
    assert space.settings["sampler"] == "tpe" and space.settings["pruner"] == "median"
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(0))
    values = space.draw(study.ask())
    assert values["model.dim"] in (16, 32, 48, 64)
    assert 1e-3 <= values["training.optimizer.lr"] <= 1
    assert values["model.modalities"] in ([], ["text"])  # lists are config values again
    assert isinstance(values["model.gamma"], float)
    again = parse_space(space.as_dict(), "again")  # tune.yaml keeps the normalised form
    assert again.as_dict() == space.as_dict()


def test_grid_points_cover_the_grid_in_a_seeded_order():
    space = parse_space(
        {
            "sampler": "grid",
            "parameters": {
                "model.dim": {"low": 16, "high": 48, "step": 16},
                "training.optimizer.lr": {"low": 0.1, "high": 0.3, "step": 0.1},
                "model.fusion": ["average", "concat"],
            },
        },
        "space.yaml",
    )
    points = space.grid_points(seed=3)
    assert len(points) == space.grid_size() == 18
    assert len({tuple(sorted(p.items())) for p in points}) == 18
    assert {p["training.optimizer.lr"] for p in points} == {0.1, 0.2, 0.3}
    assert points == space.grid_points(seed=3) != space.grid_points(seed=4)


ERRORS = [
    (
        {"training.optimizer.lrr": {"low": 0.1, "high": 1}},
        "unknown key 'training.optimizer.lrr'; did you mean training.optimizer.lr?",
    ),
    ({"training": {"low": 0.1, "high": 1}}, "training is a config section"),
    ({"validation.metric": ["mrr", "hits@10"]}, "validation.metric cannot be searched"),
    ({"model.dim": {"choices": []}}, "model.dim: empty choices"),
    ({"model.dim": {"low": 64, "high": 16}}, "model.dim: low 64 is above high 16"),
    ({"model.dim": {"low": 16, "high": 16}}, "model.dim: empty range (low = high = 16)"),
    ({"model.dim": {"low": -16, "high": 16}}, "model.dim low: model.dim must be positive, not -16"),
    (
        {"training.regime": ["1vsall", "2vsall"]},
        "training.regime choice '2vsall': training.regime must be one of",
    ),
    (
        {"model.dim": {"low": 16.5, "high": 32}},
        "model.dim low: model.dim must be int, not float 16.5",
    ),
    ({"model.dim": {"low": 16, "hihg": 32}}, "model.dim: unknown field 'hihg'; did you mean high?"),
    ({"model.dim": {"low": 16}}, "model.dim needs choices, or low and high (no high)"),
    ({"model.dim": 16}, "model.dim must be {choices: [...]} or {low: L, high: H}, not 16"),
    (
        {"model.fusion": {"low": "average", "high": "concat"}},
        "a range needs a key that takes numbers; model.fusion takes str values",
    ),
    (
        {"training.optimizer.lr": {"low": 0, "high": 1, "log": True}},
        "training.optimizer.lr low: training.optimizer.lr must be positive",
    ),
    (
        {"model.gamma": {"low": 0.0, "high": 1, "log": True}},
        "a log scale needs low above 0, not 0.0",
    ),
    (
        {"model.dim": {"low": 16, "high": 64, "step": 8, "log": True}},
        "step and log exclude each other",
    ),
    ({"model.dim": {"low": 16, "high": 64, "step": 0}}, "step must be a positive int, not 0"),
    ({"model.dim": [16, 16]}, "choice 16 is listed twice"),
    ({"model.dim": {"choices": [16], "low": 8}}, "choices and low exclude each other"),
]


@pytest.mark.parametrize(("parameters", "message"), ERRORS)
def test_bad_parameters_are_one_line(parameters, message):
    with pytest.raises(ConfigError) as caught:
        parse_space({"parameters": parameters}, "space.yaml")
    text = str(caught.value)
    assert text.startswith("space.yaml: ") and message in text, text
    assert "\n" not in text


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"samplr": "tpe"}, "unknown setting 'samplr'; did you mean sampler?"),
        ({"model.dim": [16, 32]}, "unknown setting 'model.dim'; config keys go under parameters:"),
        ({"pruner": "asha"}, "pruner must be one of none, median, hyperband, halving, not 'asha'"),
        ({"reduction_factor": 1}, "reduction_factor must be at least 2, not 1"),
        ({"seed": "x"}, "seed must be int, not str 'x'"),
        ({}, "parameters must name at least one config key to search"),
        (
            {"sampler": "grid", "parameters": {"training.optimizer.lr": {"low": 0.1, "high": 1}}},
            "sampler grid needs choices, int ranges or float ranges with a step",
        ),
    ],
)
def test_bad_settings_are_one_line(data, message):
    data = {"parameters": {"model.dim": [16, 32]}, **data}
    if message.startswith("parameters must"):
        data.pop("parameters")
    with pytest.raises(ConfigError, match="^space.yaml: ") as caught:
        parse_space(data, "space.yaml")
    assert message in str(caught.value)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="space file not found"):
        load_space(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("parameters: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+: invalid YAML"):
        load_space(bad)


def test_config_show_documents_the_format(capsys):
    assert main(["config", "show", "--space"]) == 0
    out = capsys.readouterr().out
    assert out == space_text()
    defaults = yaml.safe_load(out)
    assert defaults["parameters"] == {} and defaults["sampler"] in SETTING_CHOICES["sampler"]
    for line in out.splitlines():  # every setting has its comment
        if line and not line.startswith((" ", "#")):
            assert "#" in line, line


ROOT = Path(__file__).resolve().parents[2]
SPACES = sorted([*(ROOT / "configs").rglob("space-*.yaml"), *(ROOT / "bench" / "spaces").glob("*")])


def test_spaces_are_shipped():
    assert ROOT / "configs" / "wn9-img" / "space-complex-1vsall.yaml" in SPACES


@pytest.mark.parametrize("path", SPACES, ids=[str(p.relative_to(ROOT)) for p in SPACES])
def test_shipped_space_loads_and_its_header_runs_it(path):
    space = load_space(path)
    header = "\n".join(line for line in path.read_text().splitlines() if line.startswith("#"))
    own = str(path.relative_to(ROOT))
    commands = re.findall(
        r"(?:vlkge tune|tune_overhead.py \w+) --config (\S+) --space (\S+)", header
    )
    assert commands, "the header gives the command that runs the search"
    for config, named in commands:
        assert named == own
        base = load_config(ROOT / config)
        assert base["validation"]["every"] > 0
        for point in space.grid_points(0) if space.settings["sampler"] == "grid" else ():
            apply_params(base, space.config_values(point))  # every combination is a config
        ends = {p.key: p.choices[-1] if p.kind == "choice" else p.high for p in space.parameters}
        apply_params(base, ends)
