"""Which config changes a resumed run accepts (``vlkge train --resume``, README.md): a run
continues only under the config its ``last.pt`` was saved with, up to the keys below."""

from __future__ import annotations

from pathlib import Path

from vlkge import config as config_mod
from vlkge.errors import VlkgeError

#: config keys a resumed run may change from those its checkpoint was saved with: how it shows
#: progress and reports, where it runs, and ``training.epochs`` (raising it extends a run)
RESUME_FREE_KEYS = (
    "training.progress",
    "training.epochs",
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
    changed = [k for k in config_mod.diff(saved, cfg) if not config_mod.key_in(k, RESUME_FREE_KEYS)]
    if changed:
        raise VlkgeError(
            f"{last_path}: saved by this run before its config changed (differs in "
            f"{', '.join(sorted(changed))}); restore {run_dir / 'config.yaml'} or "
            "start a new run with --out"
        )
