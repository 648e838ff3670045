"""A search's study: its trial slots (a grid's points fixed in them), the budget that grows but
never shrinks, the definition every session and host must share, the trials' configs."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from vlkge.errors import VlkgeError
from vlkge.tuning.search import prepare
from vlkge.tuning.storage import open_storage
from vlkge.tuning.study import (
    build_pruner,
    extend_budget,
    load_settings,
    open_study,
    trial_config,
)


@pytest.fixture
def make_settings(base_config, space_file, tmp_path):
    def make(space: dict, trials: int = 3, sets: list[str] = ()):
        settings, url = prepare(
            config=str(base_config), sets=list(sets), space=str(space_file(space)),
            trials=trials, out=str(tmp_path / "s"), storage=None, study=None, resume=None,
        )  # fmt: skip
        settings.folder.mkdir(exist_ok=True)
        return settings, open_storage(url)

    return make


def test_slots_and_a_budget_that_only_grows(make_settings):
    settings, storage = make_settings({"parameters": {"model.dim": [8, 16]}})
    study = open_study(settings, storage)
    assert extend_budget(settings, study, storage) == 3
    assert extend_budget(settings, study, storage) == 3  # the same command again adds none
    settings.trials = 5
    assert extend_budget(settings, study, storage) == 5
    settings.trials = 2
    assert extend_budget(settings, study, storage) == 5
    assert [t.state for t in study.get_trials()] == [TrialState.WAITING] * 5


def test_a_grid_fixes_its_points_in_the_slots(make_settings):
    space = {"sampler": "grid", "parameters": {"model.dim": [8, 16], "model.gamma": [1.0, 2.0]}}
    settings, storage = make_settings(space, trials=10)
    study = open_study(settings, storage)
    assert extend_budget(settings, study, storage) == 4  # the grid's size caps the budget
    fixed = [t.system_attrs["fixed_params"] for t in study.get_trials()]
    assert fixed == settings.space.grid_points(settings.seed)


def test_the_study_refuses_another_search(make_settings):
    settings, storage = make_settings({"parameters": {"model.dim": [8, 16]}})
    open_study(settings, storage)
    again, _ = make_settings({"parameters": {"model.dim": [8, 16]}}, sets=["device=cpu"])
    open_study(again, storage)  # host-local keys may differ between sessions
    other, _ = make_settings({"parameters": {"model.dim": [8, 32]}})
    with pytest.raises(VlkgeError, match="searches another config or space"):
        open_study(other, storage)
    other, _ = make_settings({"parameters": {"model.dim": [8, 16]}}, sets=["model.gamma=3"])
    with pytest.raises(VlkgeError, match=r"differs in config\.model\.gamma"):
        open_study(other, storage)
    optuna.create_study(storage=storage, study_name="foreign")
    settings.study = "foreign"
    with pytest.raises(VlkgeError, match="was not made by vlkge tune"):
        open_study(settings, storage)


def test_settings_round_trip(make_settings):
    settings, _ = make_settings({"parameters": {"training.optimizer.lr": {"low": 0.01, "high": 1}}})
    settings.save()
    loaded = load_settings(settings.folder)
    assert loaded.definition() == settings.definition() and loaded.trials == 3


def test_a_trial_scores_validation_only(make_settings):
    settings, _ = make_settings({"parameters": {"model.dim": [8, 16]}})
    cfg = trial_config(settings.config, {"model.dim": 8})
    assert cfg["model"]["dim"] == 8 and cfg["evaluation"]["splits"] == ["valid"]
    assert settings.config["evaluation"]["splits"] == ["valid", "test"]  # the base is untouched


@pytest.mark.parametrize(
    ("pruner", "kind"),
    [
        ("none", optuna.pruners.NopPruner),
        ("median", optuna.pruners.MedianPruner),
        ("hyperband", optuna.pruners.HyperbandPruner),
        ("halving", optuna.pruners.SuccessiveHalvingPruner),
    ],
)
def test_pruners(make_settings, pruner, kind):
    settings, _ = make_settings({"pruner": pruner, "parameters": {"model.dim": [8, 16]}})
    assert isinstance(build_pruner(settings), kind)
