"""A run's per-epoch record: ``trace.jsonl`` (one JSON line per epoch) and, beside it,
TensorBoard event files with the same numbers for people who watch runs in TensorBoard
(``tensorboard --logdir runs/``).

A line of ``trace.jsonl`` cut short (a killed run, a full disk) is skipped by its readers with a
warning, and removed when the run resumes, before new lines are appended.

``tracking.tensorboard: auto`` writes event files when the ``tensorboard`` package is installed
and stays silent otherwise; ``true`` without the package is a configuration error.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path

from vlkge.errors import ConfigError
from vlkge.files import raise_if_disk_full, write_text

log = logging.getLogger(__name__)


def read_trace(path: Path) -> list[dict]:
    """Entries of ``trace.jsonl`` (none when it is missing); an unreadable line is skipped."""
    if not path.is_file():
        return []
    entries = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            log.warning("%s:%d: unreadable trace line skipped (cut short?)", path, number)
            continue
        if isinstance(entry, dict) and "epoch" in entry:
            entries.append(entry)
    return entries


def cut_trace(path: Path, epoch: int) -> None:
    """Keep the entries of epochs up to ``epoch`` (those of the checkpoint a run resumes from),
    dropping later ones and unreadable lines, so that appended lines follow whole ones."""
    if path.is_file():
        kept = [e for e in read_trace(path) if e["epoch"] <= epoch]
        write_text(path, "".join(json.dumps(e) + "\n" for e in kept))


def append_trace(path: Path, entry: dict) -> None:
    """Append one epoch's ``entry``; a full disk is a one-line :class:`~vlkge.files.DiskFull`."""
    try:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")
    except OSError as exc:
        raise_if_disk_full(exc, path)
        raise


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
