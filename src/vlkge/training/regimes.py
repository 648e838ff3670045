"""Training regimes: how an epoch is cut into batches and how a batch becomes a loss.

- ``negative_sampling`` (the paper's): each positive against N sampled corruptions;
- ``1vsall``: each (query, answer) pair scored against every entity;
- ``kvsall``: each distinct query against every entity with all its training answers as targets.

Queries are ``(side, anchor, relation)`` rows: ``side`` 1 for tail queries ``(anchor, r, ?)``
and 0 for head queries ``(?, r, anchor)``. With a reciprocal model, head queries are turned into
tail queries of the inverse relation inside the model.

Every regime can subsample relations per epoch (``training.subsample``): for a relation r with
fraction f, each epoch keeps round(f * n_r) of r's n_r examples (at least one when f > 0), a
fresh uniform draw without replacement from the run's generator, so a run is repeatable and a
resumed run draws what the uninterrupted one would have.

Data-parallel runs (:mod:`vlkge.distributed`) set ``rank`` and ``world``: every rank
draws the whole global batch's randomness, then scores only its rows ``rank::world``
(:meth:`Regime.local`); a rank left without rows gets a ``None`` loss.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F

from vlkge.data.index import TripleIndex
from vlkge.models.model import KGEModel
from vlkge.training import losses, shard_losses
from vlkge.training.sampler import NegativeSampler


def _shuffled_batches(
    rows: torch.Tensor, batch_size: int, generator: torch.Generator
) -> Iterator[torch.Tensor]:
    order = torch.randperm(len(rows), generator=generator)
    yield from (rows[idx] for idx in order.split(batch_size))


def _by_side(
    model: KGEModel,
    queries: torch.Tensor,
    candidates: torch.Tensor | None = None,
    table: torch.Tensor | None = None,
):
    """Scores of ``[B, 3]`` queries (side, anchor, relation) against all entities or per-row
    candidates, both sides in one call (:meth:`KGEModel.score_sides`). The entity table (a
    fusion of features for multimodal models) is computed once, or passed in when the caller
    already has it."""
    table = model.entities() if table is None else table
    anchors = F.embedding(queries[:, 1], table)  # its backward is far cheaper than indexing's
    return model.score_sides(queries[:, 0] == 1, anchors, queries[:, 2], table, candidates)


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    if tensor.device == device:
        return tensor
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


class Regime:
    """One epoch's batches and their loss.

    ``subsample`` maps relation ids to the fraction of their examples kept per epoch.
    """

    relation_column = 1  # the column of an example that holds its relation
    rank, world = 0, 1  # this process's share of each global batch (data-parallel runs)
    device = torch.device("cpu")  # where the model is: batches are moved there
    #: the entities ``lo <= id < hi`` whose table rows this rank holds when the model's
    #: tables are sharded (:mod:`vlkge.models.sharded`); ``None``: every rank has them all
    shard: tuple[int, int] | None = None

    @property
    def whole_batch(self) -> bool:
        """Whether each rank scores the whole global batch (against its entity shard) rather
        than its rows ``rank::world`` (against every entity)."""
        return False

    def __init__(
        self, train: torch.Tensor, batch_size: int, subsample: dict[int, float] | None = None
    ):
        self.train = train
        self.batch_size = batch_size
        self.subsample = {int(r): float(f) for r, f in (subsample or {}).items() if f < 1.0}
        self._plan: tuple[torch.Tensor, list[tuple[torch.Tensor, int]]] | None = None

    def num_batches(self) -> int:
        return -(-self.epoch_size() // self.batch_size)

    def examples(self) -> torch.Tensor:
        return self.train

    def _subsample_plan(self) -> tuple[torch.Tensor, list[tuple[torch.Tensor, int]]]:
        """Indices of the examples always kept, and per subsampled relation its example
        indices with the number kept per epoch."""
        if self._plan is None:
            relation = self.examples()[:, self.relation_column]
            sampled = torch.tensor(sorted(self.subsample), dtype=relation.dtype)
            kept = (~torch.isin(relation, sampled)).nonzero().squeeze(1)
            groups = []
            for rel, fraction in sorted(self.subsample.items()):
                rows = (relation == rel).nonzero().squeeze(1)
                count = int(fraction * len(rows) + 0.5)
                if fraction > 0 and len(rows):
                    count = max(count, 1)
                if count:
                    groups.append((rows, count))
            self._plan = (kept, groups)
        return self._plan

    def epoch_size(self) -> int:
        """Examples per epoch after subsampling."""
        if not self.subsample:
            return len(self.examples())
        kept, groups = self._subsample_plan()
        return len(kept) + sum(count for _, count in groups)

    def epoch_examples(self, generator: torch.Generator) -> torch.Tensor:
        """This epoch's examples (unshuffled): all of them, or a fresh subsample."""
        rows = self.examples()
        if not self.subsample:
            return rows
        kept, groups = self._subsample_plan()
        picks = [idx[torch.randperm(len(idx), generator=generator)[:k]] for idx, k in groups]
        return rows[torch.cat([kept, *picks])]

    def batches(self, generator: torch.Generator) -> Iterator[torch.Tensor]:
        return _shuffled_batches(self.epoch_examples(generator), self.batch_size, generator)

    def local(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """This rank's rows of each global-batch tensor, on the model's device (copied from
        pinned memory without blocking on CUDA)."""
        if self.world > 1:
            tensors = tuple(t[self.rank :: self.world] for t in tensors)
        return tuple(to_device(t, self.device) for t in tensors)

    def loss(self, model: KGEModel, batch: torch.Tensor, generator: torch.Generator):
        """This rank's loss (mean over its rows of the global ``batch``; ``None`` when it has
        none) and the ``[b, 3]`` triples whose embeddings a regulariser sees."""
        raise NotImplementedError


class NegativeSampling(Regime):
    LOSSES = ("logistic", "self_adversarial")  #: the ``training.loss`` values it computes

    def __init__(
        self,
        train: torch.Tensor,
        batch_size: int,
        sampler: NegativeSampler,
        loss: str = "logistic",
        temperature: float = 1.0,
        subsample: dict[int, float] | None = None,
    ):
        super().__init__(train, batch_size, subsample)
        self.sampler, self.loss_name, self.temperature = sampler, loss, temperature

    def loss(self, model, batch, generator):
        if self.sampler.device != self.device:  # once: sample where the model scores
            self.sampler = self.sampler.to(self.device)
        batch = to_device(batch, self.device)  # the global batch: every rank draws the same
        corrupt_head, negatives = self.sampler.sample(batch, generator)
        batch, corrupt_head, negatives = self.local(batch, corrupt_head, negatives)
        if self.shard is None:
            # once per batch: positives and negatives share it
            table, ids, candidates = model.entities(), batch, negatives
        else:  # sharded tables: only the rows of this batch, fetched from their owners
            table, ids, candidates = _compact(model, batch, negatives)
        if not len(batch):
            return None, batch
        pos, neg = model.score_corruptions(ids, corrupt_head, candidates, table)
        if self.loss_name == "self_adversarial":
            return losses.self_adversarial(pos, neg, self.temperature), batch
        return losses.logistic(pos, neg), batch


def _compact(model: KGEModel, triples: torch.Tensor, negatives: torch.Tensor):
    """The vectors of the entities that ``triples`` and ``negatives`` name, and both with
    entity ids replaced by rows of those vectors."""
    needed = torch.cat([triples[:, 0], triples[:, 2], negatives.reshape(-1)])
    unique, inverse = torch.unique(needed, return_inverse=True)
    n = len(triples)
    ids = torch.stack([inverse[:n], triples[:, 1], inverse[n : 2 * n]], dim=1)
    return model.entities(unique), ids, inverse[2 * n :].view_as(negatives)


def _shard_scores(model: KGEModel, queries: torch.Tensor, shard: tuple[int, int]):
    """Scores ``[B, hi - lo]`` of ``[B, 3]`` queries against this rank's entities."""
    anchors = model.entities(queries[:, 1])
    pool = model.entities(torch.arange(*shard, device=queries.device))
    return model.score_sides(queries[:, 0] == 1, anchors, queries[:, 2], pool)


def _queries(train: torch.Tensor) -> torch.Tensor:
    """Tail queries then head queries of every training triple: ``[2n, 4]`` (side, anchor,
    relation, answer)."""
    h, r, t = train.unbind(-1)
    tails = torch.stack([torch.ones_like(h), h, r, t], dim=1)
    heads = torch.stack([torch.zeros_like(h), t, r, h], dim=1)
    return torch.cat([tails, heads])


def _as_triples(rows: torch.Tensor) -> torch.Tensor:
    side, anchor, relation, answer = rows.unbind(-1)
    tail = side == 1
    return torch.stack(
        [torch.where(tail, anchor, answer), relation, torch.where(tail, answer, anchor)], dim=1
    )


class OneVsAll(Regime):
    LOSSES = ("bce", "ce")

    """Every (query, answer) pair of both sides is one example scored against all entities."""

    relation_column = 2

    def __init__(self, train, batch_size, loss: str = "ce", smoothing: float = 0.0, subsample=None):
        super().__init__(train, batch_size, subsample)
        self.rows = _queries(train)
        self.loss_name, self.smoothing = loss, smoothing

    def examples(self):
        return self.rows

    @property
    def whole_batch(self) -> bool:
        return self.shard is not None

    def loss(self, model, batch, generator):
        if self.shard is not None:
            batch = to_device(batch, self.device)
            scores = _shard_scores(model, batch[:, :3], self.shard)
            rows, cols = shard_losses.inside(batch[:, 3], self.shard)
            weights = torch.ones(len(rows), device=scores.device)
            loss = shard_losses.LOSSES[self.loss_name](scores, rows, cols, weights, self.smoothing)
            return loss, _as_triples(batch)
        (batch,) = self.local(batch)
        if not len(batch):
            model.entities()  # keeps the ranks' structural-dropout draws in step
            return None, _as_triples(batch)
        scores = _by_side(model, batch[:, :3])
        answers = batch[:, 3]
        if self.loss_name == "ce":
            loss = losses.cross_entropy(scores, answers, self.smoothing)
        else:
            targets = torch.zeros_like(scores)
            targets[torch.arange(len(batch), device=scores.device), answers] = 1.0
            loss = losses.bce(scores, targets, self.smoothing)
        return loss, _as_triples(batch)


class KvsAll(Regime):
    LOSSES = ("bce", "ce")

    """Every distinct query of both sides, with all its training answers as targets."""

    relation_column = 2

    def __init__(
        self,
        train,
        batch_size,
        num_entities: int,
        num_relations: int,
        loss: str = "bce",
        smoothing: float = 0.0,
        subsample=None,
    ):
        super().__init__(train, batch_size, subsample)
        self.index = TripleIndex(train, num_entities, num_relations)
        queries = _queries(train)[:, :3]
        self.rows = torch.unique(queries, dim=0)
        self.loss_name, self.smoothing = loss, smoothing

    def examples(self):
        return self.rows

    @property
    def whole_batch(self) -> bool:
        return self.shard is not None

    def _sharded_loss(self, model, batch):
        """Every query of the global batch against this rank's entities; the loss combined
        exactly across ranks (:mod:`vlkge.training.sharded`)."""
        scores = _shard_scores(model, to_device(batch, self.device), self.shard)
        rows, cols = self._answers(batch)
        # one representative answer per query for the regulariser: its smallest
        first = torch.zeros(len(batch), dtype=torch.long)
        first = first.scatter_reduce(0, rows, cols, "amin", include_self=False)
        weights = (1.0 / torch.bincount(rows, minlength=len(batch)).clamp_min(1))[rows]
        kept, cols = shard_losses.inside(cols, self.shard)
        rows, weights = rows[kept], weights[kept]
        rows, cols, weights = (to_device(t, self.device) for t in (rows, cols, weights))
        loss = shard_losses.LOSSES[self.loss_name](scores, rows, cols, weights, self.smoothing)
        triples = _as_triples(torch.cat([batch, first.unsqueeze(1)], dim=1))
        return loss, to_device(triples, self.device)

    def _answers(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The known training answers of CPU queries ``batch``: ``(row, entity)`` pairs."""
        rows, cols = [], []
        for side_flag, side in ((1, "tail"), (0, "head")):
            picked = (batch[:, 0] == side_flag).nonzero().squeeze(1)
            hit_rows, hit_cols = self.index.known(side, batch[picked, 1], batch[picked, 2])
            rows.append(picked[hit_rows])
            cols.append(hit_cols)
        return torch.cat(rows), torch.cat(cols)

    def loss(self, model, batch, generator):
        if self.shard is not None:
            return self._sharded_loss(model, batch)
        (batch,) = self.local(batch)
        if not len(batch):
            model.entities()  # keeps the ranks' structural-dropout draws in step
            return None, batch[:, :3]
        scores = _by_side(model, batch)
        targets = torch.zeros_like(scores)
        rows_cpu = batch.cpu()  # the index of known answers lives on the CPU
        for side_flag, side in ((1, "tail"), (0, "head")):
            rows = (rows_cpu[:, 0] == side_flag).nonzero().squeeze(1)
            hit_rows, hit_cols = self.index.known(side, rows_cpu[rows, 1], rows_cpu[rows, 2])
            targets[to_device(rows[hit_rows], self.device), to_device(hit_cols, self.device)] = 1.0
        if self.loss_name == "ce":
            loss = losses.cross_entropy(scores, targets, self.smoothing)
        else:
            loss = losses.bce(scores, targets, self.smoothing)
        # one representative answer per query for the regulariser
        first = torch.zeros(len(batch), dtype=torch.long, device=batch.device)
        nz = targets.nonzero()
        first[nz[:, 0].flip(0)] = nz[:, 1].flip(0)
        return loss, _as_triples(torch.cat([batch, first.unsqueeze(1)], dim=1))


#: ``training.regime`` -> its class; each names the losses it computes in ``LOSSES``
REGIMES: dict[str, type[Regime]] = {
    "negative_sampling": NegativeSampling,
    "1vsall": OneVsAll,
    "kvsall": KvsAll,
}
