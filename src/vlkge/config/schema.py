"""The tables that say what a config value may be, one table per kind of rule.

Defaults live in ``configs/default.yaml`` only. The allowed values of a key that a registry
backs (a backbone, a fusion, a tie rule, ...) are not here: the registry is their one source
(:mod:`vlkge.config.choices`, docs/architecture.md, "A config key").
"""

from __future__ import annotations

from vlkge.terms import MODALITIES, SIDES, SPLITS

#: allowed values of the keys that no registry backs
CHOICES: dict[str, tuple] = {
    "dataset.setting": ("transductive", "inductive"),
    "dataset.unseen_entities": (None, "error", "keep", "drop"),
    "model.rotate_distance": ("modulus", "l2"),
    "training.negatives.side": ("both", *SIDES),
    "training.negatives.pool": ("all", "relation"),
    "training.progress": ("auto", True, False),
    "validation.split": SPLITS,
    "evaluation.filter": ("per_direction", "merged"),
    "evaluation.candidates": ("all", "relation_pool"),
    "compile": ("auto", True, False),
    "precision": ("fp32", "tf32", "bf16", "fp16"),
    "tracking.tensorboard": ("auto", True, False),
    "zero_shot.scorer": ("prompts", "lexical"),
}
POSITIVE = {
    "num_threads",
    "features.width",
    "model.dim",
    "model.neighbour_temperature",
    "evaluation.calibration.temperature",
    "training.epochs",
    "training.batch_size",
    "training.negatives.num",
    "training.optimizer.lr",
    "evaluation.max_scores",
    "evaluation.max_memory_mb",
    "encoder.batch_size",
    "encoder.finetune_layers",
    "encoder.finetune_lr",
    "report.top_k",
}
NON_NEGATIVE = {
    "seed",
    "training.checkpoint_every",
    "model.gamma",
    "model.adapter",
    "model.structural_dropout",
    "model.dropout",
    "model.neighbours",
    "evaluation.calibration.bank",
    "evaluation.calibration.weights",
    "evaluation.zero_shot_blend.weights",
    "evaluation.lexical_blend.weights",
    "evaluation.run_blend.weights",
    "training.adversarial_temperature",
    "training.regularizer.weight",
    "training.optimizer.weight_decay",
    "training.label_smoothing",
    "validation.every",
    "validation.patience",
    "encoder.workers",
    "report.samples",
}
BELOW_ONE = {"training.label_smoothing", "model.structural_dropout", "model.dropout"}
# The upper bound of every other numeric key (list keys: of each item): far above any useful
# setting, yet low enough that the sizes and counts built from them stay within int64 and
# their products within what can be allocated key by key, so a typo (an extra zero digit or
# ten) is one line naming the key instead of an overflow or a failed allocation.
AT_MOST: dict[str, int | float] = {
    "seed": 2**32 - 1,  # numpy's seed range
    "num_threads": 4096,
    "model.dim": 65536,
    "features.width": 65536,
    "model.gamma": 1e6,
    "model.adapter": 65536,
    "model.neighbours": 4096,
    "model.neighbour_temperature": 1e3,
    "encoder.batch_size": 2**16,
    "encoder.workers": 1024,
    "encoder.finetune_layers": 1024,
    "encoder.finetune_lr": 1e3,
    "training.epochs": 2**20,
    "training.batch_size": 2**24,
    "training.adversarial_temperature": 1e3,
    "training.negatives.num": 2**20,
    "training.optimizer.lr": 1e3,
    "training.optimizer.weight_decay": 1e3,
    "training.regularizer.weight": 1e3,
    "training.checkpoint_every": 2**20,
    "validation.every": 2**20,
    "validation.patience": 2**20,
    "evaluation.calibration.weights": 1e3,
    "evaluation.calibration.temperature": 1e3,
    "evaluation.calibration.bank": 2**24,
    "evaluation.zero_shot_blend.weights": 1e6,
    "evaluation.lexical_blend.weights": 1e6,
    "evaluation.run_blend.weights": 1e6,
    "evaluation.max_scores": 2**40,
    "evaluation.max_memory_mb": 2**30,  # 1 PiB
    "report.samples": 1000,
    "report.top_k": 1000,
}
# keys whose default is null but whose value has a type
NULLABLE_TYPES: dict[str, type] = {
    "num_threads": int,
    "dataset.data_dir": str,
    "dataset.unseen_entities": str,
    "features.cache_dir": str,
    "features.width": int,
    "report.zero_shot": str,
    "evaluation.max_memory_mb": float,
    "evaluation.run_blend.run": str,
}
SUBSETS: dict[str, tuple] = {
    "model.modalities": MODALITIES,
    "evaluation.sides": SIDES,
    "evaluation.splits": SPLITS,
    "evaluation.filter_splits": SPLITS,
    "training.negatives.filter_splits": SPLITS,
    "zero_shot.anchor_modalities": MODALITIES,
}
EMPTY_SUBSETS_OK = {"training.negatives.filter_splits", "model.modalities"}
# list keys whose items are free values of one type (names are checked against the dataset
# when a run starts); numeric items take the key's bounds above
ITEMS: dict[str, type] = {
    "evaluation.pool_same_split_relations": str,
    "evaluation.exclude_relations": str,
    "evaluation.calibration.weights": float,
    "evaluation.zero_shot_blend.weights": float,
    "evaluation.lexical_blend.weights": float,
    "evaluation.run_blend.weights": float,
}
# keys whose value is a free mapping with data-dependent keys (relation names): a file or
# ``--set key={...}`` replaces the whole mapping, ``--set key.entry=value`` sets one entry;
# the value is the type of every entry's value. Entry names are checked against the dataset
# when a run starts.
MAPPINGS: dict[str, type] = {
    "dataset.inverse_relations": str,
    "training.subsample": float,
    "zero_shot.templates": str,
    "zero_shot.head_templates": str,
}
UNIT_INTERVAL = {"training.subsample"}  # mapping values in [0, 1]
