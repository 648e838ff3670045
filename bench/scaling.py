#!/usr/bin/env python
"""How training and evaluation grow with the number of entities, and evaluation under a cap.

Usage::

    python bench/scaling.py [--threads 1] [--synthetic 10000 100000 1000000]
                            [--caps-mb 8 256] [--json-out results.json]

Two measurements, each in its own subprocess (so ``ru_maxrss`` is that run's peak alone):

1. Real graphs (WN9-IMG, FB15k-237, WN18RR): one epoch of DistMult training with the paper's
   negative-sampling regime (d 200, N 32, batch 512) and a full filtered evaluation of the test
   split (both sides, all entities): seconds per epoch, training triples per second,
   evaluation seconds and peak resident memory.
2. Synthetic graphs of up to 1M entities (3 random triples per entity, 1,000 test triples,
   d 64, untrained DistMult): full filtered evaluation under each ``evaluation.max_memory_mb``
   cap (MiB of scores and ranking masks per chunk): seconds and peak memory, next to the model's own
   size (the entity table). The filter index is built first; then the resident high-water
   mark is reset (Linux ``clear_refs``) so that "evaluation's own peak" is what scoring and
   ranking add above the memory already held, the part the cap bounds. The process-peak
   exponent is fitted on the peak above the interpreter's own (Python and torch loaded).

For each series a growth exponent ``b`` of ``y ~ a * entities^b`` is fitted by least squares
on the log-log points: ``b ~ 1`` is linear growth. The table prints the exponents and, for the
synthetic graphs, the memory above the entity table, which the cap should keep flat.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REAL = ("wn9-img", "fb15k-237", "wn18rr")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def vm_hwm_mb() -> float:
    """The resident high-water mark since the last :func:`reset_peak_mb` (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak_mb() -> float:
    """Reset the high-water mark to the current resident size (Linux ``clear_refs`` 5), after
    handing freed memory back, so that the next peak is the next step's own; returns it."""
    import ctypes

    ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")
    return vm_hwm_mb()


def _config(overrides: list[str]) -> dict:
    from vlkge.config import load_config

    return load_config(overrides=[*overrides, "training.progress=false"])


def child_real(name: str, threads: int) -> dict:
    import torch

    from vlkge.evaluation.evaluator import Evaluator
    from vlkge.training.setup import prepare
    from vlkge.training.trainer import Trainer

    torch.set_num_threads(threads)
    cfg = _config(
        [
            f"dataset.name={name}",
            "dataset.unseen_entities=drop",
            "model.backbone=distmult",
            "model.dim=200",
            "training.negatives.num=32",
            "training.batch_size=512",
            "training.optimizer.lr=0.1",
        ]
    )
    kg, model = prepare(cfg)
    trainer = Trainer(cfg, kg, model, Path(os.environ.get("TMPDIR", "/tmp")) / "vlkge-scaling")
    start = time.perf_counter()
    trainer.train_epoch()
    epoch_s = time.perf_counter() - start
    start = time.perf_counter()
    metrics = Evaluator(kg, cfg["evaluation"]).evaluate(model, "test")
    eval_s = time.perf_counter() - start
    return {
        "dataset": name,
        "entities": kg.num_entities,
        "train_triples": len(kg.train),
        "test_triples": len(kg.splits["test"]),
        "epoch_s": epoch_s,
        "triples_per_s": len(kg.train) / epoch_s,
        "eval_s": eval_s,
        "test_mrr_after_one_epoch": metrics["both"]["mrr"],
        "peak_rss_mb": peak_rss_mb(),
    }


def child_synthetic(entities: int, cap_mb: int, threads: int) -> dict:
    import torch

    from vlkge.data.graph import KnowledgeGraph
    from vlkge.evaluation.evaluator import Evaluator
    from vlkge.models import build_model

    torch.set_num_threads(threads)
    baseline = peak_rss_mb()  # the interpreter and torch, before any graph exists
    generator = torch.Generator().manual_seed(0)
    relations = 10

    def random_triples(n: int) -> torch.Tensor:
        h = torch.randint(entities, (n,), generator=generator)
        r = torch.randint(relations, (n,), generator=generator)
        t = torch.randint(entities, (n,), generator=generator)
        return torch.stack([h, r, t], 1)

    kg = KnowledgeGraph(
        "synthetic",
        [str(i) for i in range(entities)],
        [f"r{i}" for i in range(relations)],
        {"train": random_triples(3 * entities), "valid": random_triples(1000)},
    )
    kg.splits["test"] = random_triples(1000)
    cfg = _config(["model.backbone=distmult", "model.dim=64", f"evaluation.max_memory_mb={cap_mb}"])
    model = build_model(cfg["model"], kg)
    table_mb = entities * 64 * 4 / 2**20
    start = time.perf_counter()
    evaluator = Evaluator(kg, cfg["evaluation"])  # the sparse filter index
    index_s = time.perf_counter() - start
    before = reset_peak_mb()
    start = time.perf_counter()
    evaluator.evaluate(model, "test")
    return {
        "entities": entities,
        "max_memory_mb": cap_mb,
        "index_s": index_s,
        "eval_s": time.perf_counter() - start,
        "peak_rss_mb": peak_rss_mb(),
        "eval_peak_mb": vm_hwm_mb(),
        "rss_before_eval_mb": before,
        "baseline_mb": baseline,
        "entity_table_mb": table_mb,
    }


def run_child(args: list[str]) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", *args],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def growth_exponent(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of log y on log x."""
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    var = sum((a - mx) ** 2 for a in lx)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly, strict=True)) / var


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--datasets", nargs="*", default=list(REAL))
    parser.add_argument("--synthetic", nargs="*", type=int, default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--caps-mb", nargs="*", type=int, default=[8, 256])
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        result = (
            child_real(rest[0], args.threads)
            if kind == "real"
            else child_synthetic(int(rest[0]), int(rest[1]), args.threads)
        )
        print(json.dumps(result))
        return

    real = [run_child(["real", name, "--threads", str(args.threads)]) for name in args.datasets]
    real.sort(key=lambda r: r["entities"])
    if real:
        print("| dataset | entities | train triples | s / epoch | triples / s | eval s | peak MB |")
        print("|---|---|---|---|---|---|---|")
    for r in real:
        print(
            f"| {r['dataset']} | {r['entities']:,} | {r['train_triples']:,} | "
            f"{r['epoch_s']:.2f} | {r['triples_per_s']:,.0f} | {r['eval_s']:.2f} | "
            f"{r['peak_rss_mb']:.0f} |"
        )
    synthetic = [
        run_child(["synthetic", str(n), str(cap), "--threads", str(args.threads)])
        for cap in args.caps_mb
        for n in args.synthetic
    ]
    print()
    print(
        "| entities | max_memory_mb | filter index s | eval s | process peak MB "
        "| entity table MB | evaluation's own peak MB |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in synthetic:
        print(
            f"| {r['entities']:,} | {r['max_memory_mb']} | {r['index_s']:.2f} | "
            f"{r['eval_s']:.2f} | {r['peak_rss_mb']:.0f} | {r['entity_table_mb']:.0f} | "
            f"{r['eval_peak_mb'] - r['rss_before_eval_mb']:.1f} |"
        )
    fits = {}
    if len(real) > 1:
        xs = [r["entities"] for r in real]
        fits["real peak memory"] = growth_exponent(xs, [r["peak_rss_mb"] for r in real])
        fits["real eval time"] = growth_exponent(xs, [r["eval_s"] for r in real])
    for cap in args.caps_mb:
        rows = [r for r in synthetic if r["max_memory_mb"] == cap]
        if len(rows) > 1:
            xs = [r["entities"] for r in rows]
            fits[f"synthetic process peak above the interpreter, cap {cap} MiB"] = growth_exponent(
                xs, [r["peak_rss_mb"] - r["baseline_mb"] for r in rows]
            )
            fits[f"synthetic eval time, cap {cap} MiB"] = growth_exponent(
                xs, [r["eval_s"] for r in rows]
            )
    print()
    print("| series | growth exponent b (y ~ entities^b) |")
    print("|---|---|")
    for name, b in fits.items():
        print(f"| {name} | {b:.2f} |")
    if args.json_out:
        args.json_out.write_text(
            json.dumps({"real": real, "synthetic": synthetic, "exponents": fits}, indent=2)
        )


if __name__ == "__main__":
    main()
