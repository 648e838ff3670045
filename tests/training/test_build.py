"""The parts of training built from the config: the optimiser (tuned towers in their own group)
and unknown relation names."""

import pytest
import torch

from vlkge.config import load_config
from vlkge.data.graph import KnowledgeGraph
from vlkge.data.triples import LabeledTriples
from vlkge.errors import ConfigError
from vlkge.training.build import OPTIMIZERS, build_optimizer, relation_ids


def model() -> torch.nn.Module:
    """Parameters named like a model's: ``entities.table.*`` and ``entities.towers.text.*``."""
    towers = torch.nn.ModuleDict({"text": torch.nn.Linear(2, 2)})
    entities = torch.nn.ModuleDict({"table": torch.nn.Linear(2, 2), "towers": towers})
    return torch.nn.ModuleDict({"entities": entities})


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_tuned_towers_train_at_their_own_rate(name):
    cfg = load_config(
        overrides=[
            f"training.optimizer.name={name}",
            "training.optimizer.lr=0.1",
            "encoder.finetune_lr=0.001",
        ]
    )
    optimizer = build_optimizer(cfg, model())
    assert type(optimizer) is OPTIMIZERS[name]
    main, tuned = optimizer.param_groups
    assert main["lr"] == 0.1 and len(main["params"]) == 2  # the table's weight and bias
    assert tuned["lr"] == 0.001 and len(tuned["params"]) == 2


def test_unknown_relation_names_are_config_errors():
    rows = [("a", "r", "b"), ("b", "s", "a")]
    kg = KnowledgeGraph.from_labeled("toy", {"train": LabeledTriples("t", rows, [1, 2])})
    assert relation_ids(kg, ["s", "r"], "training.subsample") == [kg.relation_index["s"], 0]
    with pytest.raises(ConfigError, match="training.subsample"):
        relation_ids(kg, ["q"], "training.subsample")
