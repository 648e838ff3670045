"""Run folders: what makes a folder one, when a new run may start in it, the lock a training
process holds in it, and paths that keep working wherever the folder is used from.

A run folder holds ``config.yaml`` (``vlkge train`` and ``vlkge zero-shot`` write it) or, from a
run whose config was removed to extend it, checkpoints. A run starts in a missing or empty
folder, or in a run folder with the same config (it continues there); files that are not a
run's, and the results of a run with another config, are never overwritten.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from vlkge import config as config_mod
from vlkge.errors import VlkgeError
from vlkge.files import write_text

log = logging.getLogger(__name__)

CONFIG = "config.yaml"
METRICS = "metrics.json"
#: the calibration's hub penalties, written when the run is evaluated (training.final)
PENALTIES = "calibration.safetensors"
LOCK = ".lock"  # held by the process writing the run (hidden, like its temporary files)
#: ``checkpoints/<name>.pt``: the selected model; the latest resumable state (README, "Quick start")
CHECKPOINTS = ("best", "last")
#: keys whose value is a path wherever it is set
PATH_KEYS = (
    ("dataset", "data_dir"),
    ("features", "cache_dir"),
    ("report", "zero_shot"),
    ("evaluation", "run_blend", "run"),
)


def checkpoint_path(folder: str | os.PathLike, name: str = "best") -> Path:
    """The file of checkpoint ``name`` (one of :data:`CHECKPOINTS`) in run folder ``folder``."""
    return Path(folder) / "checkpoints" / f"{name}.pt"


def _has_checkpoint(folder: Path) -> bool:
    return any((folder / "checkpoints").glob("*.pt"))


def is_run_folder(folder: str | os.PathLike) -> bool:
    folder = Path(folder)
    return (folder / CONFIG).is_file() or _has_checkpoint(folder)


def require_run_folder(folder: str | os.PathLike) -> Path:
    """``folder`` as a path, when it is a run folder with a config to load; else a one-line
    error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise VlkgeError(f"{folder}: no such run folder")
    if not (folder / CONFIG).is_file():
        raise VlkgeError(f"{folder}: not a run folder (no {CONFIG})")
    return folder


@contextlib.contextmanager
def new_run(folder: str | os.PathLike, cfg: dict) -> Iterator[None]:
    """Hold ``folder`` (created if missing) for a run of ``cfg`` (absolute paths) while the
    block runs. Refused in one line: a folder holding files that are not a run's (checked
    before anything is created in it), one another process trains in, and one holding the
    results of a run with another config. The config of a run that failed before its first
    checkpoint may be replaced (a fixed config reruns there)."""
    folder = Path(folder)
    _refuse_foreign(folder)
    with run_lock(folder):
        _refuse_other_config(folder, cfg)
        yield


def _refuse_foreign(folder: Path) -> None:
    if not folder.is_dir() or is_run_folder(folder):
        return
    others = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    if others:
        more = f" and {len(others) - 1} more" if len(others) > 1 else ""
        raise VlkgeError(
            f"{folder}: not a vlkge run folder (it holds {others[0]}{more} but no {CONFIG} "
            "or checkpoints); use a new or empty --out folder"
        )


def _refuse_other_config(folder: Path, cfg: dict) -> None:
    if not (folder / CONFIG).is_file():
        return
    previous = absolute_paths(config_mod.load_config(folder / CONFIG))
    changed = ", ".join(sorted(config_mod.diff(previous, cfg)))
    if changed and ((folder / METRICS).is_file() or _has_checkpoint(folder)):
        raise VlkgeError(
            f"{folder} holds a run with another config (differs in {changed}); "
            "use a new --out folder"
        )
    if changed:
        log.info("%s: replacing the config of a run that saved no results (%s)", folder, changed)


@contextlib.contextmanager
def run_lock(folder: str | os.PathLike) -> Iterator[None]:
    """Hold the lock of run folder ``folder`` (created if missing); a second process is
    refused in one line instead of mixing two runs in one folder."""
    from filelock import FileLock, Timeout

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(folder / LOCK, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise VlkgeError(
            f"{folder}: another vlkge process is writing to this run folder; wait for it to "
            "end or use another --out folder"
        ) from None
    try:
        yield
    finally:
        lock.release()


def absolute_paths(cfg: dict) -> dict:
    """A copy of ``cfg`` with every path absolute (resolved against the current folder), so
    that its run folder works from any folder: the :data:`PATH_KEYS`, and ``dataset.name`` /
    ``encoder.name`` when they name a local folder rather than a named dataset or a model."""
    from vlkge.data.registry import DATASETS
    from vlkge.encoders import local_folder

    def absolute(value: str) -> str:
        return os.path.abspath(os.path.expanduser(value))

    out = copy.deepcopy(cfg)
    for *sections, key in PATH_KEYS:
        parent = functools.reduce(dict.__getitem__, sections, out)
        if parent[key]:
            parent[key] = absolute(parent[key])
    dataset = out["dataset"]["name"]
    if dataset.lower() not in DATASETS and Path(dataset).is_dir():
        out["dataset"]["name"] = absolute(dataset)
    if local_folder(out["encoder"]["name"]) is not None:
        out["encoder"]["name"] = absolute(out["encoder"]["name"])
    return out


def write_metrics(folder: str | os.PathLike, metrics: dict) -> None:
    """``metrics.json`` of a run folder, written atomically."""
    write_text(Path(folder) / METRICS, json.dumps(metrics, indent=2))


def read_metrics(folder: str | os.PathLike) -> dict:
    """``metrics.json`` of a finished run; anything else is a one-line error naming the file."""
    path = Path(folder) / METRICS
    if not path.is_file():
        raise VlkgeError(
            f"{folder}: no {METRICS} (the run has not finished; "
            f"`vlkge train --resume {folder}` completes it)"
        )
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise VlkgeError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(metrics, dict):
        raise VlkgeError(f"{path}: expected a JSON object of metrics per split")
    return metrics
