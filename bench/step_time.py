#!/usr/bin/env python
"""Time training steps of any configuration: wall, user and system milliseconds per step.

Usage::

    python bench/step_time.py [--config FILE] [--set key=value ...] [--steps 20] [--warmup 3]
                              [--profile]

Builds the model and the regime exactly as ``vlkge train`` does, runs ``--warmup`` steps, then
times ``--steps`` more (loss, backward, optimiser step; no validation). System time that is a
large share of the step points at page faults (see docs/scaling.md, "CPU allocator").
``--profile`` prints torch.profiler's table of the operators that took the time.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

from vlkge.config import load_config
from vlkge.training.setup import prepare
from vlkge.training.trainer import Trainer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=None)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)

    overrides = [*args.set, "training.progress=false", "validation.every=0"]
    cfg = load_config(args.config, overrides)
    kg, model = prepare(cfg)
    with tempfile.TemporaryDirectory(prefix="vlkge-steps-") as run_dir:
        trainer = Trainer(cfg, kg, model, Path(run_dir))
    generator = torch.Generator().manual_seed(cfg["seed"])

    def batches():
        while True:
            yield from trainer.regime.batches(generator)

    stream = batches()

    def step() -> None:
        loss, _ = trainer.regime.loss(model, next(stream), generator)
        trainer.optimizer.zero_grad()
        loss.backward()
        trainer.optimizer.step()

    for _ in range(args.warmup):
        step()
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(args.steps):
        step()
    wall = (time.perf_counter() - start) / args.steps
    after = resource.getrusage(resource.RUSAGE_SELF)
    user = (after.ru_utime - before.ru_utime) / args.steps
    system = (after.ru_stime - before.ru_stime) / args.steps
    print(
        f"{wall * 1e3:.1f} ms/step (user {user * 1e3:.1f}, system {system * 1e3:.1f}) | "
        f"{trainer.regime.num_batches()} steps/epoch -> {wall * trainer.regime.num_batches():.1f} "
        f"s/epoch | {torch.get_num_threads()} thread(s)"
    )
    if args.profile:
        from torch.profiler import profile

        with profile() as prof:
            for _ in range(5):
                step()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    return 0


if __name__ == "__main__":
    sys.exit(main())
