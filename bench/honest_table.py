"""Print the structural-against-multimodal table of a finished grid (``bench/honest_grid.py``),
optionally with runs of your own beside it, each scored on the test split.

    python bench/honest_table.py bench/results/honest-wn9-img.json [--run runs/wn9-vl ...]

Each arm's row is its grid-selected config over the grid's seeds (mean +- standard deviation
of the test metrics, default protocol); a ``--run`` row is that run folder's own
``metrics.json`` test split (``vlkge train`` scores it once, for the selected checkpoint).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

KEYS = ("mrr", "hits@1", "hits@3", "hits@10")


def arm_rows(results: dict) -> list[tuple[str, list[str]]]:
    rows = []
    for arm, result in results.items():
        if arm == "machine":
            continue
        seeds = len(result["seeds"])
        cells = [f"{result['test'][k]['mean']:.4f} ± {result['test'][k]['std']:.4f}" for k in KEYS]
        rows.append((f"{arm} ({seeds} seeds)", cells))
    return rows


def run_row(run: Path) -> tuple[str, list[str]]:
    test = json.loads((run / "metrics.json").read_text())["test"]["both"]
    return (f"{run} (this run)", [f"{test[k]:.4f}" for k in KEYS])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--run", type=Path, nargs="*", default=[])
    args = parser.parse_args()
    rows = arm_rows(json.loads(args.results.read_text())) + [run_row(r) for r in args.run]
    width = max(len(name) for name, _ in rows)
    print(f"test split, default protocol ({args.results})")
    print(" " * width + "".join(f"  {k:>17}" for k in KEYS))
    for name, cells in rows:
        print(name.ljust(width) + "".join(f"  {c:>17}" for c in cells))


if __name__ == "__main__":
    main()
