"""Searches on Nations small enough for the test suite: DistMult d 16 trained 1-vs-all, a few
epochs of about 0.2 s each; worker processes run the real ``vlkge tune`` code."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import yaml

SOURCE = Path(__file__).resolve().parents[2] / "src"
BASE = {
    "dataset": {"name": "nations"},
    "model": {"backbone": "distmult", "dim": 16},
    "training": {
        "regime": "1vsall",
        "loss": "ce",
        "epochs": 6,
        "batch_size": 64,
        "progress": False,
    },
    "validation": {"patience": 0},
    "tracking": {"tensorboard": False},
    "report": {"after_train": False},
    "compile": False,
}


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.fixture
def base_config(tmp_path) -> Path:
    """The base config of the test searches."""
    return write_yaml(tmp_path / "base.yaml", BASE)


@pytest.fixture
def space_file(tmp_path):
    """``space_file(data)`` writes a search space and returns its path."""
    return lambda data, name="space.yaml": write_yaml(tmp_path / name, data)


@pytest.fixture
def vlkge_command():
    """``vlkge_command(*args)``: the command line of ``python -m vlkge ARGS``."""
    return lambda *args: [sys.executable, "-m", "vlkge", *args]


@pytest.fixture
def command_env() -> dict:
    """One thread per process, and the source tree importable (a checkout without install)."""
    path = os.pathsep.join(p for p in (str(SOURCE), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}


@pytest.fixture
def finished_search(tmp_path, base_config, space_file):
    """A search's settings and a study of finished trials made without training: trial 0
    complete, 1 pruned after epoch 2, 2 complete (the best), 3 lost its worker and 4 continued
    its run folder to completion, 5 failed; (settings, study)."""
    import optuna
    from optuna.trial import TrialState, create_trial

    from vlkge.tuning import recovery
    from vlkge.tuning.search import prepare
    from vlkge.tuning.storage import open_storage
    from vlkge.tuning.study import open_study

    space = space_file(
        {
            "parameters": {
                "training.optimizer.lr": {"low": 0.01, "high": 1.0, "log": True},
                "model.dim": [8, 16],
            }
        }
    )
    settings, url = prepare(
        config=str(base_config), sets=[], space=str(space), trials=5, out=str(tmp_path / "s"),
        storage=None, study=None, resume=None,
    )  # fmt: skip
    settings.folder.mkdir()
    study = open_study(settings, open_storage(url))
    distributions = {p.key: p.distribution() for p in settings.space.parameters}

    def add(state, lr, dim, value=None, curve=(), run=None, **extra):
        attrs = {"run": run or f"trials/{len(study.get_trials()):04d}", "epochs": len(curve)}
        study.add_trial(
            create_trial(
                state=state,
                value=value,
                params={"training.optimizer.lr": lr, "model.dim": dim},
                distributions=distributions,
                intermediate_values=dict(enumerate(curve, 1)),
                user_attrs={**attrs, **extra.pop("user_attrs", {})},
                **extra,
            )
        )

    add(TrialState.COMPLETE, 0.1, 8, 0.61, (0.5, 0.58, 0.61))
    add(TrialState.PRUNED, 0.011, 16, 0.31, (0.3, 0.31))  # tell() keeps the last report
    add(TrialState.COMPLETE, 0.3, 16, 0.7, (0.6, 0.68, 0.7))
    add(TrialState.FAIL, 0.5, 8, None, (0.55,), user_attrs={recovery.REQUEUED: recovery.DIED})
    add(
        TrialState.COMPLETE, 0.5, 8, 0.66, (0.55, 0.6, 0.66), run="trials/0003",
        system_attrs={recovery.CONTINUES: 3},
    )  # fmt: skip
    add(TrialState.FAIL, 0.9, 16, None, (), user_attrs={"error": "non-finite loss (nan)"})
    assert optuna.load_study(study_name=settings.study, storage=url).trials
    return settings, study
