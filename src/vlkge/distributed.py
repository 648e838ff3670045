"""Runs under ``torchrun``: one process per rank, for training (gradients summed across ranks)
and for sharded encoding (:mod:`vlkge.encoders.sharded`), hence its place below both.

``torchrun`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``;
with ``WORLD_SIZE > 1`` a run joins the process group (NCCL on CUDA devices, gloo on CPU).

Why the ranks agree with a single process: every rank keeps the run's seed, so each draws the
same epoch permutation and the same negatives for the whole global batch (cheap next to
scoring), then scores only its rows ``rank::world`` of that batch. Its loss is weighted by its
share of the global batch, so the sum of the ranks' gradients (:func:`all_reduce_gradients`) is
the one-process gradient of the global batch and every rank takes the same optimiser step.
Gradients are summed by hand over ``model.parameters()`` rather than through
``DistributedDataParallel`` because the regimes call pieces of the model, not ``forward``.
Rank 0 alone evaluates and writes the run folder; the others wait for its decisions
(:func:`broadcast_object`).
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
from collections.abc import Iterator

import torch
import torch.distributed as dist

from vlkge.errors import VlkgeError

log = logging.getLogger(__name__)


def launched() -> bool:
    """Whether this process is one of several started by ``torchrun``."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank (torchrun's ``RANK`` before the group is joined and after it is
    left; 0 for a single process)."""
    if active():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0")) if launched() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if active():
        dist.barrier()


def broadcast_object(value):
    """Rank 0's ``value`` on every rank (any picklable object)."""
    if not active():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_reduce_gradients(model: torch.nn.Module, loss: torch.Tensor) -> torch.Tensor:
    """Sum every trainable parameter's gradient and the (weighted) ``loss`` over the ranks.

    A parameter without a gradient on this rank (its rows took no part) contributes zeros, so
    every rank ends with the same gradients. Returns the summed loss: the global batch's loss.
    """
    if not active():
        return loss.detach()
    for param in model.parameters():
        if not param.requires_grad:
            continue
        if param.grad is None:
            param.grad = torch.zeros_like(param)
        dist.all_reduce(param.grad, op=dist.ReduceOp.SUM)
    total = loss.detach().reshape(1).to(next(model.parameters()).device, torch.float32).clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total[0]


def exchange(rows: torch.Tensor, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """All-to-all: send ``rows`` (grouped by destination rank, ``counts[k]`` rows to rank k)
    and return the rows received (grouped by source rank) with their counts per source.
    One collective for the counts, one for the rows; every rank must call it."""
    received = torch.empty_like(counts)
    dist.all_to_all_single(received, counts)
    out = rows.new_empty((int(received.sum()), *rows.shape[1:]))
    dist.all_to_all_single(out, rows, received.tolist(), counts.tolist())
    return out, received


def all_reduce(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """``tensor`` reduced over the ranks (``sum`` or ``max``), in place, without gradient."""
    if active():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
    return tensor


def any_rank(flag: bool) -> bool:
    """Whether ``flag`` is true on any rank (every rank must call it)."""
    if not active():
        return flag
    device = (
        torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
    )
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    return bool(all_reduce(value, "max").item())


def device_for_rank(device: torch.device) -> torch.device:
    """One GPU per local rank when the run asks for CUDA; CPU stays CPU."""
    if device.type != "cuda" or not launched():
        return device
    chosen = torch.device("cuda", local_rank())
    torch.cuda.set_device(chosen)
    return chosen


@contextlib.contextmanager
def session(device: torch.device) -> Iterator[None]:
    """Join the ``torchrun`` process group for the duration of a run (nothing when not
    launched by torchrun, or when a group is already up). Ranks other than 0 log warnings
    only, so that a run prints its progress once."""
    if not launched() or active():
        yield
        return
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise VlkgeError(
            f"WORLD_SIZE > 1 but {', '.join(missing)} is not set: launch with torchrun"
        )
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
    vlkge_log = logging.getLogger("vlkge")
    level = vlkge_log.level
    if not is_main():
        vlkge_log.setLevel(logging.WARNING)
    log.info("distributed: %d ranks (%s)", world_size(), backend)
    try:
        yield
    finally:
        vlkge_log.setLevel(level)
        dist.destroy_process_group()
