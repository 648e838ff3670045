"""Evaluate a trained run with the zero-shot blend (``evaluation.zero_shot_blend``, weights per
side and relation fit on validation), the prompts taken from a zero-shot config, for runs
trained without a ``zero_shot:`` section (docs/results.md, "Honest multimodal gains").

    python bench/blend_eval.py RUN configs/wn9-img/zero-shot-minilm.yaml [--split valid,test]
        [--weights "[1,2,5]"] [--set KEY=VALUE ...] [--json-out FILE]

Prints one JSON line per split: the both-sides metrics of ``vlkge evaluate --json``;
``--json-out`` writes each split's whole metrics (sides and per relation, the layout of a run's
``metrics.json``), which ``bench/relation_chart.py`` draws.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import yaml

WEIGHTS = "[1,2,5,10,20,50,1000]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run")
    parser.add_argument("zero_shot_config")
    parser.add_argument("--split", default="valid,test")
    parser.add_argument("--weights", default=WEIGHTS, help=f"the grid of w (default {WEIGHTS})")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--json-out", type=Path, help="every split's whole metrics")
    args = parser.parse_args()
    with open(args.zero_shot_config, encoding="utf-8") as fh:
        prompts = yaml.safe_load(fh)["zero_shot"]
    sets = [f"evaluation.zero_shot_blend.weights={args.weights}"]
    sets += [f"zero_shot.{key}={json.dumps(prompts[key])}" for key in prompts]
    sets += args.set
    found = {}
    for split in args.split.split(","):
        command = [sys.executable, "-m", "vlkge", "evaluate", args.run, "--split", split, "--json"]
        for item in sets:
            command += ["--set", item]
        out = subprocess.run(command, capture_output=True, text=True, check=False)
        if out.returncode:
            sys.exit(f"{split}: vlkge evaluate failed: {out.stderr.strip().splitlines()[-1:]}")
        found[split] = json.loads(out.stdout).get(split)
        print(split, json.dumps(found[split]["both"]), flush=True)
        if args.json_out:  # after each split: a later failure keeps the finished ones
            args.json_out.write_text(json.dumps(found, indent=1) + "\n")


if __name__ == "__main__":
    main()
