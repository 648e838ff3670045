"""The search report's figures: a PNG each when there is something to draw, None otherwise."""

from __future__ import annotations

from vlkge.tuning import plots

PNG = "data:image/png;base64,"


def test_figures(finished_search):
    settings, study = finished_search
    trials = study.get_trials()
    assert plots.history(trials, "valid mrr").startswith(PNG)
    assert plots.epochs(trials, 2, "valid mrr").startswith(PNG)
    assert plots.parallel(trials, settings.space.parameters, "valid mrr").startswith(PNG)
    assert plots.importances({"model.dim": 0.7, "training.optimizer.lr": 0.3}).startswith(PNG)


def test_nothing_to_draw(finished_search):
    settings, _ = finished_search
    assert plots.history([], "mrr") is None
    assert plots.epochs([], None, "mrr") is None
    assert plots.parallel([], settings.space.parameters, "mrr") is None
    assert plots.importances({}) is None
