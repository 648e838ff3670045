"""A run's one-off warnings: the data's findings and a too-large margin are reported when the
run trains, not again on every evaluate or predict."""

from __future__ import annotations

import logging

from vlkge.cli import main
from vlkge.config import load_config
from vlkge.training.run import train


def test_findings_and_margin_warned_at_train_time_only(tmp_path, make_dataset, caplog):
    toy = [("a", "likes", "b"), ("b", "likes", "c"), ("c", "likes", "a"), ("b", "knows", "d")]
    toy += [("a", "knows", "c"), ("d", "parent", "a")]  # the toy graph's train split
    folder = make_dataset(tmp_path / "kg", train=[*toy, ("a", "likes", "a")])
    cfg = load_config(
        overrides=[
            f"dataset.name={folder}",
            "model.dim=4",  # TransE at d 4: every distance is below the default gamma 12
            "training.epochs=1",
            "training.negatives.num=2",
            "training.progress=false",
            "report.after_train=false",
        ]
    )
    run = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="vlkge"):
        train(cfg, run)
    assert caplog.text.count("self-loop triple(s)") == 1
    assert caplog.text.count("model.gamma 12 is large") == 1
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="vlkge"):
        assert main(["evaluate", str(run), "--json"]) == 0
        assert main(["predict", str(run), "--head", "a", "--relation", "likes"]) == 0
    assert "self-loop" not in caplog.text and "model.gamma" not in caplog.text
    with caplog.at_level(logging.INFO, logger="vlkge"):
        assert main(["datasets", "info", str(folder)]) == 0  # asked for: reported
    assert "self-loop triple(s)" in caplog.text
