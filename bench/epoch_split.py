#!/usr/bin/env python
"""Where an epoch's time goes, per backbone, and what the paper's whole run costs.

Usage::

    python bench/epoch_split.py [--configs configs/wn9-img/distmult.yaml ...] [--epochs 2]
                                [--run-epochs 0] [--set key=value ...] [--json-out FILE]

For each config (default: the four structural WN9-IMG configs of the paper), in one process:

- **split**: ``--epochs`` epochs of training with validation after each, built exactly as
  ``vlkge train`` builds them, each phase timed apart: sampling (the epoch's batch order and
  the negatives), forward (scores and loss), backward, optimiser (zero_grad and step),
  validation (filtered MRR on the validation split). The first epoch is a warm-up and is not
  counted. Seconds per epoch, and the projection to the config's ``training.epochs``;
- **run** (``--run-epochs N``, N > 0): the wall time of ``python -m vlkge train`` in a fresh
  process for N epochs, validation every epoch, no early stop, process start and the final
  evaluation included; with N below the config's epochs the time is also projected to the
  whole run from the trace's per-epoch times (start-up and final evaluation counted once).

On a CPU the phases run synchronously, so wall clocks split them exactly; on a GPU they would
need a synchronisation per phase, which is why this script is for CPUs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from vlkge.config import load_config
from vlkge.evaluation.evaluator import Evaluator
from vlkge.training.setup import prepare
from vlkge.training.trainer import Trainer

CONFIGS = [f"configs/wn9-img/{name}.yaml" for name in ("distmult", "transe", "complex", "rotate")]
PHASES = ("sampling", "forward", "backward", "optimiser", "validation")


class Clock:
    """Seconds summed per phase, of the wall clock or of the process's CPU time."""

    def __init__(self, now=time.perf_counter):
        self.now = now
        self.total = dict.fromkeys(PHASES, 0.0)

    def timed(self, phase: str, fn, *args):
        start = self.now()
        out = fn(*args)
        self.total[phase] += self.now() - start
        return out


def split(config: str, overrides: list[str], epochs: int, now=time.perf_counter) -> dict:
    """Per-phase seconds per epoch, averaged over ``epochs`` epochs after one warm-up epoch."""
    torch._dynamo.reset()  # each config compiles its own kernels, as a run of its own would
    cfg = load_config(config, [*overrides, "training.progress=false"])
    kg, model = prepare(cfg)
    with tempfile.TemporaryDirectory(prefix="vlkge-split-") as run_dir:
        trainer = Trainer(cfg, kg, model, Path(run_dir))
    evaluator = Evaluator(kg, cfg["evaluation"], precision=cfg["precision"])
    regime, optimizer, generator = trainer.regime, trainer.optimizer, trainer.generator
    clock = Clock(now)
    sampler = getattr(regime, "sampler", None)
    if sampler is not None:  # negatives are drawn inside the loss: time them apart
        draw = sampler.sample
        sampler.sample = lambda *args: clock.timed("sampling", draw, *args)

    def epoch() -> None:
        model.train()
        batches = iter(clock.timed("sampling", regime.batches, generator))
        while (batch := clock.timed("sampling", next, batches, None)) is not None:
            clock.timed("optimiser", optimizer.zero_grad, True)
            before = clock.total["sampling"]
            start = clock.now()
            loss, _ = regime.loss(model, batch, generator)
            clock.total["forward"] += clock.now() - start
            clock.total["forward"] -= clock.total["sampling"] - before
            clock.timed("backward", loss.backward)
            clock.timed("optimiser", optimizer.step)
        with torch.no_grad():
            clock.timed("validation", evaluator.evaluate, model, cfg["validation"]["split"])

    epoch()  # warm-up: allocations, kernel selection, compiled kernels
    clock.total = dict.fromkeys(PHASES, 0.0)
    for _ in range(epochs):
        epoch()
    per_epoch = {phase: seconds / epochs for phase, seconds in clock.total.items()}
    per_epoch["epoch"] = sum(per_epoch.values())
    return {"per_epoch": per_epoch, "run_epochs": cfg["training"]["epochs"]}


def whole_run(config: str, overrides: list[str], epochs: int, full: int) -> dict:
    """Wall time of ``vlkge train`` for ``epochs`` epochs, and its projection to ``full``."""
    with tempfile.TemporaryDirectory(prefix="vlkge-run-") as out:
        command = [
            sys.executable,
            "-m",
            "vlkge",
            "train",
            "--config",
            config,
            "--out",
            f"{out}/run",
            "--set",
            f"training.epochs={epochs}",
            "--set",
            "validation.every=1",
            "--set",
            "validation.patience=0",
            "--set",
            "training.progress=false",
            *[arg for item in overrides for arg in ("--set", item)],
        ]
        start = time.perf_counter()
        subprocess.run(command, check=True, env=os.environ, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        trace = [
            json.loads(line) for line in Path(f"{out}/run/trace.jsonl").read_text().splitlines()
        ]
    looped = sum(e["train_time"] + e.get("valid_time", 0.0) for e in trace)
    return {
        "epochs": epochs,
        "wall_s": wall,
        "projected_s": wall - looped + looped * full / epochs,
        "projected_epochs": full,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=CONFIGS)
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs of the split")
    parser.add_argument("--run-epochs", type=int, default=0, help="epochs of the whole run")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="time the phases by the wall clock, or by the process's CPU time (on a shared "
        "machine, with one thread, CPU time is what the split would take alone)",
    )
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args(argv)
    now = time.perf_counter if args.clock == "wall" else time.process_time

    rows = []
    print(f"threads: {torch.get_num_threads()}, clock: {args.clock}")
    print("| config | " + " | ".join(PHASES) + " | s/epoch | projected run |")
    print("|---" * (len(PHASES) + 3) + "|")
    for config in args.configs:
        row = {"config": config, **split(config, args.set, args.epochs, now)}
        per, full = row["per_epoch"], row["run_epochs"]
        if args.run_epochs:
            row["run"] = whole_run(config, args.set, args.run_epochs, full)
        rows.append(row)
        cells = " | ".join(f"{per[phase]:.2f}" for phase in PHASES)
        projected = f"{per['epoch'] * full / 60:.1f} min ({full} epochs, loop only)"
        print(f"| {config} | {cells} | {per['epoch']:.2f} | {projected} |")
        if "run" in row:
            run = row["run"]
            print(
                f"  whole run, {run['epochs']} epochs: {run['wall_s']:.1f} s wall; projected "
                f"to {run['projected_epochs']} epochs: {run['projected_s'] / 60:.1f} min"
            )
    if args.json_out:
        args.json_out.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
