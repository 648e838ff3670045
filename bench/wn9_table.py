"""Collect finished WN9-IMG runs into the results table, scoring each under both protocols.

    python bench/wn9_table.py runs/wn9-img [--json-out results.json]

For every run folder with a metrics.json the selected checkpoint is evaluated on the test
split under the default protocol (per-direction filter, realistic ties) and the reference
implementation's (merged filter, ties by entity id), next to the paper's figures (SPEC 8).
Runs of one model and training mode with different seeds form one row: mean +- standard
deviation over the seeds (n).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
from collections import defaultdict
from pathlib import Path

from vlkge.training.final import evaluate_run
from vlkge.training.setup import load_run

PAPER = {  # test MRR, H@1, H@3, H@10 (SPEC section 8; the paper's VL models use CLIP)
    "transe": (0.904, 0.894, 0.909, 0.922),
    "distmult": (0.904, 0.902, 0.904, 0.907),
    "complex": (0.900, 0.899, 0.901, 0.902),
    "rotate": (0.910, 0.907, 0.911, 0.917),
    "vl-transe": (0.913, 0.890, 0.928, 0.950),
    "vl-distmult": (0.935, 0.925, 0.940, 0.957),
    "vl-complex": (0.927, 0.920, 0.929, 0.941),
    "vl-rotate": (0.914, 0.904, 0.918, 0.934),
}
KEYS = ("mrr", "hits@1", "hits@3", "hits@10")


def collect(root: Path) -> list[dict]:
    rows = []
    for run in sorted(p.parent for p in root.glob("*/metrics.json")):
        cfg, kg, model = load_run(run)
        saved = json.loads((run / "metrics.json").read_text())
        model_cfg = cfg["model"]
        row = {
            "run": run.name,
            "model": (
                f"vl-{model_cfg['backbone']}" if model_cfg["modalities"] else model_cfg["backbone"]
            ),
            "fusion": model_cfg["fusion"] if model_cfg["modalities"] else "",
            "seed": cfg["seed"],
            "trained": "paper-compat" if cfg["compat"]["paper"] else "default",
            "best_epoch": saved.get("best_epoch"),
            "train_time_s": saved.get("train_time_s"),
        }
        for name, paper in (("default", False), ("paper", True)):
            metrics = evaluate_run(cfg, kg, model, ["test"], paper_protocol=paper)["test"]["both"]
            row[name] = {k: metrics[k] for k in KEYS}
        rows.append(row)
    return rows


def _mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def markdown(rows: list[dict]) -> str:
    """One line per (model, fusion, training mode): test MRR and Hits under both protocols,
    mean ± standard deviation over the seeds."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        groups[(row["model"], row["fusion"], row["trained"])].append(row)
    out = [
        "| model | fusion | training | seeds | best epochs | test MRR, default protocol "
        "| H@1 / H@10, default | test MRR, reference protocol | H@1 / H@10, reference "
        "| paper MRR |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (model, fusion, trained), runs in sorted(groups.items()):
        cells = []
        for protocol in ("default", "paper"):
            cells.append(_mean_std([r[protocol]["mrr"] for r in runs]))
            hits = [_mean_std([r[protocol][k] for r in runs]) for k in ("hits@1", "hits@10")]
            cells.append(" / ".join(hits))
        epochs = ", ".join(str(r["best_epoch"]) for r in runs)
        out.append(
            f"| {model} | {fusion} | {trained} | {len(runs)} | {epochs} | "
            f"{' | '.join(cells)} | {PAPER[model][0]:.3f} |"
        )
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    rows = collect(args.root)
    print(markdown(rows))
    if args.json_out:
        args.json_out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
