"""The corpus of bad inputs under ``tests/bad_inputs``, run through the command line.

Each case folder holds a ``case.yaml`` (``why``, ``argv``, the expected ``error`` fragments or,
for inputs that are only reported or handled, ``status: 0`` with ``warning`` fragments of the
log and ``output`` fragments of stdout; ``delete`` lists files of the base dataset to remove) and the files that replace those of ``_base``, the toy
dataset. ``{data}`` in ``argv`` and fragments is the case's dataset folder, ``{out}`` a fresh
output folder. A bad input must end with status 2 and exactly one line on stderr, naming the
file and line (or the entity, or the config key), and no traceback.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from vlkge.cli import main

CORPUS = Path(__file__).parent / "bad_inputs"
CASES = sorted(p.name for p in CORPUS.iterdir() if p.is_dir() and not p.name.startswith("_"))


def prepare(name: str, tmp_path: Path) -> tuple[dict, list[str], dict]:
    """Copy the base dataset and the case's files; returns (spec, argv, placeholders)."""
    spec = yaml.safe_load((CORPUS / name / "case.yaml").read_text(encoding="utf-8"))
    data = tmp_path / "data"
    shutil.copytree(CORPUS / "_base", data)
    for path in (CORPUS / name).iterdir():
        if path.name != "case.yaml":
            shutil.copyfile(path, data / path.name)
    for gone in spec.get("delete", []):
        (data / gone).unlink()
    places = {"data": str(data), "out": str(tmp_path / "out")}
    return spec, [str(arg).format(**places) for arg in spec["argv"]], places


def test_the_corpus_covers_every_kind_of_bad_input():
    assert len(CASES) >= 40
    for name in CASES:
        spec = yaml.safe_load((CORPUS / name / "case.yaml").read_text(encoding="utf-8"))
        assert spec["why"] and spec["argv"], name
        assert spec.get("status", 2) == 0 or spec["error"], name


@pytest.mark.parametrize("name", CASES)
def test_bad_input(name, tmp_path, capsys, caplog):
    spec, argv, places = prepare(name, tmp_path)
    with caplog.at_level(logging.INFO, logger="vlkge"):
        code = main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in err + out + caplog.text
    if spec.get("status", 2) == 0:  # reported, not refused
        assert code == 0, err
        for fragment in spec.get("warning", []):
            assert fragment.format(**places) in caplog.text
        for fragment in spec.get("output", []):
            assert fragment.format(**places) in out
        return
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert err.startswith("vlkge: error: ")
    for fragment in spec["error"]:
        assert fragment.format(**places) in err, (fragment, err)


def test_bad_input_in_a_real_process(tmp_path):
    """A case that reads the data and the config, through the installed entry point: real
    stderr, real exit status."""
    spec, argv, places = prepare("config_too_many_negatives", tmp_path)
    script = Path(sys.executable).with_name("vlkge")
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "vlkge"]
    env = dict(os.environ, VLKGE_CACHE_DIR=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    done = subprocess.run(
        [*command, *argv], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("vlkge: error: "), done.stderr
    for fragment in spec["error"]:
        assert fragment.format(**places) in lines[0]
