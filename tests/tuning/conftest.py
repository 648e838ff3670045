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
