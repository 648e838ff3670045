"""What a search found: its trials as table rows, the best trial (selected on validation only),
``best.yaml`` to train it again, and its test split scored once (docs/tuning.md, "Results").
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from vlkge import config as config_mod
from vlkge.files import write_text
from vlkge.reports.tables import aligned
from vlkge.runfolder import checkpoint_path, write_metrics
from vlkge.tuning import recovery
from vlkge.tuning.study import TuneSettings, apply_params

log = logging.getLogger(__name__)

BEST_CONFIG = "best.yaml"
BEST_METRICS = "best.json"


@dataclass
class TrialRow:
    """One trial as the table, the progress lines and the report show it."""

    number: int
    state: str  # complete | pruned | failed | requeued | running | waiting
    value: float | None
    epochs: int | None
    seconds: float | None
    params: dict = field(default_factory=dict)
    run: str | None = None
    note: str = ""
    best: bool = False


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The completed trial with the highest validation metric (the first of equals)."""
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return max(done, key=lambda t: (t.value, -t.number), default=None)


def trial_rows(study: optuna.Study) -> list[TrialRow]:
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    successor: dict[int, int] = {}
    last_of_slot: dict[int, int] = {}
    for trial in trials:
        root = recovery.root_number(trial)
        if root in last_of_slot:
            successor[last_of_slot[root]] = trial.number
        last_of_slot[root] = trial.number
    best = best_trial(study)
    rows = []
    for trial in trials:
        row = TrialRow(
            trial.number,
            trial.state.name.lower(),
            trial.value if trial.state in (TrialState.COMPLETE, TrialState.PRUNED) else None,
            trial.user_attrs.get("epochs"),
            trial.duration.total_seconds() if trial.duration else None,
            dict(trial.params),
            trial.user_attrs.get("run"),
            trial.user_attrs.get(recovery.ERROR, ""),
            best is not None and trial.number == best.number,
        )
        if trial.state == TrialState.PRUNED:
            row.note = f"pruned after epoch {row.epochs}"
        elif trial.state == TrialState.FAIL and not row.note:  # its worker's failure
            why = trial.user_attrs.get(recovery.REQUEUED, recovery.DIED)
            row.note = "its worker died" if why == recovery.DIED else "stopped"
            if trial.number in successor:
                row.state = "requeued"
                row.note += f"; continued by trial {successor[trial.number]}"
            else:
                row.state = "failed"
                row.note += "; not re-queued"
        elif trial.state == TrialState.FAIL:
            row.state = "failed"
        if recovery.CONTINUES in trial.system_attrs and trial.state != TrialState.FAIL:
            row.note = f"{row.note}; " if row.note else ""
            row.note += f"continues trial {trial.system_attrs[recovery.CONTINUES]}"
        rows.append(row)
    return rows


def slot_states(rows: list[TrialRow]) -> dict[int, str]:
    """Each trial slot's state (that of its latest trial), by the slot's last trial number."""
    return {r.number: r.state for r in rows if r.state != "requeued"}


def short_names(keys: list[str]) -> dict[str, str]:
    """Each key's last part, or the whole key where two keys end alike."""
    leaves = [k.rsplit(".", 1)[-1] for k in keys]
    return {
        k: (leaf if leaves.count(leaf) == 1 else k) for k, leaf in zip(keys, leaves, strict=True)
    }


def shown_value(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "null" if value is None else str(value)


def format_table(rows: list[TrialRow], keys: list[str], metric: str, split: str) -> str:
    names = short_names(keys)
    header = ["trial", "state", f"{split} {metric}", "epochs", "time", *names.values(), "note"]
    table = [header]
    for r in rows:
        table.append(
            [
                f"{r.number}{' *' if r.best else ''}",
                r.state,
                "-" if r.value is None else f"{r.value:.4f}",
                "-" if r.epochs is None else str(r.epochs),
                "-" if r.seconds is None else f"{r.seconds:.1f}s",
                *(shown_value(r.params[k]) if k in r.params else "-" for k in keys),
                r.note,
            ]
        )
    lines = aligned([line[:-1] for line in table], text_columns=2)
    notes = [f"  {line[-1]}" if line[-1] else "" for line in table]
    body = "\n".join(line + note for line, note in zip(lines, notes, strict=True))
    return body + "\n* the best trial (selected on validation)"


def trial_line(row: TrialRow, metric: str, split: str) -> str:
    """The progress line of a trial that just finished."""
    params = ", ".join(f"{k}={shown_value(v)}" for k, v in row.params.items())
    if row.state in ("failed", "requeued"):
        return f"trial {row.number} {row.state}: {row.note} ({params})"
    value = "-" if row.value is None else f"{row.value:.4f}"
    time = "" if row.seconds is None else f", {row.seconds:.1f}s"
    epochs = f"{row.epochs} epoch{'' if row.epochs == 1 else 's'}"
    return (
        f"trial {row.number} {row.state}: {split} {metric} {value} after {epochs}{time} ({params})"
    )


def write_best(settings: TuneSettings, best: FrozenTrial) -> Path:
    """``best.yaml``: the base config with the best trial's values, for ``vlkge train``."""
    cfg = apply_params(settings.config, settings.space.config_values(best.params))
    path = settings.folder / BEST_CONFIG
    header = (
        f"# The best trial ({best.number}) of study {settings.study!r}: {settings.split} "
        f"{settings.metric} {best.value:.4f}, run folder {best.user_attrs.get('run')}.\n"
        f"#   vlkge train --config {path} --out RUN\n"
    )
    write_text(path, header + config_mod.documented(cfg, config_mod.changed_keys(cfg)))
    return path


def score_best_once(settings: TuneSettings, best: FrozenTrial) -> dict | None:
    """The best trial's other evaluation splits (the base config's ``evaluation.splits``
    without the validation split: test) scored once, kept in ``best.json`` (``metrics``: split
    -> block) and in the trial's ``metrics.json``, and its run report written; a later call
    for the same trial reads them back. None when the base config scores no other split, or
    the trial's run folder is on another host."""
    from filelock import FileLock

    with FileLock(settings.folder / ".best.lock"):  # hosts sharing the folder score it once
        return _score_best(settings, best)


def _score_best(settings: TuneSettings, best: FrozenTrial) -> dict | None:
    from vlkge.training.final import evaluate_run
    from vlkge.training.setup import load_run

    splits = [s for s in settings.config["evaluation"]["splits"] if s != settings.split]
    record = settings.folder / BEST_METRICS
    if record.is_file():
        saved = json.loads(record.read_text(encoding="utf-8"))
        if saved.get("trial") == best.number:
            return saved
    folder = settings.folder / best.user_attrs["run"]
    if not splits:
        return None
    if not checkpoint_path(folder).is_file():
        log.warning("trial %d's run folder is not on this host: %s not scored", best.number, splits)
        return None
    cfg, kg, model = load_run(folder)
    scored = evaluate_run(cfg, kg, model, splits)
    metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    write_metrics(folder, {**metrics, **{s: scored[s] for s in splits}})
    out = {
        "trial": best.number,
        "run": best.user_attrs["run"],
        "params": settings.space.config_values(best.params),
        "selected_on": {"split": settings.split, "metric": settings.metric, "value": best.value},
        "metrics": {s: scored[s] for s in splits},
    }
    write_text(record, json.dumps(out, indent=2))
    if cfg["report"]["after_train"]:
        from vlkge.reports.html import write_report_safely

        write_report_safely(folder)
    return out
