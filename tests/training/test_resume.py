"""The config check of a resumed run: free keys pass, any other change is one line."""

from pathlib import Path

import pytest
import torch

from vlkge.config import load_config
from vlkge.errors import VlkgeError
from vlkge.training.resume import check_resumable, check_same_layout

LAST, RUN = Path("run/checkpoints/last.pt"), Path("run")


def test_free_keys_and_old_checkpoints_pass():
    saved = load_config(overrides=["training.epochs=3"])
    free = ["training.epochs=9", "device=cpu", "evaluation.splits=[valid]"]
    check_resumable(saved, load_config(overrides=free), LAST, RUN)
    check_resumable(None, load_config(overrides=["model.dim=4"]), LAST, RUN)


def test_another_change_is_refused_naming_the_keys():
    saved = load_config()
    cfg = load_config(overrides=["model.dim=4", "training.optimizer.lr=0.5"])
    with pytest.raises(VlkgeError, match=r"differs in model.dim, training.optimizer.lr\)"):
        check_resumable(saved, cfg, LAST, RUN)


def test_keys_added_since_the_checkpoint_take_their_defaults():
    """A checkpoint written before a key existed (here evaluation.filter and
    model.reference_fusion) resumes; one written with compat.paper resumes under the same
    switch, its concrete keys expanded the same way."""
    for overrides in ([], ["compat.paper=true"]):
        cfg = load_config(overrides=overrides)
        saved = load_config(overrides=overrides)
        del saved["evaluation"]["filter"], saved["model"]["reference_fusion"]
        if overrides:
            saved["evaluation"]["ties"] = "realistic"  # as written before the expansion existed
        check_resumable(saved, cfg, LAST, RUN)


def test_a_checkpoint_of_another_model_layout_is_refused_in_one_line():
    model = torch.nn.Linear(2, 2)
    check_same_layout(model.state_dict(), model, LAST)
    renamed = {f"old.{k}": v for k, v in model.state_dict().items()}
    with pytest.raises(VlkgeError, match="older vlkge whose model layout differs.*--out"):
        check_same_layout(renamed, model, LAST)
