"""Which config changes a resumed run accepts (``vlkge train --resume``, README.md): a run
continues only under the config its ``last.pt`` was saved with, up to the keys below."""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from vlkge import config as config_mod
from vlkge.errors import VlkgeError

#: config keys a resumed run may change from those its checkpoint was saved with: how it shows
#: progress and reports, where it runs, ``training.epochs`` (raising it extends a run) and
#: which splits the final evaluation scores (nothing of training or of its validation)
RESUME_FREE_KEYS = (
    "training.progress",
    "training.epochs",
    "evaluation.splits",
    "tracking.",
    "report.",
    "device",
    "num_threads",
)


def check_resumable(saved: dict | None, cfg: dict, last_path: Path, run_dir: Path) -> None:
    """Refuse to resume with a config ``cfg`` that differs from the one ``last_path`` was saved
    with (``config.yaml`` edited) beyond :data:`RESUME_FREE_KEYS`: the weights would continue
    under another model or training, silently when the parameter shapes agree. A checkpoint
    of an older vlkge records no config (``saved`` is None) and is not checked."""
    if saved is None:
        return
    saved = config_mod.expand_paper(_with_defaults(copy.deepcopy(saved), config_mod.defaults()))
    changed = [k for k in config_mod.diff(saved, cfg) if not config_mod.key_in(k, RESUME_FREE_KEYS)]
    if changed:
        raise VlkgeError(
            f"{last_path}: saved by this run before its config changed (differs in "
            f"{', '.join(sorted(changed))}); restore {run_dir / 'config.yaml'} or "
            "start a new run with --out"
        )


def _with_defaults(saved: dict, base: dict) -> dict:
    """``saved`` with the keys added to vlkge since it was written, at their defaults (which
    keep the behaviour the run was trained with)."""
    for key, value in base.items():
        if key not in saved:
            saved[key] = value
        elif isinstance(value, dict) and isinstance(saved[key], dict) and value:
            _with_defaults(saved[key], value)
    return saved


def check_same_layout(saved_model: dict, model: torch.nn.Module, last_path: Path) -> None:
    """Refuse to resume a checkpoint whose model entries are named otherwise than this model's
    (written by an older vlkge, before the entity representation was split): its weights
    still load for evaluate, predict and export, but the optimiser state is stored by
    parameter position, which has changed, so training would continue on mixed-up state."""
    if set(saved_model) != set(model.state_dict()):
        raise VlkgeError(
            f"{last_path}: written by an older vlkge whose model layout differs; its weights "
            "still serve evaluate, predict and export, but training cannot continue from it: "
            "start a new run with --out"
        )
