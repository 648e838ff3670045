#!/usr/bin/env python
"""Sharded entity tables (``distributed.shard_tables``) against one process: memory per rank
and training throughput on a synthetic graph.

Usage::

    OMP_NUM_THREADS=1 python bench/sharding.py [--entities 1000000] [--per-entity 2] [--dim 64]
                                               [--sharded-only] [--json-out results.json]

Every process builds the same synthetic graph in memory (``--entities`` entities, 10
relations, ``--per-entity`` random training triples per entity, vectorised and seeded; valid
and test hold 100 triples each), then trains one epoch of DistMult with negative sampling
(Adagrad, batch 4096, 16 negatives, no validation), twice, each in fresh processes: one process
with the whole table, and two gloo ranks on loopback with sharded tables, same seed and global
batch (``--sharded-only``: the two ranks alone, for a graph whose one-process run would not fit
in memory). Each process reports:

- the bytes of its per-entity tables and their optimiser state: the entity table, its dense
  gradient and Adagrad sum for one process; its rows of the table and their Adagrad sum when
  sharded (row gradients exist only for the rows a batch fetched);
- its resident memory at start (interpreter and torch) and, after each phase (graph built,
  model built, trainer and negative filter built, epoch trained), its resident memory and
  high-water mark (``VmHWM``), so the peak can be traced to the phase that reached it;
- the epoch's training time (triples per second over the whole run) and its CPU time (what
  the process itself used: on a machine shared with other jobs, the wall time also counts the
  time it waited for a core).

The ratio "sharded per rank / one process" of the table bytes is the figure the design aims at
(1/2 of table + optimiser state with 2 ranks). A sharded rank draws only its own rows of the
seeded initialisation (the values are one process's: ``ShardedEmbedding.drawn``).
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


def synthetic_graph(entities: int, per_entity: int, seed: int = 0):
    """Random triples over ``entities`` (every entity a head ``per_entity`` times, no
    self-loops, no repeats, shuffled); valid and test hold 100 triples each whose entities
    occur in training. Built with int64 codes ``(h R + r) E + t``: a few arrays of the triple
    count, no Python object per triple."""
    import torch

    from vlkge.data.graph import KnowledgeGraph

    rng = np.random.default_rng(seed)
    heads = np.repeat(np.arange(entities), per_entity)
    tails = rng.integers(0, entities, len(heads))
    codes = heads * RELATIONS + rng.integers(0, RELATIONS, len(heads))
    codes = np.unique((codes * entities + tails)[heads != tails])  # sorted, distinct
    del heads, tails
    rng.shuffle(codes)
    triples = torch.from_numpy(
        np.stack(
            [codes // (RELATIONS * entities), codes // entities % RELATIONS, codes % entities], 1
        )
    )
    return KnowledgeGraph(
        name="synthetic",
        entities=[f"e{i}" for i in range(entities)],
        relations=[f"r{i}" for i in range(RELATIONS)],
        splits={"valid": triples[:100], "test": triples[100:200], "train": triples[200:]},
    )


def memory() -> dict:
    return {"rss_mb": status_mb("VmRSS"), "peak_mb": status_mb("VmHWM")}


def worker(entities: int, per_entity: int, dim: int, out: str) -> None:
    """One process of a measurement (under torchrun when sharded)."""
    import torch

    from vlkge import distributed
    from vlkge.config import load_config
    from vlkge.models.sharded import sharded_tables
    from vlkge.training.setup import prepare
    from vlkge.training.trainer import Trainer

    start_rss = status_mb("VmRSS")
    cfg = load_config(
        overrides=[
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
    phases = {}
    with distributed.session(torch.device("cpu")), tempfile.TemporaryDirectory() as run:
        kg = synthetic_graph(entities, per_entity)
        phases["graph"] = memory()
        kg, model = prepare(cfg, quiet=True, kg=kg)
        phases["model"] = memory()
        trainer = Trainer(cfg, kg, model, Path(run))
        phases["trainer"] = memory()
        began, cpu = time.perf_counter(), time.process_time()
        trainer.train_epoch()
        seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
        phases["epoch"] = memory()
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
            "epoch_cpu_s": cpu,
            "table_mb": table_bytes / 2**20,
            "start_rss_mb": start_rss,
            "peak_rss_mb": status_mb("VmHWM"),
            "phases": phases,
        }
    Path(f"{out}.{result['rank']}.json").write_text(json.dumps(result))


def measure(args: argparse.Namespace, ranks: int, out: Path) -> list[dict]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    me = [str(Path(__file__).resolve()), "--worker", "--out", str(out)]
    me += ["--entities", str(args.entities), "--per-entity", str(args.per_entity)]
    me += ["--dim", str(args.dim)]
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
    parser.add_argument("--sharded-only", action="store_true", help="no one-process run")
    parser.add_argument("--json-out")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.entities, args.per_entity, args.dim, args.out)
        return
    with tempfile.TemporaryDirectory() as tmp:
        one = [] if args.sharded_only else measure(args, 1, Path(tmp) / "one")
        two = measure(args, 2, Path(tmp) / "two")
    triples = two[0]["train_triples"]
    print(f"{args.entities:,} entities, {triples:,} training triples, d {args.dim}")
    print("ranks  rank  table+state MB  start RSS MB  peak RSS MB  epoch s  CPU s  triples/s")
    for row in one + two:
        rate = row["train_triples"] / row["epoch_s"]
        print(
            f"{row['world']:>5}  {row['rank']:>4}  {row['table_mb']:>13.1f}  "
            f"{row['start_rss_mb']:>12.1f}  {row['peak_rss_mb']:>11.1f}  "
            f"{row['epoch_s']:>7.1f}  {row['epoch_cpu_s']:>5.0f}  {rate:>9.0f}"
        )
    print("phase    " + "  ".join(f"rank {r['rank']} RSS / peak MB" for r in two))
    for phase in two[0]["phases"]:
        cells = [
            f"{r['phases'][phase]['rss_mb']:>8.0f} / {r['phases'][phase]['peak_mb']:>6.0f}"
            for r in two
        ]
        print(f"{phase:<8} " + "  ".join(f"{c:>23}" for c in cells))
    total = sum(r["peak_rss_mb"] for r in two)
    print(f"2 sharded ranks, peak RSS summed: {total:,.0f} MB")
    summary = {"entities": args.entities, "per_entity": args.per_entity, "dim": args.dim}
    summary |= {"train_triples": triples, "runs": one + two, "sharded_peak_sum_mb": total}
    if one:
        base = one[0]
        table_ratio = max(r["table_mb"] for r in two) / base["table_mb"]
        weight_and_state = base["table_mb"] * 2 / 3  # one process: weight, gradient, Adagrad sum
        half_ratio = max(r["table_mb"] for r in two) / weight_and_state
        speed = base["epoch_s"] / max(r["epoch_s"] for r in two)
        print(f"sharded rank / one process, table + gradient + state: {table_ratio:.3f}")
        print(f"sharded rank / one process, table + Adagrad state: {half_ratio:.3f} (target 0.5)")
        print(f"throughput, 2 sharded ranks / 1 process: {speed:.2f}x")
        summary |= {"table_ratio": table_ratio, "half_ratio": half_ratio, "speedup": speed}
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
