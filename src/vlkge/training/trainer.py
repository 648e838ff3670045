"""The training loop: epochs of a regime, validation every k epochs, best checkpoint, early
stopping, a JSON-lines trace, and resumption from the last checkpoint.

Run folder layout::

    config.yaml      the fully resolved configuration
    trace.jsonl      one line per epoch: loss, time, validation metrics when validated
    checkpoints/     last.pt (rolling, with optimiser and random state), best.pt (model only)
    metrics.json     written by the run once training ends (see vlkge.training.run)

Checkpoints are written atomically, in the background while the next epoch runs
(:class:`vlkge.checkpoint.CheckpointWriter`), so a killed run resumes from the last one. Ctrl-C or
SIGTERM stops at the next batch boundary and saves ``last.pt`` there
(:mod:`vlkge.training.interrupt`); resuming is exact, mid-epoch included
(:meth:`Trainer.train_epoch`). A full disk stops the run in one line, the last checkpoint kept.
The regime and the optimiser are built from the config in :mod:`vlkge.training.build`; which
config changes a resume accepts is :mod:`vlkge.training.resume`.
"""

from __future__ import annotations

import logging
import math
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm.auto import tqdm

from vlkge import distributed
from vlkge.checkpoint import (
    RESUME_ENTRIES,
    CheckpointWriter,
    load_checkpoint,
    restore_model,
    restoring,
)
from vlkge.data.graph import KnowledgeGraph
from vlkge.errors import Interrupted, VlkgeError
from vlkge.evaluation.evaluator import Evaluator
from vlkge.files import DiskFull
from vlkge.models.model import KGEModel
from vlkge.precision import autocast, grad_scaler, model_device
from vlkge.runfolder import checkpoint_path
from vlkge.training import sharded
from vlkge.training.build import build_optimizer, build_regime
from vlkge.training.interrupt import StopRequest
from vlkge.training.losses import regularization
from vlkge.training.resume import check_resumable, check_same_layout
from vlkge.training.tracking import TensorBoardLog, append_trace, cut_trace

log = logging.getLogger(__name__)


def show_progress(setting) -> bool:
    return sys.stderr.isatty() if setting == "auto" else bool(setting)


#: called with each epoch's trace entry once its checkpoint is saved; True stops training there
EpochCallback = Callable[[dict], bool]


