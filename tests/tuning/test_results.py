"""A search's results: every trial's state as the table shows it, the best trial selected on
validation only, best.yaml runnable by ``vlkge train``."""

from __future__ import annotations

from vlkge.config import load_config
from vlkge.tuning.results import (
    best_trial,
    format_table,
    slot_states,
    trial_line,
    trial_rows,
    write_best,
)


def test_rows_name_every_state(finished_search):
    _, study = finished_search
    rows = {r.number: r for r in trial_rows(study)}
    assert {n: r.state for n, r in rows.items()} == {
        0: "complete",
        1: "pruned",
        2: "complete",
        3: "requeued",
        4: "complete",
        5: "failed",
    }
    assert rows[1].note == "pruned after epoch 2" and rows[1].value == 0.31
    assert rows[3].note == "its worker died; continued by trial 4"
    assert rows[4].note == "continues trial 3" and rows[4].run == "trials/0003"
    assert rows[5].note == "non-finite loss (nan)" and rows[5].value is None
    assert [n for n, r in rows.items() if r.best] == [2] == [best_trial(study).number]
    slots = slot_states(list(rows.values()))  # five slots: the lost trial's was taken over
    assert sorted(slots.values()) == ["complete", "complete", "complete", "failed", "pruned"]


def test_table_and_progress_lines(finished_search):
    settings, study = finished_search
    rows = trial_rows(study)
    table = format_table(rows, [p.key for p in settings.space.parameters], "mrr", "valid")
    lines = table.splitlines()
    assert lines[0].split() == [
        "trial",
        "state",
        "valid",
        "mrr",
        "epochs",
        "time",
        "dim",
        "lr",
        "note",
    ]
    assert lines[3].startswith("2 *") and "0.7000" in lines[3] and lines[-1].startswith("*")
    assert "continued by trial 4" in lines[4]
    assert trial_line(rows[1], "mrr", "valid").startswith(
        "trial 1 pruned: valid mrr 0.3100 after 2"
    )
    assert trial_line(rows[5], "mrr", "valid").startswith("trial 5 failed: non-finite loss (nan)")


def test_best_yaml_trains_the_best_trial(finished_search):
    settings, study = finished_search
    path = write_best(settings, best_trial(study))
    cfg = load_config(path)
    assert cfg["training"]["optimizer"]["lr"] == 0.3 and cfg["model"]["dim"] == 16
    assert cfg["evaluation"]["splits"] == ["valid", "test"]  # the base config's, not a trial's
    assert cfg["dataset"]["name"] == "nations" and cfg["training"]["regime"] == "1vsall"
    assert path.read_text().startswith("# The best trial (2) of study 's': valid mrr 0.7000")
