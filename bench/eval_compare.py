#!/usr/bin/env python
"""Full filtered evaluation, vlkge against PyKEEN, on the same model: time and peak memory.

Usage::

    python bench/eval_compare.py [--datasets wn9-img wn18rr fb15k-237] [--dim 200]
                                 [--threads 2] [--device cpu] [--json-out results.json]

For each dataset one DistMult model (width ``--dim``, Xavier-uniform, seed 0; untrained, which
costs the evaluation the same) is built by vlkge and its two tables are copied into a PyKEEN
``ERModel`` with the DistMult interaction, so both libraries rank exactly the same scores. Each
library then evaluates the test split in its own subprocess (filtered with train + valid + test,
both sides, all entities, realistic ties): wall time (best of ``--repeats``, filter
construction included) and the process's peak resident memory. The MRRs must agree; the table
prints the time ratio (target: vlkge at least 3x faster) and both peaks.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pykeen_compare import PYKEEN_METRICS, peak_gpu_mb, peak_rss_mb

DATASETS = ("wn9-img", "wn18rr", "fb15k-237")


def build(dataset: str, dim: int, device: str = "cpu"):
    from vlkge.config import load_config
    from vlkge.training.setup import prepare, resolve_device

    cfg = load_config(
        overrides=[
            f"dataset.name={dataset}",
            "dataset.unseen_entities=drop",
            "model.backbone=distmult",
            f"model.dim={dim}",
            "seed=0",
            f"device={device}",
        ]
    )
    kg, model = prepare(cfg)
    return cfg, kg, model.to(resolve_device(device))


def child(library: str, dataset: str, dim: int, repeats: int, threads: int, device: str) -> dict:
    import torch

    torch.set_num_threads(threads)
    cfg, kg, model = build(dataset, dim, device)
    test = kg.splits["test"]
    times, mrr = [], None
    if library == "vlkge":
        from vlkge.evaluation.evaluator import Evaluator

        for _ in range(repeats):
            start = time.perf_counter()
            result = Evaluator(kg, cfg["evaluation"]).evaluate(model, "test")
            times.append(time.perf_counter() - start)
            mrr = result["both"]["mrr"]
    else:
        from pykeen.evaluation import RankBasedEvaluator
        from pykeen.models import ERModel
        from pykeen.triples import CoreTriplesFactory

        factory = CoreTriplesFactory.create(
            mapped_triples=kg.train, num_entities=kg.num_entities, num_relations=kg.num_relations
        )
        theirs = ERModel(
            triples_factory=factory,
            interaction="distmult",
            entity_representations_kwargs=dict(shape=dim),
            relation_representations_kwargs=dict(shape=dim),
        ).to(device)
        with torch.no_grad():
            theirs.entity_representations[0]._embeddings.weight.copy_(model.entities.weight)
            theirs.relation_representations[0]._embeddings.weight.copy_(model.relations.weight)
        for _ in range(repeats):
            start = time.perf_counter()
            result = RankBasedEvaluator(filtered=True).evaluate(
                model=theirs,
                mapped_triples=test,
                additional_filter_triples=[kg.splits["train"], kg.splits["valid"]],
                batch_size=256,
                use_tqdm=False,
            )
            times.append(time.perf_counter() - start)
            mrr = float(result.get_metric(f"both.realistic.{PYKEEN_METRICS['mrr']}"))
    return {
        "library": library,
        "dataset": dataset,
        "entities": kg.num_entities,
        "test_triples": len(test),
        "eval_s": min(times),
        "mrr": mrr,
        "peak_rss_mb": peak_rss_mb(),
        "peak_gpu_mb": peak_gpu_mb(),
    }


def run_child(*args: str) -> dict:
    """One library's evaluation in a subprocess; a failure is returned as ``{"error": ...}``
    (the end of its stderr), so the other datasets still run."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "result.json"
        proc = subprocess.run(
            [sys.executable, __file__, "--child", *args, "--result", str(out)],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
            return {"error": f"exit {proc.returncode}:\n{tail}"}
        return json.loads(out.read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="*", default=list(DATASETS))
    parser.add_argument("--dim", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu | cuda (both libraries)")
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        library, dataset = args.child
        result = child(library, dataset, args.dim, args.repeats, args.threads, args.device)
        args.result.write_text(json.dumps(result))
        return 0
    rows = []
    print(f"DistMult d {args.dim}, {args.threads} threads, {args.device}, best of {args.repeats}")
    memory = "peak_gpu_mb" if args.device != "cpu" else "peak_rss_mb"  # GPU: torch's allocator
    print(
        "| dataset | entities | test | MRR vlkge / PyKEEN | eval s vlkge | eval s PyKEEN "
        "| PyKEEN / vlkge | peak MB vlkge | peak MB PyKEEN |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for dataset in args.datasets:
        common = ["--dim", str(args.dim), "--threads", str(args.threads)]
        common += ["--repeats", str(args.repeats), "--device", args.device]
        ours = run_child("vlkge", dataset, *common)
        theirs = run_child("pykeen", dataset, *common)
        rows.append({"vlkge": ours, "pykeen": theirs})
        if "error" in ours or "error" in theirs:
            for library, done in (("vlkge", ours), ("pykeen", theirs)):
                if "error" in done:
                    print(f"| {dataset} | {library} failed: {done['error']}")
        else:
            print(
                f"| {dataset} | {ours['entities']:,} | {ours['test_triples']:,} | "
                f"{ours['mrr']:.4f} / {theirs['mrr']:.4f} | {ours['eval_s']:.2f} | "
                f"{theirs['eval_s']:.2f} | {theirs['eval_s'] / ours['eval_s']:.1f}x | "
                f"{ours[memory]:.0f} | {theirs[memory]:.0f} |",
                flush=True,
            )
        if args.json_out:  # after every dataset: a run stopped early keeps what it measured
            args.json_out.write_text(json.dumps(rows, indent=2))
    return 1 if any("error" in row[lib] for row in rows for lib in row) else 0


if __name__ == "__main__":
    sys.exit(main())
