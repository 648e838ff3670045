"""Collect finished WN9-IMG runs into the results table, scoring each under both protocols.

    python bench/wn9_table.py runs/wn9-img [--json-out results.json]

For every run folder with a metrics.json the selected checkpoint is evaluated on the test
split under the default protocol (per-direction filter, realistic ties) and the reference
implementation's (merged filter, ties by entity id), next to the paper's figures (SPEC 8).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from vlkge.training.run import evaluate_run, load_run

PAPER = {  # test MRR, H@1, H@3, H@10 of the structural baselines (SPEC section 8)
    "transe": (0.904, 0.894, 0.909, 0.922),
    "distmult": (0.904, 0.902, 0.904, 0.907),
    "complex": (0.900, 0.899, 0.901, 0.902),
    "rotate": (0.910, 0.907, 0.911, 0.917),
}
KEYS = ("mrr", "hits@1", "hits@3", "hits@10")


def collect(root: Path) -> list[dict]:
    rows = []
    for run in sorted(p.parent for p in root.glob("*/metrics.json")):
        cfg, kg, model = load_run(run)
        saved = json.loads((run / "metrics.json").read_text())
        row = {
            "run": run.name,
            "backbone": cfg["model"]["backbone"],
            "trained": "paper-compat" if cfg["compat"]["paper"] else "default",
            "best_epoch": saved.get("best_epoch"),
            "train_time_s": saved.get("train_time_s"),
        }
        for name, paper in (("default", False), ("paper", True)):
            metrics = evaluate_run(cfg, kg, model, ["test"], paper_protocol=paper)["test"]["both"]
            row[name] = {k: metrics[k] for k in KEYS}
        rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    out = [
        "| backbone | training | best epoch | test MRR / H@1 / H@3 / H@10, default protocol "
        "| same, reference protocol | paper |",
        "|---|---|---|---|---|---|",
    ]
    fmt = lambda m: " / ".join(f"{m[k]:.3f}" for k in KEYS)  # noqa: E731
    for row in sorted(rows, key=lambda r: (r["backbone"], r["trained"])):
        paper = " / ".join(f"{v:.3f}" for v in PAPER[row["backbone"]])
        out.append(
            f"| {row['backbone']} | {row['trained']} | {row['best_epoch']} | "
            f"{fmt(row['default'])} | {fmt(row['paper'])} | {paper} |"
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
