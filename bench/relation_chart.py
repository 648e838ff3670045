#!/usr/bin/env python
"""Per-relation test MRR of a run beside a baseline run as a PNG (the paper's Figure 4).

    python bench/relation_chart.py RUN BASELINE --out docs/figures/wn9-per-relation.png \
        [--labels "VL-DistMult" "DistMult"] [--split test]

Reads both runs' ``metrics.json`` (as written by ``vlkge train``; RUN or BASELINE may also be
such a file itself, e.g. ``bench/blend_eval.py --json-out``'s) and draws them with the report's
own figure (:func:`vlkge.reports.plots.relation_bars`).
"""

from __future__ import annotations

import argparse
import base64
import json
from pathlib import Path

from vlkge.reports.plots import relation_bars


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("baseline", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--labels", nargs=2, default=("model", "baseline"))
    parser.add_argument("--split", default="test")
    args = parser.parse_args()
    ours, theirs = (
        json.loads((path if path.is_file() else path / "metrics.json").read_text())[args.split][
            "per_relation"
        ]
        for path in (args.run, args.baseline)
    )
    uri = relation_bars(ours, theirs, tuple(args.labels))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(base64.b64decode(uri.split(",", 1)[1]))
    print(args.out)


if __name__ == "__main__":
    main()
