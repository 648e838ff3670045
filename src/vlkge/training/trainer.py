"""The training loop: epochs of a regime, validation every k epochs, best checkpoint, early
stopping, a JSON-lines trace, and resumption from the last checkpoint.

Run folder layout::

    config.yaml      the fully resolved configuration
    trace.jsonl      one line per epoch: loss, time, validation metrics when validated
    checkpoints/     last.pt (rolling, with optimiser and random state), best.pt (model only)
    metrics.json     written by the run once training ends (see vlkge.training.run)
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from vlkge.data.graph import KnowledgeGraph
from vlkge.data.index import TripleIndex
from vlkge.errors import ConfigError, VlkgeError
from vlkge.evaluation.evaluator import Evaluator
from vlkge.models.model import KGEModel
from vlkge.training.checkpoint import load_checkpoint, save_checkpoint
from vlkge.training.regimes import KvsAll, NegativeSampling, OneVsAll, Regime
from vlkge.training.sampler import NegativeSampler

log = logging.getLogger(__name__)


def show_progress(setting) -> bool:
    return sys.stderr.isatty() if setting == "auto" else bool(setting)


def relation_ids(kg: KnowledgeGraph, names, key: str) -> list[int]:
    """Ids of relation ``names`` given in config ``key``; an unknown name is a ConfigError."""
    unknown = [n for n in names if n not in kg.relation_index]
    if unknown:
        known = ", ".join(kg.relations[:12]) + (", ..." if kg.num_relations > 12 else "")
        raise ConfigError(
            f"{key}: unknown relation {unknown[0]!r} in dataset {kg.name} (known: {known})"
        )
    return [kg.relation_index[n] for n in names]


def build_regime(cfg: dict, kg: KnowledgeGraph) -> Regime:
    train_cfg = cfg["training"]
    regime, batch = train_cfg["regime"], train_cfg["batch_size"]
    fractions = train_cfg["subsample"]
    subsample = dict(
        zip(relation_ids(kg, fractions, "training.subsample"), fractions.values(), strict=True)
    )
    if regime == "negative_sampling":
        neg = train_cfg["negatives"]
        known = None
        # paper compatibility: the reference rejects negatives with its map of all splits
        splits = ["train", "valid", "test"] if cfg["compat"]["paper"] else neg["filter_splits"]
        splits = [s for s in splits if s in kg.splits]
        if splits:
            source = torch.cat([kg.splits[s] for s in splits])
            known = TripleIndex(source, kg.num_entities, kg.num_relations)
        pools = NegativeSampler.relation_pools(kg.train) if neg["pool"] == "relation" else None
        sampler = NegativeSampler(
            kg.num_entities, neg["num"], neg["side"], known, pools, neg["replacement"]
        )
        return NegativeSampling(
            kg.train,
            batch,
            sampler,
            train_cfg["loss"],
            train_cfg["adversarial_temperature"],
            subsample,
        )
    if regime == "1vsall":
        return OneVsAll(kg.train, batch, train_cfg["loss"], train_cfg["label_smoothing"], subsample)
    return KvsAll(
        kg.train,
        batch,
        kg.num_entities,
        kg.num_relations,
        train_cfg["loss"],
        train_cfg["label_smoothing"],
        subsample,
    )


def build_optimizer(cfg: dict, params) -> torch.optim.Optimizer:
    opt = cfg["training"]["optimizer"]
    cls = {"adagrad": torch.optim.Adagrad, "adam": torch.optim.Adam, "sgd": torch.optim.SGD}
    return cls[opt["name"]](params, lr=opt["lr"], weight_decay=opt["weight_decay"])


def regularization(cfg: dict, model: KGEModel, triples: torch.Tensor) -> torch.Tensor | None:
    """N3 (sum |x|^3) or L2 (sum x^2) of the batch's embeddings, divided by the batch size."""
    reg = cfg["training"]["regularizer"]
    if reg["name"] == "none" or reg["weight"] == 0:
        return None
    power = 3 if reg["name"] == "n3" else 2
    h, r, t = triples.unbind(-1)
    vectors = (model.entities(h), model.relations(r), model.entities(t))
    total = sum(v.abs().pow(power).sum() for v in vectors)
    return reg["weight"] * total / len(triples)


