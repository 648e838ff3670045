"""Prepare what bench/gpu_grid.sh needs on a lent GPU machine, which has no network and no text
encoder's weights: run it HERE, in the repository root, after `vlkge encode` of the grid's
multimodal configs.

    python bench/gpu_grid_prepare.py bench/grids/wn18rr.yaml [bench/grids/fb15k-237.yaml ...]

Writes ``.gpu-grid/`` (ignored through .git/info/exclude; it travels when the call's ``carry``
names it): ``data/`` (each arm's dataset folder and its texts folder, from $VLKGE_DATA_DIR),
``features/`` (each multimodal arm's cached features, the rows the cache holds as usable, as a float16
matrix and its entity ids:
half the bytes, and the 64 MiB a call may carry holds WN18RR's 40,943 x 384), ``imports.tsv``
(what `vlkge encode --text-features` imports where, there) and ``source.txt`` (the commit and
`git status --short` the figures come from).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import torch
import yaml

from vlkge.config import load_config
from vlkge.data.datasets import load_graph
from vlkge.data.download import cache_dir
from vlkge.data.registry import DATASETS
from vlkge.encoders.cache.tables import read_table
from vlkge.models.features import feature_cache_dir

TARGET = Path(".gpu-grid")


def arm_configs(grid: Path) -> list[tuple[str, dict]]:
    """Each arm's config file and its resolved config (the arm's ``set`` applied)."""
    spec = yaml.safe_load(grid.read_text())
    out = []
    for arm in spec["arms"].values():
        overrides = [f"{k}={json.dumps(v)}" for k, v in (arm.get("set") or {}).items()]
        out.append((arm["config"], load_config(arm["config"], overrides)))
    return out


def copy_dataset(name: str, data: Path) -> None:
    """The dataset's folder and its texts folder, from ``data`` into ``.gpu-grid/data``."""
    spec = DATASETS[name]
    for folder in filter(None, (name, spec.texts)):
        target = TARGET / "data" / folder
        if not target.is_dir():
            shutil.copytree(data / folder, target)


def export_features(config: str, cfg: dict) -> list[str]:
    """The config's cached features as float16 matrices with id lists; their imports.tsv
    lines."""
    kg = load_graph(cfg["dataset"], quiet=True)
    cache = feature_cache_dir(cfg, kg)
    lines = []
    for modality in cfg["model"]["modalities"]:
        records = read_table(cache / f"{modality}.safetensors").records()  # checked, usable
        usable = {entity: r.feature for entity, r in records.items() if r.feature is not None}
        matrix = torch.stack(list(usable.values())).numpy().astype(np.float16)
        ids = list(usable)
        stem = f"{TARGET}/features/{kg.name}.{cache.name}.{modality}"
        np.save(f"{stem}.npy", matrix)
        Path(f"{stem}.ids.txt").write_text("\n".join(ids) + "\n")
        relative = cache.relative_to(cache_dir())
        lines.append(f"{config}\t{modality}\t{stem}.npy\t{stem}.ids.txt\t{relative}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("grids", type=Path, nargs="+")
    args = parser.parse_args()
    data = Path(os.environ.get("VLKGE_DATA_DIR", "../shared/data"))
    shutil.rmtree(TARGET, ignore_errors=True)
    (TARGET / "features").mkdir(parents=True)
    imports = []
    for config, cfg in [c for grid in args.grids for c in arm_configs(grid)]:
        copy_dataset(cfg["dataset"]["name"], data)
        if cfg["model"]["modalities"]:
            imports += export_features(config, cfg)
    (TARGET / "imports.tsv").write_text("".join(line + "\n" for line in dict.fromkeys(imports)))
    git = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    status = subprocess.run(["git", "status", "--short"], capture_output=True, text=True).stdout
    (TARGET / "source.txt").write_text(f"commit {git}{status}")
    exclude = Path(".git/info/exclude")
    exclude.parent.mkdir(exist_ok=True)
    if "/.gpu-grid/" not in (exclude.read_text() if exclude.is_file() else ""):
        with exclude.open("a") as handle:
            handle.write("/.gpu-grid/\n")
    size = sum(p.stat().st_size for p in TARGET.rglob("*") if p.is_file())
    print(f"{TARGET}: {size / 2**20:.1f} MiB ({len(imports)} feature tables)")


if __name__ == "__main__":
    main()
