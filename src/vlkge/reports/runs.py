"""A finished run folder as the reports read it: config, metrics, per-epoch trace.

Trained runs (``vlkge train``) and zero-shot runs (``vlkge zero-shot``) share the layout
(``config.yaml`` and ``metrics.json``); only trained runs have ``trace.jsonl`` and checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from vlkge import config as config_mod
from vlkge.runfolder import read_metrics, require_run_folder
from vlkge.terms import SPLITS
from vlkge.training.tracking import read_trace


@dataclass
class RunFolder:
    """What a run wrote: its resolved config, final metrics and training trace."""

    path: Path
    cfg: dict
    metrics: dict
    trace: list[dict] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.path.resolve().name

    @property
    def zero_shot(self) -> bool:
        return "zero_shot" in self.metrics

    @property
    def encoder(self) -> str:
        """The encoder that made the features the run scored with, as metrics.json records it
        ("" for a structural run, or one from before the record): ``encoder.name`` only names
        the encoder that would fill a missing feature cache, not the one that filled it."""
        if self.zero_shot:
            block = self.metrics["zero_shot"]  # the lexical baseline has no encoder
            return str(block.get("encoder") or block.get("scorer", ""))
        widths: dict[str, list[str]] = {}
        for modality, source in (self.metrics.get("features") or {}).items():
            widths.setdefault(source["encoder"], []).append(f"{modality} {source['width']}-d")
        if widths:
            return "; ".join(f"{name} ({', '.join(parts)})" for name, parts in widths.items())
        settings = self.cfg["encoder"]
        if self.cfg["model"]["modalities"] and settings["finetune"] != "none":
            return f"{settings['name']} (fine-tuned: {settings['finetune']})"
        return ""

    @property
    def splits(self) -> list[str]:
        """The evaluated splits, in train/valid/test order."""
        return [s for s in SPLITS if isinstance(self.metrics.get(s), dict)]

    def main_split(self) -> str | None:
        """The split a report leads with: test when evaluated, else the last one."""
        return "test" if "test" in self.splits else (self.splits[-1] if self.splits else None)


def read_run(path: str | Path) -> RunFolder:
    """The run folder at ``path``; anything that is not a finished run is a one-line error."""
    path = require_run_folder(path)
    metrics = read_metrics(path)
    cfg = config_mod.load_config(path / "config.yaml")
    return RunFolder(path, cfg, metrics, read_trace(path / "trace.jsonl"))
