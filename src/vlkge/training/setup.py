"""A run's process and parts from its config: seeds, device, threads, the graph and the model
(:func:`prepare`), and a finished run folder loaded back (:func:`load_run`: config, graph, best
model) for ``evaluate``, ``predict``, ``serve`` and the reports."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import numpy as np
import torch

from vlkge import config as config_mod
from vlkge.allocator import keep_freed_memory
from vlkge.checkpoint import load_weights
from vlkge.data.datasets import load_graph
from vlkge.data.graph import KnowledgeGraph
from vlkge.errors import ConfigError, VlkgeError, echo
from vlkge.models.backbones.kernels import configure_kernels
from vlkge.models.factory import build_model
from vlkge.models.features import Features, feature_cache_dir, load_features
from vlkge.models.model import KGEModel
from vlkge.precision import set_matmul_precision
from vlkge.runfolder import CONFIG, checkpoint_path, require_run_folder
from vlkge.training.sharded import shard_of

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise VlkgeError(f"device {echo(name, quote=False)} requested but CUDA is not available")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(
            f"device: unknown device {echo(name)} (cpu, cuda, cuda:N or auto)"
        ) from None


def check_splits(cfg: dict, kg: KnowledgeGraph) -> None:
    """Fail before training when the config evaluates a split the dataset does not have."""
    wanted = {"evaluation.splits": cfg["evaluation"]["splits"]}
    if cfg["validation"]["every"]:
        wanted["validation.split"] = [cfg["validation"]["split"]]
    for key, splits in wanted.items():
        missing = [s for s in splits if s not in kg.splits]
        if missing:
            raise ConfigError(
                f"{key}: dataset {kg.name} has no {missing[0]} split (it has "
                f"{', '.join(kg.splits)})"
            )


def configure_process(cfg: dict) -> None:
    """Apply a run's process-wide settings: threads, denormals, allocator, seed, kernels, CUDA's
    float32 products."""
    if cfg["num_threads"]:
        torch.set_num_threads(cfg["num_threads"])
    # sparse gradients of large tables are full of denormal floats, which run 10x slower on
    # x86 (the projection's weight gradient of a multimodal model: 0.62 -> 0.25 s per batch)
    torch.set_flush_denormal(True)
    keep_freed_memory()
    seed_everything(cfg["seed"])
    configure_kernels(cfg["compile"])
    set_matmul_precision(cfg["precision"])


def prepare(
    cfg: dict,
    features: Features | None = None,
    quiet: bool = False,
    kg: KnowledgeGraph | None = None,
    configure: bool = True,
) -> tuple[KnowledgeGraph, KGEModel]:
    """The graph and a freshly initialised model (seeded).

    A multimodal model (``model.modalities``) reads its frozen features from
    ``features.cache_dir`` unless a ``features`` dict is given; ``quiet``: a trained run's
    graph, whose findings its training reported (:func:`vlkge.data.datasets.load_graph`);
    ``kg``: a graph already in memory instead of ``dataset`` (a benchmark's synthetic one);
    ``configure``: apply the config's process-wide settings first (:func:`configure_process`;
    off for a second model built beside the first, whose settings must stay).
    """
    if configure:
        configure_process(cfg)
    kg = load_graph(cfg["dataset"], quiet) if kg is None else kg
    model_cfg = cfg["model"]
    towers = None
    if cfg["encoder"]["finetune"] != "none" and model_cfg["modalities"]:
        towers = build_tuned_towers(cfg, kg)
        features = {m: (tower().detach(), tower.mask) for m, tower in towers.items()}
    elif features is None and model_cfg["modalities"]:
        features = load_features(
            feature_cache_dir(cfg, kg), kg, model_cfg["modalities"], cfg["features"]["dtype"]
        )
    model = build_model(
        model_cfg,
        kg,
        features,
        model_cfg["reference_fusion"],
        towers,
        features_cfg=cfg["features"],
        shard=shard_of(cfg),  # sharded tables: this rank's rows only
    )
    return kg, model


def build_tuned_towers(cfg: dict, kg: KnowledgeGraph) -> dict:
    """Fine-tuned encoder towers (``encoder.finetune``) over the dataset's own texts/images."""
    from vlkge.encoders import build_encoder
    from vlkge.encoders.cache.policy import encoder_manifest
    from vlkge.encoders.tuning import build_towers

    settings = cfg["encoder"]
    manifest = encoder_manifest(cfg, kg)
    if manifest is None:
        raise VlkgeError(
            f"encoder.finetune needs the texts/images of dataset {kg.name} (no manifest.tsv)"
        )
    encoder = build_encoder(
        settings["name"], device=resolve_device(cfg["device"]), batch_size=settings["batch_size"]
    )
    log.info("fine-tuning %s of encoder %s", settings["finetune"], encoder.name)
    return build_towers(
        encoder,
        manifest,
        kg.entities,
        cfg["model"]["modalities"],
        settings["finetune"],
        settings["finetune_layers"],
        settings["workers"],
    )


#: config keys a trained run may change when it is loaded: how it is evaluated and where it
#: runs, and the inference-only borrowing of unseen entities (no trained weight depends on them)
INFERENCE_KEYS = (
    "evaluation.",
    "zero_shot.",  # the baselines of evaluation.zero_shot_blend and lexical_blend
    "model.neighbours",
    "model.neighbour_temperature",
    "device",
    "num_threads",
    "precision",
)


def load_run(
    run_dir: str | Path,
    checkpoint: str = "best",
    overrides: list[str] | tuple = (),
    configure: bool = True,
) -> tuple[dict, KnowledgeGraph, KGEModel]:
    """Config, graph and model (weights from ``checkpoints/<checkpoint>.pt``) of a run folder;
    ``overrides`` (``key=value``) may change the :data:`INFERENCE_KEYS` of its config;
    ``configure``: apply its threads, seed and kernels to the process (see :func:`prepare`)."""
    run_dir = require_run_folder(run_dir)
    for text in overrides:
        key = text.split("=", 1)[0].strip()
        if not config_mod.key_in(key, INFERENCE_KEYS):
            settable = ", ".join(k + "*" if k.endswith(".") else k for k in INFERENCE_KEYS)
            raise ConfigError(
                f"--set {echo(key, quote=False)}: a trained run's {echo(key, quote=False)} "
                f"cannot change; evaluation may set {settable}"
            )
    cfg = config_mod.load_config(run_dir / CONFIG, overrides)
    kg, model = prepare(cfg, quiet=True, configure=configure)
    load_weights(model, checkpoint_path(run_dir, checkpoint))
    model.eval()
    return cfg, kg, model
