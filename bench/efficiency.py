#!/usr/bin/env python
"""How close 1-vs-all scoring and evaluation come to the machine's matrix-product peak.

Usage::

    python bench/efficiency.py [--dataset fb15k-237] [--dim 512] [--batch 512] [--threads 2]
                               [--clock wall|cpu] [--backbones distmult complex]
                               [--json-out results.json]

Measured in one process, one after the other, with the same threads:

- **peak**: the best of 5 float32 ``n x n @ n x n`` products (n = 4096), 2 n^3 flops each;
- **1-vs-all training step**: DistMult and ComplEx, a batch of ``--batch`` (h, r) queries scored
  against every entity (``KGEModel.score_against``), cross-entropy, backward: 3 products of
  ``batch x width x entities`` (scores, and the two gradients), 6 * batch * width * E flops;
- **evaluation**: the full filtered ranking of the test split, both sides, all entities
  (``Evaluator.evaluate``, filters, ties and metrics included), counted as its products only:
  2 * queries * width * E flops.

``--clock cpu`` times by the process's CPU time instead of the wall clock: on a machine shared
with other work, and with ``--threads 1``, that is what each measurement would take alone.
Each line prints achieved GFLOP/s and its share of the peak; everything that is not a matrix
product (gathers, the softmax, filtering, ranking) counts against the share.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

#: how ``best_time`` reads the time: the wall clock, or (``--clock cpu``) the process's CPU
#: time, which on a shared machine with one thread is what the work would take alone
CLOCK = {"now": time.perf_counter}


def best_time(fn, repeats: int = 5) -> float:
    fn()  # warm-up (allocations, kernel selection)
    times = []
    now = CLOCK["now"]
    for _ in range(repeats):
        start = now()
        fn()
        times.append(now() - start)
    return min(times)


def matmul_peak(n: int = 4096) -> dict:
    a, b = torch.randn(n, n), torch.randn(n, n)
    seconds = best_time(lambda: a @ b)
    return {"operation": f"peak: {n}x{n} float32 product", "gflop": 2 * n**3 / 1e9, "s": seconds}


def one_vs_all_step(model, kg, batch: int, name: str) -> dict:
    generator = torch.Generator().manual_seed(0)
    rows = kg.train[torch.randint(len(kg.train), (batch,), generator=generator)]

    def step():
        model.zero_grad(set_to_none=True)
        scores = model.score_against("tail", rows[:, 0], rows[:, 1])
        torch.nn.functional.cross_entropy(scores, rows[:, 2]).backward()

    width = model.entities.width
    flops = 6 * batch * width * kg.num_entities
    return {"operation": f"1-vs-all step, {name}", "gflop": flops / 1e9, "s": best_time(step)}


def evaluation(model, kg, cfg: dict, name: str) -> dict:
    from vlkge.evaluation.evaluator import Evaluator

    evaluator = Evaluator(kg, cfg["evaluation"])
    queries = 2 * len(kg.splits["test"])
    flops = 2 * queries * model.entities.width * kg.num_entities
    seconds = best_time(lambda: evaluator.evaluate(model, "test"), repeats=3)
    return {
        "operation": f"evaluation (test, both sides), {name}",
        "gflop": flops / 1e9,
        "s": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fb15k-237")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    parser.add_argument("--backbones", nargs="+", default=["distmult", "complex"])
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.clock == "cpu":
        CLOCK["now"] = time.process_time

    from vlkge.config import load_config
    from vlkge.training.setup import prepare

    rows = [matmul_peak()]
    for backbone in args.backbones:
        cfg = load_config(
            overrides=[
                f"dataset.name={args.dataset}",
                "dataset.unseen_entities=drop",
                f"model.backbone={backbone}",
                f"model.dim={args.dim}",
                f"num_threads={args.threads}",
            ]
        )
        kg, model = prepare(cfg)
        name = f"{backbone} d {args.dim}, {kg.num_entities:,} entities"
        rows.append(one_vs_all_step(model, kg, args.batch, name))
        with torch.no_grad():
            rows.append(evaluation(model, kg, cfg, name))
    peak = rows[0]["gflop"] / rows[0]["s"]
    print(f"threads: {args.threads}, clock: {args.clock}")
    print("| operation | GFLOP | seconds | GFLOP/s | share of peak |")
    print("|---|---|---|---|---|")
    for row in rows:
        row["gflops"] = row["gflop"] / row["s"]
        row["share_of_peak"] = row["gflops"] / peak
        print(
            f"| {row['operation']} | {row['gflop']:.1f} | {row['s']:.3f} | "
            f"{row['gflops']:.1f} | {row['share_of_peak']:.0%} |"
        )
    if args.json_out:
        out = {"threads": args.threads, "clock": args.clock, "rows": rows}
        args.json_out.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
