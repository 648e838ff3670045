"""A run from config to ``metrics.json``: load data, build the model, train, select, evaluate.

Also loads a finished run folder back (config, graph, best model) for ``evaluate`` and
``predict``.
"""

from __future__ import annotations

import json
import logging
import random
import time
from pathlib import Path

import numpy as np
import torch

from vlkge import config as config_mod
from vlkge.data.datasets import load_dataset
from vlkge.data.graph import KnowledgeGraph
from vlkge.errors import VlkgeError
from vlkge.evaluation.evaluator import Evaluator
from vlkge.models.backbones.kernels import configure_kernels
from vlkge.models.factory import build_model
from vlkge.models.features import Features, feature_cache_dir, load_features
from vlkge.models.model import KGEModel
from vlkge.training.checkpoint import load_checkpoint
from vlkge.training.trainer import Trainer, show_progress

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise VlkgeError(f"device {name} requested but CUDA is not available")
    return torch.device(name)


def load_graph(cfg: dict) -> KnowledgeGraph:
    data = cfg["dataset"]
    kg = load_dataset(
        data["name"],
        data_dir=data["data_dir"],
        inductive=data["setting"] == "inductive",
        unseen=data["unseen_entities"],
    )
    return kg.with_inverse_relations(data["inverse_relations"])


def prepare(cfg: dict, features: Features | None = None) -> tuple[KnowledgeGraph, KGEModel]:
    """The graph and a freshly initialised model (seeded).

    A multimodal model (``model.modalities``) reads its frozen features from
    ``features.cache_dir`` unless a ``features`` dict is given.
    """
    if cfg["num_threads"]:
        torch.set_num_threads(cfg["num_threads"])
    seed_everything(cfg["seed"])
    configure_kernels(cfg["compile"])
    kg = load_graph(cfg)
    model_cfg = dict(cfg["model"])
    if cfg["compat"]["paper"]:
        model_cfg["rotate_distance"] = "l2"
    if features is None and model_cfg["modalities"]:
        features = load_features(feature_cache_dir(cfg, kg), kg, model_cfg["modalities"])
    return kg, build_model(model_cfg, kg, features, paper_compat=cfg["compat"]["paper"])


def evaluate_run(
    cfg: dict,
    kg: KnowledgeGraph,
    model: KGEModel,
    splits,
    progress: bool = False,
    paper_protocol: bool | None = None,
) -> dict:
    """Metrics of ``model`` on ``splits``; ``paper_protocol`` overrides the run's choice of
    ranking protocol (merged filter and id-ordered ties) without changing the model."""
    if paper_protocol is None:
        paper_protocol = cfg["compat"]["paper"]
    evaluator = Evaluator(kg, cfg["evaluation"], paper_protocol)
    out: dict = {}
    for split in splits:
        start = time.perf_counter()
        out[split] = evaluator.evaluate(model, split, progress=progress)
        log.info(
            "%s: MRR %.4f  H@1 %.4f  H@3 %.4f  H@10 %.4f  (%.1fs)",
            split,
            out[split]["both"]["mrr"],
            out[split]["both"]["hits@1"],
            out[split]["both"]["hits@3"],
            out[split]["both"]["hits@10"],
            time.perf_counter() - start,
        )
    out["ties"] = evaluator.ties
    return out


def train(cfg: dict, run_dir: str | Path, features: Features | None = None) -> dict:
    """Train and evaluate as configured; writes the run folder and returns the metrics.

    ``features`` replaces the feature cache of a multimodal model (see :func:`prepare`).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    saved = run_dir / "config.yaml"
    if saved.is_file():
        previous = config_mod.load_config(saved)
        changed = config_mod.diff(previous, cfg)
        if changed:
            keys = ", ".join(sorted(changed))
            raise VlkgeError(
                f"{run_dir} holds a run with another config (differs in {keys}); "
                "use a new --out folder"
            )
    saved.write_text(config_mod.dump(cfg), encoding="utf-8")
    kg, model = prepare(cfg, features)
    device = resolve_device(cfg["device"])
    model.to(device)
    evaluator = Evaluator(kg, cfg["evaluation"], cfg["compat"]["paper"])
    start = time.perf_counter()
    best = Trainer(cfg, kg, model, run_dir, evaluator).fit()
    train_time = time.perf_counter() - start
    state = load_checkpoint(run_dir / "checkpoints" / "best.pt")
    model.load_state_dict(state["model"])
    metrics = evaluate_run(
        cfg, kg, model, cfg["evaluation"]["splits"], show_progress(cfg["training"]["progress"])
    )
    metrics["best_epoch"] = best["epoch"]
    metrics["train_time_s"] = train_time
    write_metrics(run_dir, metrics)
    return metrics


def write_metrics(run_dir: Path, metrics: dict) -> None:
    path = Path(run_dir) / "metrics.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    tmp.replace(path)


def load_run(
    run_dir: str | Path, checkpoint: str = "best"
) -> tuple[dict, KnowledgeGraph, KGEModel]:
    """Config, graph and model (weights from ``checkpoints/<checkpoint>.pt``) of a run folder."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise VlkgeError(f"{run_dir}: not a run folder (no config.yaml)")
    cfg = config_mod.load_config(run_dir / "config.yaml")
    kg, model = prepare(cfg)
    state = load_checkpoint(run_dir / "checkpoints" / f"{checkpoint}.pt")
    model.load_state_dict(state["model"])
    model.eval()
    return cfg, kg, model
