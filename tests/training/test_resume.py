"""The config check of a resumed run: free keys pass, any other change is one line."""

from pathlib import Path

import pytest

from vlkge.config import load_config
from vlkge.errors import VlkgeError
from vlkge.training.resume import check_resumable

LAST, RUN = Path("run/checkpoints/last.pt"), Path("run")


def test_free_keys_and_old_checkpoints_pass():
    saved = load_config(overrides=["training.epochs=3"])
    check_resumable(saved, load_config(overrides=["training.epochs=9", "device=cpu"]), LAST, RUN)
    check_resumable(None, load_config(overrides=["model.dim=4"]), LAST, RUN)


def test_another_change_is_refused_naming_the_keys():
    saved = load_config()
    cfg = load_config(overrides=["model.dim=4", "training.optimizer.lr=0.5"])
    with pytest.raises(VlkgeError, match=r"differs in model.dim, training.optimizer.lr\)"):
        check_resumable(saved, cfg, LAST, RUN)
