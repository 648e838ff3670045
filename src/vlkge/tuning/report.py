"""``DIR/report.html``: a search on one page in the style of the run report (the shared layout
of :mod:`vlkge.reports.templating`): the best trial and its test metrics, the trials table,
optimisation history, validation per epoch, parameter importances and parallel coordinates,
pruned trials marked (docs/tuning.md, "Results").
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import optuna
import yaml

from vlkge import config as config_mod
from vlkge.files import write_text
from vlkge.reports.templating import environment
from vlkge.tuning import plots
from vlkge.tuning.results import BEST_CONFIG, TrialRow, short_names, shown_value, slot_states
from vlkge.tuning.study import TuneSettings

log = logging.getLogger(__name__)

REPORT = "report.html"


def _importances(study: optuna.Study) -> tuple[dict[str, float], str]:
    """Parameter importances, or why there are none."""
    from optuna.importance import PedAnovaImportanceEvaluator, get_param_importances

    states = (optuna.trial.TrialState.COMPLETE,)
    if len(study.get_trials(deepcopy=False, states=states)) < 2:
        return {}, "parameter importances need at least two completed trials"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            values = get_param_importances(study, evaluator=PedAnovaImportanceEvaluator())
        except (ValueError, RuntimeError) as exc:
            return {}, f"no parameter importances: {exc}"
    if caught:  # too few trials to tell the best ones apart from the rest
        return {}, f"no parameter importances yet: {caught[0].message}"
    return values, ""


def write_report(
    settings: TuneSettings,
    study: optuna.Study,
    rows: list[TrialRow],
    budget: int,
    scored: dict | None,
) -> Path:
    trials = study.get_trials(deepcopy=False)
    label = f"{settings.split} {settings.metric}"
    states = list(slot_states(rows).values())
    counts = {state: states.count(state) for state in ("complete", "pruned", "failed")}
    counts["finished"] = sum(counts.values())
    best = next((r for r in rows if r.best), None)
    importances, importance_note = _importances(study)
    cfg = settings.config
    page = (
        environment("vlkge.tuning")
        .get_template("tune.html.j2")
        .render(
            title=f"Search report: {settings.study}",
            settings=settings,
            split=settings.split,
            metric=settings.metric,
            parameters=settings.space.parameters,
            names=short_names([p.key for p in settings.space.parameters]),
            shown=shown_value,
            rows=rows,
            counts=counts,
            budget=budget,
            best=best,
            best_config=settings.folder / BEST_CONFIG,
            complete=counts["finished"] == budget,
            scored=scored["metrics"] if scored else None,
            scored_splits=list(scored["metrics"]) if scored else [],
            history=plots.history(trials, label),
            epochs=plots.epochs(trials, best.number if best else None, label),
            importances=plots.importances(importances),
            importance_note=importance_note,
            parallel=plots.parallel(trials, settings.space.parameters, label),
            space_text=yaml.safe_dump(settings.space.as_dict(), sort_keys=False),
            base_config=config_mod.documented(cfg, config_mod.changed_keys(cfg)),
        )
    )
    path = settings.folder / REPORT
    write_text(path, page)
    log.info("report: %s", path)
    return path
