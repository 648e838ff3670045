#!/usr/bin/env python
"""Sharded entity tables (``distributed.shard_tables``) against one process: memory per rank
and training throughput on a synthetic graph.

Usage::

    OMP_NUM_THREADS=1 python bench/sharding.py [--entities 1000000] [--dim 64]
                                               [--json-out results.json]

Writes a synthetic graph (``--entities`` entities, 10 relations, ``--per-entity`` random
training triples per entity), then trains one epoch of DistMult with negative sampling
(Adagrad, batch 4096, 16 negatives, no validation) twice, each in fresh processes: one process
with the whole table, and two gloo ranks on loopback with sharded tables, same seed and global
batch. Each process reports:

- the bytes of its per-entity tables and their optimiser state: the entity table, its dense
  gradient and Adagrad sum for one process; its rows of the table and their Adagrad sum when
  sharded (row gradients exist only for the rows a batch fetched);
- its resident high-water mark (``VmHWM``) and the resident memory at start (interpreter and
  torch), so the difference is what the run itself took;
- the epoch's training time (triples per second over the whole run).

The ratio "sharded per rank / one process" of the table bytes is the figure the design aims at
(1/2 of table + optimiser state with 2 ranks). Every rank also builds the whole table once
before keeping its rows (the seeded initialisation is the one-process one), which its peak
shows.
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

import numpy as np

RELATIONS = 10


def status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def write_graph(folder: Path, entities: int, per_entity: int, seed: int = 0) -> None:
    """Random triples over ``entities`` (every entity a head ``per_entity`` times); valid and
    test hold 100 triples each whose entities occur in training."""
    rng = np.random.default_rng(seed)
    heads = np.repeat(np.arange(entities), per_entity)
    tails = rng.integers(0, entities, len(heads))
    relations = rng.integers(0, RELATIONS, len(heads))
    keep = heads != tails
    triples = np.unique(np.stack([heads, relations, tails], 1)[keep], axis=0)
    rng.shuffle(triples)
    folder.mkdir(parents=True, exist_ok=True)
    splits = {"valid": triples[:100], "test": triples[100:200], "train": triples[200:]}
    for name, rows in splits.items():
        lines = [f"e{h}\tr{r}\te{t}\n" for h, r, t in rows.tolist()]
        (folder / f"{name}.txt").write_text("".join(lines))


def worker(data: str, dim: int, out: str) -> None:
    """One process of a measurement (under torchrun when sharded)."""
    import torch

    from vlkge import distributed
    from vlkge.config import load_config
    from vlkge.models.sharded import sharded_tables
    from vlkge.training.run import prepare
    from vlkge.training.trainer import Trainer

    start_rss = status_mb("VmRSS")
    cfg = load_config(
        overrides=[
            f"dataset.name={data}",
            "model.backbone=distmult",
            f"model.dim={dim}",
            "training.batch_size=4096",
            "training.negatives.num=16",
            "training.epochs=1",
            "training.progress=false",
            "validation.every=0",
            "num_threads=1",
            "distributed.shard_tables=true",
        ]
    )
    with distributed.session(torch.device("cpu")), tempfile.TemporaryDirectory() as run:
        kg, model = prepare(cfg, quiet=True)
        trainer = Trainer(cfg, kg, model, Path(run))
        began = time.perf_counter()
        trainer.train_epoch()
        seconds = time.perf_counter() - began
        if trainer.rows is not None:
            tensors = [t.weight for _, t in sharded_tables(model)]
            tensors += list(trainer.rows.sums.values())
        else:
            weight = model.entities.weight
            state = trainer.optimizer.state[weight]["sum"]
            tensors = [weight, weight.grad, state]
        table_bytes = sum(t.numel() * t.element_size() for t in tensors if t is not None)
        result = {
            "rank": distributed.rank(),
            "world": distributed.world_size(),
            "train_triples": len(kg.train),
            "epoch_s": seconds,
            "table_mb": table_bytes / 2**20,
            "start_rss_mb": start_rss,
            "peak_rss_mb": status_mb("VmHWM"),
        }
    Path(f"{out}.{result['rank']}.json").write_text(json.dumps(result))


def measure(data: Path, dim: int, ranks: int, out: Path) -> list[dict]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    me = [
        str(Path(__file__).resolve()),
        "--worker",
        str(data),
        "--dim",
        str(dim),
        "--out",
        str(out),
    ]
    if ranks == 1:
        command = [sys.executable, *me]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        command += ["--nproc_per_node", str(ranks), *me]
    subprocess.run(command, env=env, check=True)
    return [json.loads(Path(f"{out}.{r}.json").read_text()) for r in range(ranks)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entities", type=int, default=1_000_000)
    parser.add_argument("--per-entity", type=int, default=2)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--json-out")
    parser.add_argument("--worker", metavar="DATA", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.dim, args.out)
        return
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "graph"
        write_graph(data, args.entities, args.per_entity)
        one = measure(data, args.dim, 1, Path(tmp) / "one")
        two = measure(data, args.dim, 2, Path(tmp) / "two")
    base = one[0]
    print(f"{args.entities:,} entities, {base['train_triples']:,} training triples, d {args.dim}")
    print("ranks  rank  table+state MB  start RSS MB  peak RSS MB  epoch s  triples/s")
    for row in one + two:
        rate = row["train_triples"] / row["epoch_s"]
        print(
            f"{row['world']:>5}  {row['rank']:>4}  {row['table_mb']:>13.1f}  "
            f"{row['start_rss_mb']:>12.1f}  {row['peak_rss_mb']:>11.1f}  "
            f"{row['epoch_s']:>7.1f}  {rate:>9.0f}"
        )
    table_ratio = max(r["table_mb"] for r in two) / base["table_mb"]
    weight_and_state = base["table_mb"] * 2 / 3  # one process: weight, gradient, Adagrad sum
    half_ratio = max(r["table_mb"] for r in two) / weight_and_state
    speed = base["epoch_s"] / max(r["epoch_s"] for r in two)
    print(f"sharded rank / one process, table + gradient + state: {table_ratio:.3f}")
    print(f"sharded rank / one process, table + Adagrad state: {half_ratio:.3f} (target 0.5)")
    print(f"throughput, 2 sharded ranks / 1 process: {speed:.2f}x")
    if args.json_out:
        summary = {"entities": args.entities, "dim": args.dim, "runs": one + two}
        summary |= {"table_ratio": table_ratio, "half_ratio": half_ratio, "speedup": speed}
        Path(args.json_out).write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