class Trainer:
    """Trains ``model`` on ``kg`` as configured, writing into ``run_dir``."""

    def __init__(
        self,
        cfg: dict,
        kg: KnowledgeGraph,
        model: KGEModel,
        run_dir: Path,
        evaluator: Evaluator | None = None,
    ):
        self.cfg, self.kg, self.model, self.run_dir = cfg, kg, model, Path(run_dir)
        self.regime = build_regime(cfg, kg)
        self.optimizer = build_optimizer(cfg, model.parameters())
        self.evaluator = evaluator
        self.generator = torch.Generator().manual_seed(cfg["seed"])
        self.epoch = 0
        self.best = {"metric": -math.inf, "epoch": 0}
        self.progress = show_progress(cfg["training"]["progress"])

    @property
    def last_path(self) -> Path:
        return self.run_dir / "checkpoints" / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.run_dir / "checkpoints" / "best.pt"

    # --- state -----------------------------------------------------------------------------
    def state(self) -> dict:
        return {
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "best": dict(self.best),
        }

    def resume(self) -> bool:
        """Continue from ``last.pt`` if the run folder has one; the trace is cut to match."""
        if not self.last_path.is_file():
            return False
        state = load_checkpoint(self.last_path)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self.epoch, self.best = state["epoch"], state["best"]
        trace = self.run_dir / "trace.jsonl"
        if trace.is_file():
            lines = [ln for ln in trace.read_text().splitlines() if ln.strip()]
            kept = [ln for ln in lines if json.loads(ln)["epoch"] <= self.epoch]
            trace.write_text("".join(f"{ln}\n" for ln in kept))
        log.info(
            "resuming from epoch %d (best %s %.4f at epoch %d)",
            self.epoch,
            self.cfg["validation"]["metric"],
            self.best["metric"],
            self.best["epoch"],
        )
        return True

    # --- loop ------------------------------------------------------------------------------
    def train_epoch(self) -> float:
        self.model.train()
        total, count = 0.0, 0
        batches = tqdm(
            self.regime.batches(self.generator),
            total=self.regime.num_batches(),
            desc=f"epoch {self.epoch + 1}",
            unit="batch",
            leave=False,
            disable=not self.progress,
        )
        for batch in batches:
            self.optimizer.zero_grad(set_to_none=True)
            loss, triples = self.regime.loss(self.model, batch, self.generator)
            reg = regularization(self.cfg, self.model, triples)
            if reg is not None:
                loss = loss + reg
            if not torch.isfinite(loss):
                raise VlkgeError(
                    f"non-finite loss ({float(loss)}) in epoch {self.epoch + 1}; stopped, the last "
                    f"good checkpoint is {self.last_path} (try a lower training.optimizer.lr)"
                )
            loss.backward()
            self.optimizer.step()
            total += loss.item() * len(batch)
            count += len(batch)
        return total / max(count, 1)

    def fit(self) -> dict:
        cfg_train, cfg_valid = self.cfg["training"], self.cfg["validation"]
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.resume()
        epochs, every = cfg_train["epochs"], cfg_valid["every"]
        patience, metric = cfg_valid["patience"], cfg_valid["metric"]
        validate = every > 0 and self.evaluator is not None
        with (
            open(self.run_dir / "trace.jsonl", "a", encoding="utf-8") as trace,
            tqdm(
                total=epochs,
                initial=self.epoch,
                desc="training",
                unit="epoch",
                disable=not self.progress,
            ) as bar,
        ):
            try:
                while self.epoch < epochs:
                    if validate and patience and self.epoch - self.best["epoch"] >= patience:
                        log.info(
                            "early stopping at epoch %d: no improvement for %d epochs",
                            self.epoch,
                            patience,
                        )
                        break
                    start = time.perf_counter()
                    loss = self.train_epoch()
                    self.epoch += 1
                    entry = {
                        "epoch": self.epoch,
                        "loss": loss,
                        "train_time": time.perf_counter() - start,
                    }
                    if validate and (self.epoch % every == 0 or self.epoch == epochs):
                        vstart = time.perf_counter()
                        result = self.evaluator.evaluate(self.model, cfg_valid["split"])["both"]
                        entry["valid"] = {k: v for k, v in result.items() if k != "count"}
                        entry["valid_time"] = time.perf_counter() - vstart
                        if result[metric] > self.best["metric"]:
                            self.best = {"metric": result[metric], "epoch": self.epoch}
                            save_checkpoint(
                                self.best_path,
                                {"epoch": self.epoch, "model": self.model.state_dict()},
                            )
                        log.info(
                            "epoch %d/%d  loss %.4f  valid %s %.4f  (best %.4f @ %d)  %.1fs",
                            self.epoch,
                            epochs,
                            loss,
                            metric,
                            result[metric],
                            self.best["metric"],
                            self.best["epoch"],
                            time.perf_counter() - start,
                        )
                    else:
                        log.debug("epoch %d/%d  loss %.4f", self.epoch, epochs, loss)
                    trace.write(json.dumps(entry) + "\n")
                    trace.flush()
                    ckpt_every = cfg_train["checkpoint_every"]
                    if ckpt_every and (self.epoch % ckpt_every == 0 or self.epoch == epochs):
                        save_checkpoint(self.last_path, self.state())
                    bar.set_postfix(loss=f"{loss:.4f}", best=f"{self.best['metric']:.4f}")
                    bar.update(1)
            except KeyboardInterrupt:
                # the in-memory state is mid-epoch; the last completed epoch is on disk
                done = load_checkpoint(self.last_path)["epoch"] if self.last_path.is_file() else 0
                raise VlkgeError(
                    f"interrupted during epoch {self.epoch + 1}; epochs up to {done} are saved, "
                    f"resume with `vlkge train --resume {self.run_dir}`"
                ) from None
        if not validate:  # no model selection: the final model is the selected one
            save_checkpoint(self.best_path, {"epoch": self.epoch, "model": self.model.state_dict()})
            self.best = {"metric": float("nan"), "epoch": self.epoch}
        save_checkpoint(self.last_path, self.state())
        return dict(self.best)
