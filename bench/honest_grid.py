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
each selected run's test split is scored once (``vlkge evaluate --split test``).

An arm with ``partner: ARM`` is a late-fusion ensemble (``evaluation.run_blend``, docs/method.md)
whose partner is the other arm's selected run of the same seed: it trains alone (its
``evaluation.run_blend.run`` emptied), and its validation MRR (for the selection) and test
metrics are those of ``vlkge evaluate`` with the partner blended in, so the partner arm is
selected first and both arms train side by side. ``controls`` score the selected runs of an arm
again with other evaluation overrides (``set``), optionally blended with a ``partner`` arm's run
of another seed (``partner_offset``: the seed that many places further, cyclically): the same
blends on the structural model, say, or two structural seeds fused:

    controls:
      structural+lexical:
        arm: structural
        set: {evaluation.lexical_blend.weights: [1, 10, 1000]}

Every run is an ordinary run folder under ``--out``: a finished one is reused, an interrupted
one resumed (``vlkge train --resume``), and every ``vlkge evaluate`` result is kept in its run
folder, so the script can be stopped and started again at any point. ``--parallel N`` runs N
vlkge processes at once (a GPU's idle time between small steps, or several cores), each step
as soon as what it needs is done: every arm's grid points at once, an arm's other seeds once it
is selected, a row's test evaluations once its runs are trained (a slow arm holds up only what
depends on it). A step whose result is on disk takes no process slot, so a resumed grid, or one
whose evaluations were run ahead by hand, never waits behind a training for what it has.
``--set KEY=VALUE`` overrides every run and evaluation alike (``device=cuda``), ``--train-set``
training only. ``--shipped`` leaves the grids out: each arm's config as it is, its seeds and the
controls (the shipped recipes' table where a search does not fit the machine; no selection).
Several processes can also share one grid (``--reverse`` walks the points from the end): each
run folder's lock keeps them from training the same run, and one that reaches a run another
is training waits for its result.
``--out/results.json`` holds every run's validation MRR and wall time, the selections, the
seeds' test metrics (mean and standard deviation) and the controls'; ``--out/<arm>.yaml`` the
selected overrides.
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
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import yaml

KEYS = ("mrr", "hits@1", "hits@3", "hits@10")


LOCKED = "another vlkge process is writing to this run folder"


class Busy(Exception):
    """The run folder is locked by another process of the same grid."""


def vlkge(*args: str, threads: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    command = [sys.executable, "-m", "vlkge", *args]
    print("$ vlkge " + " ".join(args) + "\n", end="", flush=True)  # one write: threads share it
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


def evaluated(run: Path, split: str, overrides: dict, name: str, threads: int) -> dict:
    """``vlkge evaluate`` of ``run`` on ``split`` with ``overrides``: the metrics over both
    directions, computed once and kept in the run folder as ``name``."""
    saved = run / name
    if not saved.is_file():
        args = ("evaluate", str(run), "--split", split, *sets(overrides), "--json")
        saved.write_text(vlkge(*args, threads=threads).stdout)
    return json.loads(saved.read_text())[split]["both"]


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


def summary(rows: list[dict]) -> dict:
    """Mean and standard deviation of each test metric over the seeds' rows."""
    return {
        k: {
            "mean": statistics.mean(r["test"][k] for r in rows),
            "std": statistics.stdev(r["test"][k] for r in rows) if len(rows) > 1 else 0,
        }
        for k in KEYS
    }


def parsed(overrides: list[str]) -> dict:
    """``KEY=VALUE`` strings (values in YAML, as ``vlkge --set`` reads them) as a dict."""
    return {k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in overrides)}


def runs_of(control: dict) -> set[str]:
    """The arms whose runs a table row (an arm's test or a control) scores."""
    return {control["arm"], control.get("partner")} - {None}


def check_partners(spec: dict) -> None:
    """``ValueError`` for a control of no arm, and for a partner (of an arm or a control) that
    is no arm or has a partner itself (its selection would need one first)."""
    arms, controls = spec["arms"], spec.get("controls") or {}
    for name, control in controls.items():
        if control.get("arm") not in arms:
            raise ValueError(f"control {name}: arm {control.get('arm')!r} is not an arm")
    for name, entry in [*arms.items(), *controls.items()]:
        partner = entry.get("partner")
        if partner is not None and (partner not in arms or arms[partner].get("partner")):
            raise ValueError(f"{name}: partner {partner!r} is not an arm without a partner")


class Grid:
    """One grid file's runs under ``out``: what each is trained and evaluated with, run by
    ``pool`` (``parallel`` vlkge processes at once)."""

    def __init__(self, spec: dict, args: argparse.Namespace, pool: ThreadPoolExecutor):
        self.spec, self.out, self.threads, self.pool = spec, args.out, args.threads, pool
        self.seeds = spec.get("seeds") or [42]
        self.sets = parsed(args.set)  # every run and evaluation
        self.train_sets = parsed(args.train_set)  # training only
        self.points = arm_points(spec)
        check_partners(spec)
        self.best: dict[str, int] = {}  # arm -> its selected grid point
        self.trained: dict[tuple[str, int], tuple[dict, float]] = {}  # (arm, point or seed)

    def run(self, arm: str, seed: int, point: int | None = None) -> Path:
        """The run folder of ``arm``'s grid ``point`` (seed 42), or of its selection's ``seed``."""
        if point is None and seed != self.seeds[0]:
            return self.out / arm / f"s{seed}"
        return self.out / arm / f"p{self.best[arm] if point is None else point}"

    def selected(self, arm: str, point: int | None = None) -> dict:
        """``arm``'s ``set`` with its grid ``point`` (by default the selected one)."""
        point = self.best[arm] if point is None else point
        return {**(self.spec["arms"][arm].get("set") or {}), **self.points[arm][point]}

    def train(self, arm: str, seed: int, point: int | None = None) -> tuple[dict, float]:
        """The run's metrics (trained first when needed) and the seconds that took."""
        spec = self.spec["arms"][arm]
        overrides = {**self.selected(arm, point), "seed": seed, "evaluation.splits": ["valid"]}
        overrides |= {**self.sets, **self.train_sets}
        if spec.get("partner"):  # blended at evaluation, with the partner's run of its seed
            overrides["evaluation.run_blend.run"] = None
        start = time.perf_counter()
        metrics = train(self.run(arm, seed, point), spec["config"], overrides, self.threads)
        return metrics, round(time.perf_counter() - start, 1)

    def side_by_side(self, step: Callable, items: list, ready: Callable[[Any], bool]) -> list:
        """``step(item)`` of every item, in order: in the pool where it starts a vlkge
        process, here where ``ready`` says its result is on disk already, so that a finished
        step never waits for a free process slot (a resumed grid, evaluations run ahead)."""
        later = [item for item in items if not ready(item)]
        done = dict(zip(later, self.pool.map(step, later), strict=True))
        return [done[item] if item in done else step(item) for item in items]

    def start(self, arm: str, seed: int, point: int) -> Future:
        """Grid ``point``'s training in the pool, or its metrics at once if it has finished."""
        if not (self.run(arm, seed, point) / "metrics.json").is_file():
            return self.pool.submit(self.train, arm, seed, point)
        done: Future = Future()
        done.set_result(self.train(arm, seed, point))
        return done

    def train_seeds(self, arm: str) -> None:
        """``arm``'s selection trained with every other seed, side by side; kept by seed."""
        others = self.seeds[1:]

        def finished(seed: int) -> bool:
            return (self.run(arm, seed) / "metrics.json").is_file()

        done = self.side_by_side(lambda seed: self.train(arm, seed), others, finished)
        for seed, result in zip(others, done, strict=True):
            self.trained[arm, seed] = result

    def blended(self, partner: str | None, seed: int, offset: int = 0) -> dict:
        """Evaluation overrides blending in ``partner``'s selected run of the seed ``offset``
        places after ``seed``."""
        if partner is None:
            return dict(self.sets)
        other = self.seeds[(self.seeds.index(seed) + offset) % len(self.seeds)]
        return {"evaluation.run_blend.run": str(self.run(partner, other)), **self.sets}

    def valid_mrr(self, arm: str, point: int) -> float:
        partner = self.spec["arms"][arm].get("partner")
        if partner is None:
            return self.trained[arm, point][0]["valid"]["both"]["mrr"]
        run, overrides = self.run(arm, self.seeds[0], point), self.blended(partner, self.seeds[0])
        return evaluated(run, "valid", overrides, "valid.json", self.threads)["mrr"]

    def select(self, arm: str) -> list[dict]:
        """Pick ``arm``'s grid point of the best validation MRR (its partner's selection
        first); the grid's rows."""
        points = range(len(self.points[arm]))
        partner, seed = self.spec["arms"][arm].get("partner"), self.seeds[0]

        def evaluated_already(i: int) -> bool:  # or nothing to evaluate: the training's figure
            return not partner or (self.run(arm, seed, i) / "valid.json").is_file()

        valid = self.side_by_side(lambda i: self.valid_mrr(arm, i), list(points), evaluated_already)
        self.best[arm] = max(points, key=lambda i: valid[i])
        selection = {"config": self.spec["arms"][arm]["config"], "set": self.selected(arm)}
        (self.out / f"{arm}.yaml").write_text(yaml.safe_dump(selection, sort_keys=False))
        return [
            {
                "run": str(self.run(arm, self.seeds[0], i)),
                "point": self.points[arm][i],
                "valid_mrr": valid[i],
                "best_epoch": self.trained[arm, i][0].get("best_epoch"),
                "train_time_s": self.trained[arm, i][0].get("train_time_s"),
                "wall_s": self.trained[arm, i][1],
            }
            for i in points
        ]

    def tested(self, name: str, control: dict, seed: int) -> dict:
        """The seed's run of ``control["arm"]``'s selection scored once on test with the
        control's ``set``, ``partner`` and ``partner_offset``, kept as ``<name>.json``."""
        arm = control["arm"]
        blend = self.blended(control.get("partner"), seed, control.get("partner_offset", 0))
        overrides = {**blend, **(control.get("set") or {})}
        test = evaluated(self.run(arm, seed), "test", overrides, f"{name}.json", self.threads)
        done = self.trained[arm, self.best[arm] if seed == self.seeds[0] else seed][0]
        return {
            "run": str(self.run(arm, seed)),
            "seed": seed,
            "partner": blend.get("evaluation.run_blend.run"),
            "valid_mrr": done["valid"]["both"]["mrr"],
            "train_time_s": done.get("train_time_s"),
            "test": {k: test[k] for k in KEYS},
        }

    def scored(self, name: str, control: dict) -> list[dict]:
        """Every seed's row of ``control`` (an arm's own test or a control), side by side."""

        def scored_already(seed: int) -> bool:
            return (self.run(control["arm"], seed) / f"{name}.json").is_file()

        return self.side_by_side(
            lambda seed: self.tested(name, control, seed), self.seeds, scored_already
        )

    def walk(self, arms: list[str], reverse: bool) -> Iterator[tuple[str, dict]]:
        """The whole grid, each step as soon as what it needs is done, so a slow arm holds up
        only what depends on it: an arm is selected once its grid points (and its partner's
        selection) are in, then its other seeds train; a table row (an arm's test with its
        partner, or a control) is scored once its arm's and its partner's seeds are trained.
        Yields ``(key, results entry)`` as each row is done."""
        seed = self.seeds[0]
        jobs = [(a, seed, i) for a in arms for i in range(len(self.points[a]))]
        points = {(a, i): self.start(a, s, i) for a, s, i in jobs[:: -1 if reverse else 1]}
        table = {
            a: ("test", {"arm": a, "partner": self.spec["arms"][a].get("partner")}) for a in arms
        }
        for name, control in (self.spec.get("controls") or {}).items():
            if runs_of(control) <= set(arms):
                table[f"control:{name}"] = (f"test-{name}", control)
        selected: dict[str, Future] = {}
        seeded: dict[str, Future] = {}

        def select(arm: str) -> list[dict]:
            for i in range(len(self.points[arm])):
                self.trained[arm, i] = points[arm, i].result()
            if partner := self.spec["arms"][arm].get("partner"):
                selected[partner].result()
            return self.select(arm)

        def seed_runs(arm: str) -> None:
            selected[arm].result()
            self.train_seeds(arm)

        def row(key: str) -> dict:
            name, control = table[key]
            for arm in runs_of(control):
                seeded[arm].result()
            seeds = self.scored(name, control)
            if key in arms:  # its grid's rows and selection; a control's spec
                control = {"grid": selected[key].result(), "selected": self.selected(key)}
            return {**control, "seeds": seeds, "test": summary(seeds)}

        with ThreadPoolExecutor(2 * len(arms) + len(table)) as steps:
            for arm in arms:  # partners first
                selected[arm] = steps.submit(select, arm)
                seeded[arm] = steps.submit(seed_runs, arm)
            rows = {steps.submit(row, key): key for key in table}
            for done in as_completed(rows):
                yield rows[done], done.result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("grid", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads of each process")
    parser.add_argument("--parallel", type=int, default=1, help="vlkge processes at once")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an override of every run and evaluation (device=cuda, precision=tf32)",
    )
    parser.add_argument(
        "--train-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an override of training only (training.checkpoint_every=1000)",
    )
    parser.add_argument(
        "--arms", nargs="*", help="only these arms and the controls on them (default: all)"
    )
    parser.add_argument("--reverse", action="store_true", help="train the grid points last first")
    parser.add_argument(
        "--shipped", action="store_true", help="no grid: each arm's config as it is, its seeds"
    )
    args = parser.parse_args()
    spec = yaml.safe_load(args.grid.read_text())
    if args.shipped:
        spec.pop("grid", None)
        for arm in spec["arms"].values():
            arm.pop("grid", None)
    arms = [a for a in spec["arms"] if not args.arms or a in args.arms]
    arms.sort(key=lambda a: bool(spec["arms"][a].get("partner")))  # partners selected first
    if missing := {spec["arms"][a].get("partner") for a in arms} - {None, *arms}:
        sys.exit(f"--arms: add {', '.join(sorted(missing))}, the partner of an arm it names")
    results = args.out / "results.json"
    with ThreadPoolExecutor(args.parallel) as pool:
        try:
            grid = Grid(spec, args, pool)
        except ValueError as exc:
            sys.exit(str(exc))
        for key, entry in grid.walk(arms, args.reverse):
            update(results, key, entry)
            mrr = entry["test"]["mrr"]
            print(f"{key}: test MRR {mrr['mean']:.4f} ± {mrr['std']:.4f}", flush=True)
    machine = {"cpus": os.cpu_count(), "load": os.getloadavg()}
    update(results, "machine", {**machine, "sets": grid.sets, "train_sets": grid.train_sets})


if __name__ == "__main__":
    main()
