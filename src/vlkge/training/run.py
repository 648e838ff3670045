"""A run from config to ``metrics.json``: load data, build the model, train, select, evaluate
(the parts: :mod:`vlkge.training.setup`; the final scorer: :mod:`vlkge.training.final`)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from vlkge import config as config_mod
from vlkge import distributed
from vlkge.checkpoint import load_weights
from vlkge.evaluation.evaluator import Evaluator
from vlkge.evaluation.prompts import prompt_templates
from vlkge.files import write_text
from vlkge.models.factory import warn_large_margin
from vlkge.models.features import Features, cache_encoders, feature_cache_dir
from vlkge.models.sharded import entity_shard
from vlkge.runfolder import (
    CONFIG,
    absolute_paths,
    checkpoint_path,
    new_run,
    require_run_folder,
    write_metrics,
)
from vlkge.training.final import evaluate_run, partner_errors
from vlkge.training.setup import check_splits, prepare, resolve_device
from vlkge.training.sharded import restore_best, shard_if_asked
from vlkge.training.trainer import EpochCallback, Trainer, show_progress

log = logging.getLogger(__name__)


def train(
    cfg: dict,
    run_dir: str | Path,
    features: Features | None = None,
    on_epoch: EpochCallback | None = None,
) -> dict:
    """Train and evaluate as configured; writes the run folder and returns the metrics.

    ``features`` replaces the feature cache of a multimodal model (see :func:`prepare`);
    ``on_epoch`` sees every epoch's trace entry and may stop training there (:class:`Trainer`).
    Launched by ``torchrun`` with several processes, the run is data-parallel
    (:mod:`vlkge.distributed`): rank 0 writes the run folder and every rank returns
    its metrics.
    """
    device = distributed.device_for_rank(resolve_device(cfg["device"]))
    with distributed.session(device):
        return _train(cfg, Path(run_dir), device, features, on_epoch)


def _train(
    cfg: dict,
    run_dir: Path,
    device: torch.device,
    features: Features | None,
    on_epoch: EpochCallback | None,
) -> dict:
    """Rank 0 holds the run folder's lock throughout, and writes ``config.yaml`` only once
    training starts: a run that fails before (a bad dataset) leaves nothing that blocks a
    rerun with the fixed config."""
    cfg = absolute_paths(cfg)
    if not distributed.is_main():
        return _train_in(cfg, run_dir, device, features, on_epoch)
    with new_run(run_dir, cfg):
        return _train_in(cfg, run_dir, device, features, on_epoch)


def _train_in(
    cfg: dict,
    run_dir: Path,
    device: torch.device,
    features: Features | None,
    on_epoch: EpochCallback | None,
) -> dict:
    main = distributed.is_main()
    kg, model = prepare(cfg, features)
    check_splits(cfg, kg)
    if cfg["evaluation"]["run_blend"]["run"]:  # hours of training before it is loaded
        with partner_errors():
            require_run_folder(cfg["evaluation"]["run_blend"]["run"])
    if cfg["evaluation"]["zero_shot_blend"]["weights"]:  # likewise before it is built
        prompt_templates(cfg, kg)
    if main or entity_shard(model) is not None:  # sharded: every rank serves its rows
        warn_large_margin(model, kg.train, cfg["training"]["loss"], report=main)
    shard_if_asked(cfg, model)  # on the host: the device holds only this rank's rows
    model.to(device)
    evaluator = Evaluator(kg, cfg["evaluation"], precision=cfg["precision"])
    trainer = Trainer(cfg, kg, model, run_dir, evaluator, on_epoch)
    if main:
        write_text(run_dir / CONFIG, config_mod.dump(cfg))
    best = trainer.fit()
    train_time = trainer.train_time()
    if trainer.rows is not None:  # sharded tables: every rank holds and ranks its rows
        restore_best(trainer.best_path, model)
    elif not main:  # rank 0 evaluates and writes; the others wait for its metrics
        return distributed.broadcast_object(None)
    else:
        load_weights(model, checkpoint_path(run_dir))
    metrics = evaluate_run(
        cfg,
        kg,
        model,
        cfg["evaluation"]["splits"],
        show_progress(cfg["training"]["progress"]) and main,
        evaluator=evaluator,
        folder=run_dir if main else None,
    )
    if not main:
        return distributed.broadcast_object(None)
    metrics["best_epoch"] = best["epoch"]
    metrics["train_time_s"] = train_time
    if cfg["model"]["modalities"] and features is None and cfg["encoder"]["finetune"] == "none":
        metrics["features"] = cache_encoders(feature_cache_dir(cfg, kg), cfg["model"]["modalities"])
    write_metrics(run_dir, metrics)
    log.info(
        "trained in %.1fs (selected epoch %d); run folder %s", train_time, best["epoch"], run_dir
    )
    return distributed.broadcast_object(metrics)
