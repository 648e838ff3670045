"""TensorBoard event files beside ``trace.jsonl``: the same per-epoch numbers, for people who
watch runs in TensorBoard (``tensorboard --logdir runs/``).

``tracking.tensorboard: auto`` writes them when the ``tensorboard`` package is installed and
stays silent otherwise; ``true`` without the package is a configuration error.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from vlkge.errors import ConfigError

log = logging.getLogger(__name__)


def tensorboard_available() -> bool:
    return importlib.util.find_spec("tensorboard") is not None


class TensorBoardLog:
    """Writes one trace entry per epoch as scalars into ``run_dir/tensorboard``.

    ``first_epoch`` is the epoch about to be trained: when a run resumes, TensorBoard drops
    any events of that epoch or later left by the interrupted attempt.
    """

    def __init__(self, run_dir: str | Path, setting="auto", first_epoch: int = 1):
        self.writer = None
        if setting is False or (setting == "auto" and not tensorboard_available()):
            return
        if not tensorboard_available():
            raise ConfigError(
                "tracking.tensorboard: true needs the tensorboard package (pip install tensorboard)"
            )
        from torch.utils.tensorboard import SummaryWriter

        folder = Path(run_dir) / "tensorboard"
        self.writer = SummaryWriter(
            str(folder), purge_step=first_epoch if first_epoch > 1 else None
        )
        log.debug("TensorBoard events in %s", folder)

    def log(self, entry: dict) -> None:
        """Scalars of one ``trace.jsonl`` entry: loss, times, validation metrics."""
        if self.writer is None:
            return
        step = entry["epoch"]
        self.writer.add_scalar("train/loss", entry["loss"], step)
        self.writer.add_scalar("time/train_s", entry["train_time"], step)
        if "valid_time" in entry:
            self.writer.add_scalar("time/valid_s", entry["valid_time"], step)
        for metric, value in entry.get("valid", {}).items():
            self.writer.add_scalar(f"valid/{metric}", value, step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def __enter__(self) -> TensorBoardLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
