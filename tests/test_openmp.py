"""libgomp's spin count, set when vlkge is imported before torch (vlkge/openmp.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch  # noqa: F401  (loaded, as in any session that has run a model)

from vlkge.openmp import SPIN_COUNT, USER_SETTINGS, yield_busy_cores

SHOW = "import os, vlkge, torch; print(os.environ.get('GOMP_SPINCOUNT'))"


def spin_count_in_a_fresh_interpreter(**env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in USER_SETTINGS}
    done = subprocess.run(
        [sys.executable, "-c", SHOW], env={**clean, **env}, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_import_vlkge_sets_the_spin_count_unless_the_user_chose_one():
    assert spin_count_in_a_fresh_interpreter() == str(SPIN_COUNT)
    assert spin_count_in_a_fresh_interpreter(GOMP_SPINCOUNT="5") == "5"
    assert spin_count_in_a_fresh_interpreter(OMP_WAIT_POLICY="passive") == "None"


def test_too_late_once_torch_is_loaded(monkeypatch: pytest.MonkeyPatch):
    for name in USER_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    assert not yield_busy_cores() and "GOMP_SPINCOUNT" not in os.environ
