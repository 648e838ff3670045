"""Every YAML under configs/ loads and validates (a misspelt key fails here), and carries a
header saying what it runs and how; so does every point of the equal grids under bench/grids/."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from vlkge.config import key_in, load_config, load_yaml
from vlkge.data.registry import DATASETS
from vlkge.training.setup import INFERENCE_KEYS

ROOT = Path(__file__).resolve().parents[1]
# search spaces (space-*.yaml) are checked with vlkge tune's (tests/tuning/test_space.py)
CONFIGS = sorted(p for p in (ROOT / "configs").rglob("*.y*ml") if not p.name.startswith("space-"))
IDS = [str(p.relative_to(ROOT)) for p in CONFIGS]


def test_configs_are_shipped():
    names = set(IDS)
    for backbone in ("transe", "distmult", "complex", "rotate"):
        for variant in ("clip", "blip", "minilm", "minilm-concat", "minilm-weighted"):
            assert f"configs/wn9-img/vl-{backbone}-{variant}.yaml" in names
        for version in ("v1", "v2"):
            for vlm in ("clip", "blip"):
                assert f"configs/wikiart-mkg-{version}/{backbone}-{vlm}.yaml" in names


@pytest.mark.parametrize("path", CONFIGS, ids=IDS)
def test_config_loads_and_validates(path):
    cfg = load_config(path)
    name = cfg["dataset"]["name"]
    if name not in DATASETS:  # a split of a named dataset, made by a command in the header
        made = re.findall(r"vlkge datasets split-inductive (\S+) .*--out (\S+)", path.read_text())
        assert any(source in DATASETS and out == name for source, out in made), name


@pytest.mark.parametrize("path", CONFIGS, ids=IDS)
def test_config_header_names_the_experiment_and_its_commands(path):
    text = path.read_text(encoding="utf-8")
    header = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        header.append(line)
    assert len(header) >= 3, "a config starts with a comment: what it runs and how"
    header_text = "\n".join(header)
    assert "SPEC" in header_text  # where the protocol and the paper's numbers are written down
    own = str(path.relative_to(ROOT))
    commands = re.findall(r"vlkge (encode|train|zero-shot) --config (\S+)", header_text)
    assert commands, "the header gives the commands that run the experiment"
    for command, config in commands:  # a baseline beside the experiment: a zero-shot config
        baseline = command == "zero-shot" and Path(config).name.startswith("zero-shot")
        assert config == own or baseline, f"the header's {command} names another file: {config}"


WIKIART = [p for p in CONFIGS if p.parent.name.startswith("wikiart-mkg")]


@pytest.mark.parametrize("path", WIKIART, ids=[str(p.relative_to(ROOT)) for p in WIKIART])
def test_wikiart_configs_follow_the_protocol(path):
    cfg = load_config(path)
    version = path.parent.name[-2:]
    assert cfg["dataset"]["setting"] == "inductive"
    evaluation = cfg["evaluation"]
    assert evaluation["sides"] == ["tail"] and evaluation["candidates"] == "relation_pool"
    if version == "v2":
        assert set(evaluation["pool_same_split_relations"]) == {
            "isInfluencedBy",
            "isInfluencedOn",
            "isPupilOf",
            "isTeacherOf",
        }
        assert set(evaluation["exclude_relations"]) == {
            "isRelatedToArtwork",
            "isRelatedToArtist",
            "hasCreatedArtwork",
        }
        assert cfg["dataset"]["inverse_relations"] == {"isCreatedByArtist": "hasCreatedArtwork"}
    if path.name.startswith("zero-shot"):
        assert cfg["zero_shot"]["templates"]
        return
    training = cfg["training"]
    negatives = training["negatives"]
    assert (negatives["num"], negatives["side"], negatives["pool"]) == (1, "tail", "relation")
    assert cfg["model"]["modalities"] == ["image", "text"] and cfg["model"]["dim"] == 768
    if version == "v1":
        assert training["epochs"] == 50 and negatives["replacement"] is False
        assert training["subsample"] == {}
    else:
        assert training["epochs"] == 20 and negatives["replacement"] is True
        assert training["subsample"] == {"isRelatedToArtwork": 0.001}


def test_configs_only_override_what_differs_from_known_sections():
    # every top-level section of a shipped config is a section of the defaults
    defaults = load_config()
    for path in CONFIGS:
        assert set(load_yaml(path)) <= set(defaults), path


GRIDS = sorted((ROOT / "bench" / "grids").glob("*.yaml"))


def honest_grid():
    """bench/honest_grid.py as a module (bench/ is no package)."""
    spec = importlib.util.spec_from_file_location("honest_grid", ROOT / "bench" / "honest_grid.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", GRIDS, ids=[p.name for p in GRIDS])
def test_every_point_of_every_grid_loads_and_both_arms_get_the_same_budget(path):
    """What `bench/honest_grid.py` would train: each arm's config with its overrides and each
    point of its grid (its own, else the shared one), of equal size for every arm."""
    grid = honest_grid()
    spec = load_yaml(path)
    grid.check_partners(spec)
    for arm, points in grid.arm_points(spec).items():  # raises on unequal budgets
        fixed = spec["arms"][arm].get("set", {})
        for point in points:
            load_config(ROOT / spec["arms"][arm]["config"], grid.sets({**fixed, **point})[1::2])
    for control in (spec.get("controls") or {}).values():  # what `vlkge evaluate` may change
        assert all(key_in(key, INFERENCE_KEYS) for key in control.get("set", {})), control
        config = ROOT / spec["arms"][control["arm"]]["config"]
        load_config(config, grid.sets(control.get("set", {}))[1::2])
