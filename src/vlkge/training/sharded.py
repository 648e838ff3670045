"""Training with entity tables sharded across ranks (``distributed.shard_tables``,
:mod:`vlkge.models.sharded`, docs/scaling.md, "Sharded entity tables").

- :class:`ShardedRows`, the optimiser of the sharded tables: after backward, each fetch's row
  gradients go back to the rows' owners (all-to-all); each owner sums what it receives and
  updates its rows exactly as the dense ``torch.optim`` step would: Adagrad and SGD only the
  rows received (a row without gradient is left unchanged by both when ``weight_decay`` is 0),
  Adam every row of the shard (its moments move a row without gradient too).
- One checkpoint file per shard beside a manifest (:func:`save`, :func:`restore`).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from vlkge import distributed
from vlkge.checkpoint import (
    MODEL_ENTRIES,
    load_checkpoint,
    restore_model,
    save_checkpoint,
    shard_file,
)
from vlkge.errors import ConfigError, VlkgeError
from vlkge.models.sharded import entity_shard, shard_model, sharded_tables
from vlkge.training.regimes import Regime

#: torch.optim.Adagrad's defaults that the row update reproduces
ADAGRAD_EPS = 1e-10
#: per ``training.optimizer.name`` (every one of vlkge.training.build.OPTIMIZERS), the
#: optimiser state of each table: Adagrad's sum of squares, Adam's two moments
SLOTS = {"adagrad": ("sum",), "adam": ("exp_avg", "exp_avg_sq"), "sgd": ()}
#: torch.optim.Adam's defaults that the shard update reproduces
ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8


def check_shardable(cfg: dict) -> None:
    """One line for a config whose training cannot shard its tables exactly."""
    opt = cfg["training"]["optimizer"]
    if opt["weight_decay"]:
        raise ConfigError(
            "distributed.shard_tables needs training.optimizer.weight_decay: 0 (decay would "
            "change every row at every step; use training.regularizer)"
        )
    for key in ("calibration", "zero_shot_blend", "lexical_blend"):
        if cfg["evaluation"][key]["weights"]:
            raise ConfigError(f"distributed.shard_tables does not support evaluation.{key}")
    if cfg["evaluation"]["run_blend"]["run"]:
        raise ConfigError("distributed.shard_tables does not support evaluation.run_blend")
    if cfg["precision"] == "fp16":
        raise ConfigError("distributed.shard_tables supports precision fp32 and bf16, not fp16")


def shard_of(cfg: dict) -> tuple[int, int] | None:
    """``(rank, world)`` when the run's tables are sharded: ``distributed.shard_tables`` under
    torchrun with several ranks (checked: :func:`check_shardable`); ``None`` otherwise."""
    if not (cfg["distributed"]["shard_tables"] and distributed.world_size() > 1):
        return None
    check_shardable(cfg)
    return distributed.rank(), distributed.world_size()


def shard_if_asked(cfg: dict, model: torch.nn.Module) -> bool:
    """Under torchrun with ``distributed.shard_tables``: keep only this rank's rows of the
    model's entity tables, unless the model was built sharded (:func:`vlkge.training.setup.
    prepare`; once, before the model moves to its device, so that the device only ever holds
    them). Whether the run's tables are sharded."""
    shard = shard_of(cfg)
    if shard is not None and entity_shard(model) is None:
        shard_model(model, *shard)
    return shard is not None


def shard_for_training(cfg: dict, model: torch.nn.Module, regime: Regime) -> ShardedRows | None:
    """The optimiser of this rank's rows, ``regime`` told which entities they are, when the
    run's tables are sharded (:func:`shard_if_asked`); ``None`` otherwise."""
    if not shard_if_asked(cfg, model):
        return None
    regime.shard = entity_shard(model)
    opt = cfg["training"]["optimizer"]
    return ShardedRows(model, opt["name"], opt["lr"])


class ShardedRows:
    """Adagrad, SGD or Adam over the model's sharded tables (see the module docstring): each
    equal to one process's ``torch.optim`` optimiser over the whole table (``weight_decay``
    0, the other arguments torch's defaults)."""

    def __init__(self, model: torch.nn.Module, name: str, lr: float):
        self.tables = dict(sharded_tables(model))
        self.name, self.lr = name, lr
        slots = SLOTS[name]
        self.state = {
            _slot(key, slot): torch.zeros_like(table.weight)
            for key, table in self.tables.items()
            for slot in slots
        }
        if name == "adam":
            self.state["step"] = torch.zeros(())

    @torch.no_grad()
    def step(self) -> None:
        """Send every fetched row's gradient to its owner, then update the rows received."""
        for key, table in self.tables.items():
            served, grads = [], []
            for fetched in table.fetched:
                grad = fetched.rows.grad
                grad = torch.zeros_like(fetched.rows) if grad is None else grad
                received, _ = distributed.exchange(grad.contiguous(), fetched.counts)
                served.append(fetched.served)
                grads.append(received)
            table.fetched.clear()
            rows = torch.cat(served) - table.lo if served else None
            grads = torch.cat(grads) if served else None
            if self.name == "adam":  # every row moves, with a gradient or not
                self._adam(key, table.weight, rows, grads)
            elif rows is not None:
                self._update(key, table.weight, rows, grads)
        if self.name == "adam":
            self.state["step"] += 1

    def _update(self, key: str, weight: torch.Tensor, rows: torch.Tensor, grads: torch.Tensor):
        rows, inverse = torch.unique(rows, return_inverse=True)
        grad = grads.new_zeros(len(rows), grads.shape[1]).index_add_(0, inverse, grads)
        values = weight[rows]
        if self.name == "sgd":
            weight[rows] = values.add_(grad, alpha=-self.lr)
            return
        # torch.optim.Adagrad, lr_decay 0, initial accumulator 0, weight_decay 0
        total = self.state[_slot(key, "sum")][rows].addcmul_(grad, grad, value=1)
        self.state[_slot(key, "sum")][rows] = total
        weight[rows] = values.addcdiv_(grad, total.sqrt().add_(ADAGRAD_EPS), value=-self.lr)

    def _adam(self, key: str, weight: torch.Tensor, rows, grads) -> None:
        """torch.optim.Adam (betas and eps its defaults, no amsgrad) over every row of the
        shard: rows without a gradient this step (all of them when ``rows`` is ``None``) still
        move by their first moment, as the whole table's do in one process, whose gradient is
        dense."""
        grad = torch.zeros_like(weight)
        if rows is not None:
            grad.index_add_(0, rows, grads)
        (beta1, beta2), step = ADAM_BETAS, float(self.state["step"]) + 1
        exp_avg, exp_avg_sq = (
            self.state[_slot(key, "exp_avg")],
            self.state[_slot(key, "exp_avg_sq")],
        )
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = (exp_avg_sq.sqrt() / math.sqrt(1 - beta2**step)).add_(ADAM_EPS)
        weight.addcdiv_(exp_avg, denom, value=-self.lr / (1 - beta1**step))

    def state_dict(self) -> dict:
        return dict(self.state)

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            self.state[key].copy_(value)


def _slot(table: str, slot: str) -> str:
    """The checkpoint key of one table's optimiser state (Adagrad's sums keep the table's
    own name, as checkpoints written before Adam was supported have them)."""
    return table if slot == "sum" else f"{table}.{slot}"


def save(path: Path, payload: dict, rows: ShardedRows) -> None:
    """Every rank writes its tables' rows and their optimiser state to a file of its own,
    then rank 0 the manifest ``path``, the rest of ``payload`` naming the shard files. Shard
    files carry the payload's epoch (and batch) in their names and the previous ones are
    removed only after the manifest is replaced, so a run killed at any moment leaves a
    manifest whose shards are all on disk."""
    rank, world = distributed.rank(), distributed.world_size()
    keys = sorted(f"{prefix}.weight" for prefix in rows.tables)
    partial = payload.get("partial")
    tag = f"e{payload['epoch']}" + (f"b{partial['batches']}" if partial else "")
    model = payload["model"]
    mine = shard_file(path, tag, rank, world)
    save_checkpoint(
        mine,
        {"model": {k: model[k] for k in keys}, "optimizer": rows.state_dict(), "rank": rank},
    )
    distributed.barrier()
    if distributed.is_main():
        manifest = {**payload, "model": {k: v for k, v in model.items() if k not in keys}}
        manifest["shards"] = {
            "world": world,
            "keys": keys,
            "files": [shard_file(path, tag, k, world).name for k in range(world)],
        }
        save_checkpoint(path, manifest)
    distributed.barrier()
    for old in path.parent.glob(shard_file(path, "*", rank, world).name):
        if old != mine:
            old.unlink(missing_ok=True)


def restore(path: Path, state: dict, sharded: bool) -> dict | None:
    """Merge this rank's rows into ``state`` (read from the manifest ``path``) and return their
    optimiser state; a checkpoint written by another number of ranks (or with the tables
    whole when they are sharded now, or the reverse) is refused in one line."""
    world = distributed.world_size() if sharded else 1
    saved = state.get("shards", {}).get("world", 1)
    if saved != world or sharded != ("shards" in state):
        how = f"{saved} ranks with sharded tables" if "shards" in state else "whole tables"
        raise VlkgeError(
            f"{path}: written by a run with {how}; resume it the same way (torchrun "
            f"--nproc_per_node {saved}{' and distributed.shard_tables' if saved > 1 else ''})"
        )
    if not sharded:
        return None
    name = state["shards"]["files"][distributed.rank()]
    shard = load_checkpoint(path.parent / name, {"model": dict, "optimizer": dict})
    state["model"].update(shard["model"])
    return shard["optimizer"]


def restore_best(path: Path, model: torch.nn.Module) -> None:
    """Load this rank's rows of the sharded checkpoint ``path`` (and the replicated rest)."""
    state = load_checkpoint(path, MODEL_ENTRIES)
    restore(path, state, sharded=True)
    restore_model(model, state["model"], path)