class Trainer:
    """Trains ``model`` on ``kg`` as configured, writing into ``run_dir``; ``on_epoch`` may stop
    the run after any epoch (a hyper-parameter search pruning it, docs/tuning.md)."""

    def __init__(
        self,
        cfg: dict,
        kg: KnowledgeGraph,
        model: KGEModel,
        run_dir: Path,
        evaluator: Evaluator | None = None,
        on_epoch: EpochCallback | None = None,
    ):
        self.started = time.perf_counter()  # this session's share of the training time
        self.earlier_time = 0.0  # the training time of the sessions before a resume
        self.cfg, self.kg, self.model, self.run_dir = cfg, kg, model, Path(run_dir)
        self.regime = build_regime(cfg, kg)
        self.rows = sharded.shard_for_training(cfg, model, self.regime)  # None: whole tables
        self.optimizer = build_optimizer(cfg, model)
        self.evaluator = evaluator
        self.on_epoch = on_epoch
        self.generator = torch.Generator().manual_seed(cfg["seed"])
        self.epoch = 0
        self.best = {"metric": -math.inf, "epoch": 0}
        self.main = distributed.is_main()
        self.progress = show_progress(cfg["training"]["progress"]) and self.main
        # the epoch in progress: generator state at its start, batches done, loss sums
        self.partial: dict | None = None
        self.interrupt = StopRequest()
        # data-parallel runs: this rank scores its share of each global batch (distributed.py)
        self.regime.rank, self.regime.world = distributed.rank(), distributed.world_size()
        self.device = self.regime.device = model_device(model)
        self.precision = cfg["precision"]
        self.scaler = grad_scaler(self.device, self.precision)
        self.writer = CheckpointWriter()

    @property
    def last_path(self) -> Path:
        return checkpoint_path(self.run_dir, "last")

    @property
    def best_path(self) -> Path:
        return checkpoint_path(self.run_dir, "best")

    def train_time(self) -> float:
        """Seconds spent training this run, over every session it was resumed in."""
        return self.earlier_time + time.perf_counter() - self.started

    # --- state -----------------------------------------------------------------------------
    def state(self) -> dict:
        """Everything a run needs to continue exactly: ``epoch`` completed epochs, model,
        optimiser, the generator that drives batching, subsampling and negative sampling (the
        sampler keeps no state of its own), torch's global generators (dropout), the best
        validation so far, ``partial``, the epoch in progress when Ctrl-C stopped it, the
        resolved config (a resume checks it) and the training time so far."""
        return {
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "best": dict(self.best),
            "partial": self.partial,
            "scaler": self.scaler.state_dict(),
            "config": self.cfg,
            "train_time": self.train_time(),
        }

    def resume(self) -> bool:
        """Continue from ``last.pt`` if the run folder has one; the trace is cut to match."""
        trace = self.run_dir / "trace.jsonl"
        if not self.last_path.is_file():
            if self.main:
                cut_trace(trace, 0)  # lines of an attempt stopped before its first checkpoint
            return False
        state = load_checkpoint(self.last_path, RESUME_ENTRIES)
        check_resumable(state.get("config"), self.cfg, self.last_path, self.run_dir)
        rows = sharded.restore(self.last_path, state, self.rows is not None)
        check_same_layout(state["model"], self.model, self.last_path)
        restore_model(self.model, state["model"], self.last_path)
        with restoring(self.last_path):
            self.optimizer.load_state_dict(state["optimizer"])
            if self.rows is not None:
                self.rows.load_state_dict(rows)
            self.generator.set_state(state["generator"])
            torch.set_rng_state(state["torch_rng"])
            if state.get("cuda_rng") is not None and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(state["cuda_rng"])
            if state.get("scaler"):
                self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.best = state["epoch"], state["best"]
        self.partial = state.get("partial")
        self.earlier_time = state.get("train_time", 0.0)
        if self.main:
            cut_trace(trace, self.epoch)
        log.info(
            "resuming after epoch %d%s (best %s %.4f at epoch %d)",
            self.epoch,
            f" and {self.partial['batches']} batches of the next" if self.partial else "",
            self.cfg["validation"]["metric"],
            self.best["metric"],
            self.best["epoch"],
        )
        return True

    # --- loop ------------------------------------------------------------------------------
    def train_epoch(self) -> float:
        """One epoch; returns its mean loss.

        Mid-epoch resumption (a checkpoint written at Ctrl-C) is exact without storing the
        epoch's batch order: ``partial`` holds the generator state at the epoch's start, the
        number of batches done and the loss summed so far. Resuming restores that state and
        replays the epoch's batch iterator over the batches done (redrawing the subsample and
        permutation, computing no loss), then restores the generator to where the interrupted
        run stopped, so the remaining batches, their negatives and the epoch's mean loss are
        those of an uninterrupted run.
        """
        self.model.train()
        partial, stopped_at = self.partial, None
        if partial is None:
            partial = {"generator": self.generator.get_state(), "batches": 0, "loss": 0.0, "n": 0}
            self.partial = partial
        else:
            stopped_at = self.generator.get_state()
            self.generator.set_state(partial["generator"])
        batches = iter(self.regime.batches(self.generator))
        for _ in range(partial["batches"]):
            next(batches)
        if stopped_at is not None:
            self.generator.set_state(stopped_at)
        batches = tqdm(
            batches,
            total=self.regime.num_batches(),
            initial=partial["batches"],
            desc=f"epoch {self.epoch + 1}",
            unit="batch",
            leave=False,
            disable=not self.progress,
        )
        for batch in batches:
            self.optimizer.zero_grad(set_to_none=True)
            loss = self._batch_loss(batch)
            if loss.requires_grad:
                self.scaler.scale(loss).backward()
            loss = distributed.all_reduce_gradients(self.model, loss)  # the global batch's
            value = loss.item()  # the step's one wait for a GPU: the check and the trace share it
            if not math.isfinite(value):
                raise VlkgeError(
                    f"non-finite loss ({value}) in epoch {self.epoch + 1}, batch "
                    f"{partial['batches'] + 1}; stopped. {self._saved()} (start a new run with "
                    "a lower training.optimizer.lr)"
                )
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if self.rows is not None:
                self.rows.step()
            partial["loss"] += value * len(batch)
            partial["n"] += len(batch)
            partial["batches"] += 1
            self.interrupt.check()
        self.partial = None
        return partial["loss"] / max(partial["n"], 1)

    def _batch_loss(self, batch: torch.Tensor) -> torch.Tensor:
        """This rank's loss on its rows of the global ``batch``, regulariser included, weighted
        by its share of the batch (1 on a single process) so that the ranks' gradients sum to
        the global batch's; zero for a rank left without rows."""
        with autocast(self.device, self.precision):
            loss, triples = self.regime.loss(self.model, batch, self.generator)
            if loss is None and self.rows is None:
                return torch.zeros((), device=self.device)
            if loss is None:  # sharded tables: the regulariser's fetches are collectives
                loss = torch.zeros((), device=self.device)
            reg = regularization(self.cfg, self.model, triples)
            if reg is not None:
                loss = loss + reg
        if self.regime.world == 1:
            return loss
        if self.regime.whole_batch:  # every rank scored every row (shard_losses.LOSSES)
            return loss / self.regime.world
        return loss * (len(triples) / len(batch))

    def _saved(self) -> str:
        """What the last checkpoint on disk holds, for messages about a stopped run."""
        self.writer.settle()
        if not self.last_path.is_file():
            return "No checkpoint was written yet"
        done = load_checkpoint(self.last_path, {"epoch": int})["epoch"]
        return f"The last good checkpoint, after epoch {done}, is kept: {self.last_path}"

    def _interrupted(self) -> Interrupted:
        """Save what a Ctrl-C or SIGTERM stopped (unless a second signal left it
        inconsistent)."""
        resume = f"resume with `vlkge train --resume {self.run_dir}`"
        signum = self.interrupt.signum or signal.SIGINT
        if not self.interrupt.requested or self.interrupt.forced:
            return Interrupted(
                f"stopped at once in epoch {self.epoch + 1}. {self._saved()}; {resume}", signum
            )
        self._save(self.last_path, self.state())
        self.writer.wait()
        where = (
            f"in epoch {self.epoch + 1} after {self.partial['batches']} of "
            f"{self.regime.num_batches()} batches"
            if self.partial
            else f"after epoch {self.epoch}"
        )
        return Interrupted(
            f"stopped {where}; checkpoint saved to {self.last_path}; {resume}", signum
        )

    def fit(self) -> dict:
        """Train (resuming from ``last.pt`` when there is one) and return the best validation;
        a full disk stops in one line that says which checkpoint is kept."""
        try:
            return self._fit()
        except DiskFull as exc:
            raise VlkgeError(
                f"{exc}. {self._saved()}; free some space, then resume with "
                f"`vlkge train --resume {self.run_dir}`"
            ) from None

    def _fit(self) -> dict:
        cfg_train, cfg_valid = self.cfg["training"], self.cfg["validation"]
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.resume()
        epochs, every = cfg_train["epochs"], cfg_valid["every"]
        patience, metric = cfg_valid["patience"], cfg_valid["metric"]
        validate = every > 0 and self.evaluator is not None
        trace = self.run_dir / "trace.jsonl"
        with (
            TensorBoardLog(
                self.run_dir,
                self.cfg["tracking"]["tensorboard"] if self.main else False,
                self.epoch + 1,
            ) as board,
            tqdm(
                total=epochs,
                initial=self.epoch,
                desc="training",
                unit="epoch",
                disable=not self.progress,
            ) as bar,
        ):
            self.interrupt.install()
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
                        result = self._validate(cfg_valid["split"])
                        entry["valid"] = {k: v for k, v in result.items() if k != "count"}
                        entry["valid_time"] = time.perf_counter() - vstart
                        if result[metric] > self.best["metric"]:
                            self.best = {"metric": result[metric], "epoch": self.epoch}
                            self._save(
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
                        log.info(
                            "epoch %d/%d  loss %.4f  %.1fs",
                            self.epoch,
                            epochs,
                            loss,
                            entry["train_time"],
                        )
                    if self.main:  # in a data-parallel run only rank 0 writes the run folder
                        append_trace(trace, entry)
                    board.log(entry)
                    ckpt_every = cfg_train["checkpoint_every"]
                    if ckpt_every and (self.epoch % ckpt_every == 0 or self.epoch == epochs):
                        self._save(self.last_path, self.state())
                    bar.set_postfix(loss=f"{loss:.4f}", best=f"{self.best['metric']:.4f}")
                    bar.update(1)
                    self.interrupt.check()
                    if self.on_epoch is not None:
                        self.writer.wait()  # the caller may read the run folder
                        if self.on_epoch(entry):
                            log.info("stopped after epoch %d by the caller", self.epoch)
                            break
            except KeyboardInterrupt:
                raise self._interrupted() from None
            finally:
                self.interrupt.restore()
        if not validate:  # no model selection: the final model is the selected one
            self.best = {"metric": float("nan"), "epoch": self.epoch}
        if not validate:
            self._save(self.best_path, {"epoch": self.epoch, "model": self.model.state_dict()})
        self._save(self.last_path, self.state())
        self.writer.wait()
        distributed.barrier()  # the other ranks read best.pt next
        return dict(self.best)

    def _save(self, path: Path, payload: dict) -> None:
        """Rank 0 writes ``path`` in the background (:class:`vlkge.checkpoint.CheckpointWriter`);
        with sharded tables every rank writes its shard beside the manifest, at once
        (:func:`vlkge.training.sharded.save`)."""
        if self.rows is not None:
            sharded.save(path, payload, self.rows)
        elif self.main:
            self.writer.submit(path, payload)

    def _validate(self, split: str) -> dict:
        """Rank 0 evaluates ``split`` (``"both"`` metrics); in a data-parallel run the other
        ranks receive its result, so they take the same best-epoch and early-stopping
        decisions. With sharded tables every rank ranks against its own entities and the
        counts are summed (:mod:`vlkge.evaluation.ranking`)."""
        result = None
        if self.main or self.rows is not None:
            result = self.evaluator.evaluate(self.model, split, progress=self.progress)["both"]
        return distributed.broadcast_object(result)
