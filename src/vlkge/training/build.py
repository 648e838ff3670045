"""Build the parts of training from the resolved configuration: the regime (with its negative
sampler and subsampling) and the optimiser (docs/method.md, "Training"). The config dict stops
here; the regimes and the sampler receive values."""

from __future__ import annotations

import torch

from vlkge.data.graph import KnowledgeGraph
from vlkge.data.index import KnownTriples
from vlkge.training.regimes import KvsAll, NegativeSampling, OneVsAll, Regime
from vlkge.training.sampler import NegativeSampler

#: parameter types the optimisers' fused CPU kernels take
FUSED_DTYPES = (torch.float32, torch.float64)
#: ``training.optimizer.name`` -> the optimiser class
OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adagrad": torch.optim.Adagrad,
    "adam": torch.optim.Adam,
    "sgd": torch.optim.SGD,
}


def relation_ids(kg: KnowledgeGraph, names, key: str) -> list[int]:
    """Ids of relation ``names`` given in config ``key``; an unknown name is a ConfigError."""
    unknown = [n for n in names if n not in kg.relation_index]
    if unknown:
        raise kg.unknown_relation(unknown[0], key)
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
        splits = [s for s in neg["filter_splits"] if s in kg.splits]
        if splits:  # one split (the default, train): no copy of its triples
            parts = [kg.splits[s] for s in splits]
            source = torch.cat(parts) if len(parts) > 1 else parts[0]
            known = KnownTriples(source, kg.num_entities, kg.num_relations)
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


def build_optimizer(cfg: dict, model: torch.nn.Module) -> torch.optim.Optimizer:
    """The configured optimiser; fine-tuned encoder parameters (``.towers.``) form their own
    group at ``encoder.finetune_lr``."""
    opt = cfg["training"]["optimizer"]
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [{"params": [p for n, p in named if ".towers." not in n]}]
    tuned = [p for n, p in named if ".towers." in n]
    if tuned:
        groups.append({"params": tuned, "lr": cfg["encoder"]["finetune_lr"]})
    # the fused CPU kernels update a parameter in one pass instead of four (dense Adagrad over
    # WN9-IMG's entity table: 7 -> 3 ms a step); equal to the loop to rounding
    fused = all(p.device.type == "cpu" and p.dtype in FUSED_DTYPES for _, p in named)
    return OPTIMIZERS[opt["name"]](
        groups, lr=opt["lr"], weight_decay=opt["weight_decay"], fused=fused or None
    )
