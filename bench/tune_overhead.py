#!/usr/bin/env python
"""What ``vlkge tune`` costs over running its trials by hand, and what its pruner saves.

Usage::

    python bench/tune_overhead.py overhead --config BASE --space SPACE --trials N --out DIR
                                           [--set key=value ...]
    python bench/tune_overhead.py pruning --config BASE --space SPACE --trials N --out DIR
                                          [--pruner hyperband] [--set key=value ...]

``overhead`` runs the search with its pruner off and one worker (which gets every core's
thread, as every run here does), then trains the same trials'
configs (``DIR/search/trials/*/config.yaml``) by hand: once as one ``vlkge train`` process per
trial, once in a single process calling ``train()`` for each; it prints the wall time of each
and the search's overhead against both (the search also scores the best trial's test split once
and writes its report, which the trials by hand do not).

``pruning`` runs the search twice, without a pruner and with ``--pruner``, the space otherwise
unchanged, and prints the best validation metric reached against the epochs spent (trials in
the order they finished): how much training the multi-fidelity pruner saves for the same result.
With ``sampler: random`` in the space both searches draw the same trials (trial i draws with
seed + i), so only the pruner differs.

Both write ``DIR/results.json``. The figures measured are in docs/tuning.md ("Cost").
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import yaml

VLKGE = [sys.executable, "-m", "vlkge"]
IN_ONE_PROCESS = """
import sys
from pathlib import Path
from vlkge.config import load_config
from vlkge.training.run import train
for config in sys.argv[2:]:
    train(load_config(config), Path(sys.argv[1]) / Path(config).parent.name)
"""


def timed(command: list[str]) -> float:
    """Wall seconds of ``command``, run with the threads one search worker gets (every core)."""
    threads = str(len(os.sched_getaffinity(0)))
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start


def with_pruner(space: Path, pruner: str, out: Path) -> Path:
    """A copy of ``space`` with ``pruner`` (the search's own settings otherwise)."""
    data = yaml.safe_load(space.read_text(encoding="utf-8"))
    path = out / f"space-{pruner}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({**data, "pruner": pruner}), encoding="utf-8")
    return path


def search(args, space: Path, out: Path) -> tuple[float, optuna.Study]:
    """Run ``vlkge tune`` (one worker) into ``out``; its wall time and study."""
    command = [*VLKGE, "tune", "--space", str(space), "--trials", str(args.trials)]
    command += ["--out", str(out), "--set", "report.after_train=false"]
    if args.config:
        command += ["--config", args.config]
    for item in args.set:
        command += ["--set", item]
    seconds = timed(command)
    study = optuna.load_study(study_name=out.name, storage=f"sqlite:///{out / 'study.db'}")
    return seconds, study


def overhead(args, out: Path) -> dict:
    tune_s, study = search(args, with_pruner(Path(args.space), "none", out), out / "search")
    configs = sorted(str(p) for p in (out / "search" / "trials").glob("*/config.yaml"))
    by_hand = sum(
        timed([*VLKGE, "train", "--config", c, "--out", str(out / "hand" / Path(c).parent.name)])
        for c in configs
    )
    one_process = timed([sys.executable, "-c", IN_ONE_PROCESS, str(out / "one-process"), *configs])
    trials_s = sum(t.duration.total_seconds() for t in study.get_trials() if t.duration)
    result = {
        "trials": len(configs),
        "tune_s": tune_s,
        "trials_inside_tune_s": trials_s,
        "train_per_trial_s": by_hand,
        "one_process_s": one_process,
        "overhead_vs_train_per_trial": tune_s / by_hand - 1,
        "overhead_vs_one_process": tune_s / one_process - 1,
    }
    print(f"{len(configs)} trials, pruner off, one worker            wall s")
    print(f"  by hand: `vlkge train` per trial            {by_hand:9.1f}")
    print(f"  by hand: one process, train() per trial     {one_process:9.1f}")
    print(f"  vlkge tune (its trials alone: {trials_s:.1f} s)       {tune_s:9.1f}")
    print(
        f"  overhead: {result['overhead_vs_train_per_trial']:+.1%} against `vlkge train` per "
        f"trial, {result['overhead_vs_one_process']:+.1%} against one process"
    )
    return result


def spent_curve(study: optuna.Study) -> list[tuple[int, float]]:
    """(epochs spent so far, best validation so far) after each trial, in finishing order."""
    finished = [t for t in study.get_trials() if t.intermediate_values and t.datetime_complete]
    spent, best, curve = 0, float("-inf"), []
    for trial in sorted(finished, key=lambda t: t.datetime_complete):
        spent += len(trial.intermediate_values)
        best = max(best, *trial.intermediate_values.values())
        curve.append((spent, best))
    return curve


def best_by(curve: list[tuple[int, float]], budget: int) -> float | None:
    reached = [best for spent, best in curve if spent <= budget]
    return reached[-1] if reached else None


def pruning(args, out: Path) -> dict:
    runs = {}
    for pruner in ("none", args.pruner):
        seconds, study = search(args, with_pruner(Path(args.space), pruner, out), out / pruner)
        curve = spent_curve(study)
        states = [t.state.name.lower() for t in study.get_trials()]
        runs[pruner] = {
            "wall_s": seconds,
            "curve": curve,
            "epochs": curve[-1][0],
            "best": curve[-1][1],
            "pruned": states.count("pruned"),
        }
    full = runs["none"]["epochs"]
    print(f"{args.trials} trials; best validation reached after E epochs of training")
    print(f"{'epochs spent':>14}  {'no pruner':>10}  {args.pruner:>10}")
    for share in (0.1, 0.25, 0.5, 0.75, 1.0):
        budget = round(full * share)
        cells = [best_by(runs[p]["curve"], budget) for p in ("none", args.pruner)]
        shown = ["–" if c is None else f"{c:.4f}" for c in cells]
        print(f"{budget:>14}  {shown[0]:>10}  {shown[1]:>10}")
    for pruner, run in runs.items():
        print(
            f"{pruner}: {run['epochs']} epochs in {run['wall_s']:.0f} s, best {run['best']:.4f}, "
            f"{run['pruned']} trials pruned"
        )
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("part", choices=["overhead", "pruning"])
    parser.add_argument("--config", help="the base config (default: the defaults)")
    parser.add_argument("--space", required=True)
    parser.add_argument("--trials", type=int, required=True)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--pruner", default="hyperband", choices=["median", "hyperband", "halving"])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    result = overhead(args, args.out) if args.part == "overhead" else pruning(args, args.out)
    (args.out / "results.json").write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
