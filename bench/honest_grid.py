"""Structural against multimodal with the same search budget: a grid, selection on validation,
then seeds of the selected configs, the test split scored once per selected run.

    python bench/honest_grid.py bench/grids/wn9-img.yaml --out runs/grid/wn9-img

The grid file names the arms (a config each, plus optional ``set`` overrides) and one grid of
``key: [values]`` that every arm is trained over, so both sides get the same budget (an arm may
bring a ``grid`` of its own instead, of as many points as the shared one; the script refuses
arms of unequal budgets):

    arms:
      structural: {config: configs/wn9-img/best-structural.yaml}
      vl: {config: configs/wn9-img/best-vl.yaml}
    grid:
      training.optimizer.lr: [0.05, 0.1]
      model.dim: [128, 256]
    seeds: [42, 43, 44]

Grid runs evaluate the validation split only (``evaluation.splits=[valid]``). Per arm the grid
point with the best validation MRR is selected; it is trained again with every other seed, and
each selected run's test split is scored once (``vlkge evaluate --split test``). Every run is
an ordinary run folder under ``--out``: a finished one is reused, an interrupted one resumed
(``vlkge train --resume``), so the script can be stopped and started again at any point.
Several processes can share one grid (``--reverse`` walks the points from the end): each run
folder's lock keeps them from training the same run, and one that reaches a run another is
training waits for its result.
``--out/results.json`` holds every run's validation MRR and wall time, the selections and the
seeds' test metrics (mean and standard deviation); ``--out/<arm>.yaml`` the selected overrides.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

KEYS = ("mrr", "hits@1", "hits@3", "hits@10")


LOCKED = "another vlkge process is writing to this run folder"


class Busy(Exception):
    """The run folder is locked by another process of the same grid."""


def vlkge(*args: str, threads: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    command = [sys.executable, "-m", "vlkge", *args]
    print("$ vlkge " + " ".join(args), flush=True)
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode == 2 and LOCKED in done.stderr:
        raise Busy(args[-1])
    if done.returncode != 0:
        sys.exit(f"vlkge {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return done


def sets(overrides: dict) -> list[str]:
    out = []
    for key, value in overrides.items():
        out += ["--set", f"{key}={json.dumps(value) if not isinstance(value, str) else value}"]
    return out


def train(run: Path, config: str, overrides: dict, threads: int) -> dict:
    """The run's metrics.json, training (or resuming) it first when it has none; a run that
    another process of the grid is training is waited for (several processes share a grid)."""
    while not (run / "metrics.json").is_file():
        try:
            if (run / "checkpoints" / "last.pt").is_file():
                vlkge("train", "--resume", str(run), threads=threads)
            else:
                command = ("train", "--config", config, *sets(overrides), "--out", str(run))
                vlkge(*command, threads=threads)
        except Busy:
            time.sleep(30)
    return json.loads((run / "metrics.json").read_text())


def test_metrics(run: Path, threads: int) -> dict:
    """The test split of a selected run, scored once and kept in ``test.json``."""
    saved = run / "test.json"
    if not saved.is_file():
        done = vlkge("evaluate", str(run), "--split", "test", "--json", threads=threads)
        saved.write_text(done.stdout)
    return json.loads(saved.read_text())["test"]["both"]


def update(path: Path, key: str, value: dict) -> None:
    """Set one entry of ``results.json``, re-read first: another process may be running
    another arm into the same ``--out``."""
    results = json.loads(path.read_text()) if path.is_file() else {}
    results[key] = value
    path.write_text(json.dumps(results, indent=2))


def grid_points(grid: dict | None) -> list[dict]:
    """Every combination of a ``key: [values]`` grid (one empty point for no grid)."""
    grid = grid or {}
    return [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]


def arm_points(spec: dict) -> dict[str, list[dict]]:
    """Each arm's grid points (its own ``grid``, else the shared one); ``ValueError`` when the
    arms' budgets differ."""
    points = {arm: grid_points(a.get("grid", spec.get("grid"))) for arm, a in spec["arms"].items()}
    if len({len(p) for p in points.values()}) > 1:
        raise ValueError(
            f"unequal budgets: { ({a: len(p) for a, p in points.items()}) } grid points"
        )
    return points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("grid", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--arms", nargs="*", help="only these arms (default: all)")
    parser.add_argument("--reverse", action="store_true", help="train the grid points last first")
    args = parser.parse_args()
    spec = yaml.safe_load(args.grid.read_text())
    try:
        points_of = arm_points(spec)
    except ValueError as exc:
        sys.exit(str(exc))
    seeds = spec.get("seeds") or [42]
    results_path = args.out / "results.json"
    for arm, arm_spec in spec["arms"].items():
        if args.arms and arm not in args.arms:
            continue
        fixed = arm_spec.get("set") or {}
        points = points_of[arm]
        rows: list[dict] = [{}] * len(points)
        order = range(len(points) - 1, -1, -1) if args.reverse else range(len(points))
        for i in order:
            point = points[i]
            run = args.out / arm / f"p{i}"
            overrides = {**fixed, "seed": seeds[0], **point, "evaluation.splits": ["valid"]}
            start = time.perf_counter()
            metrics = train(run, arm_spec["config"], overrides, args.threads)
            rows[i] = {
                "run": str(run),
                "point": point,
                "valid_mrr": metrics["valid"]["both"]["mrr"],
                "best_epoch": metrics.get("best_epoch"),
                "train_time_s": metrics.get("train_time_s"),
                "wall_s": round(time.perf_counter() - start, 1),
            }
        best = max(range(len(points)), key=lambda i: rows[i]["valid_mrr"])
        selected = {**fixed, **points[best]}
        (args.out / f"{arm}.yaml").write_text(
            yaml.safe_dump({"config": arm_spec["config"], "set": selected}, sort_keys=False)
        )
        seed_runs = []
        for seed in seeds:
            run = args.out / arm / f"p{best}" if seed == seeds[0] else args.out / arm / f"s{seed}"
            metrics = train(
                run,
                arm_spec["config"],
                {**selected, "seed": seed, "evaluation.splits": ["valid"]},
                args.threads,
            )
            test = test_metrics(run, args.threads)
            seed_runs.append(
                {
                    "run": str(run),
                    "seed": seed,
                    "valid_mrr": metrics["valid"]["both"]["mrr"],
                    "train_time_s": metrics.get("train_time_s"),
                    "test": {k: test[k] for k in KEYS},
                }
            )
        summary = {
            k: {
                "mean": statistics.mean(r["test"][k] for r in seed_runs),
                "std": statistics.stdev(r["test"][k] for r in seed_runs) if len(seeds) > 1 else 0,
            }
            for k in KEYS
        }
        update(
            results_path,
            arm,
            {"grid": rows, "selected": selected, "seeds": seed_runs, "test": summary},
        )
        print(
            f"{arm}: selected {selected}; test MRR {summary['mrr']['mean']:.4f} ± "
            f"{summary['mrr']['std']:.4f} over seeds {seeds}",
            flush=True,
        )
    update(results_path, "machine", {"cpus": os.cpu_count(), "load": os.getloadavg()})


if __name__ == "__main__":
    main()
