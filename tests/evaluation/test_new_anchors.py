"""New entities as query anchors (evaluation/new_anchors.py): the features a scorer reads of
them, stacked with masks, and one reason when an entity has none it reads."""

from __future__ import annotations

import pytest
import torch

from vlkge.evaluation.new_anchors import NewAnchors, Unscorable


def anchors() -> NewAnchors:
    features = [
        {"text": torch.ones(1, 3), "image": torch.full((1, 2), 2.0)},
        {"image": torch.full((1, 2), 5.0)},
    ]
    return NewAnchors(features, [{}, {}], None, ["", ""], ["", ""])


def test_given_stacks_the_rows_with_a_mask_per_modality():
    given = anchors().given(torch.tensor([1, 0]), ["image", "text"])
    table, mask = given["image"]
    assert torch.equal(table, torch.tensor([[5.0, 5.0], [2.0, 2.0]]))
    assert mask.tolist() == [True, True]
    table, mask = given["text"]
    assert torch.equal(table, torch.tensor([[0.0] * 3, [1.0] * 3]))  # zero where absent
    assert mask.tolist() == [False, True]
    assert set(anchors().given(torch.tensor([1]), ["image", "text"])) == {"image"}


def test_an_entity_with_none_of_the_modalities_read_is_unscorable():
    with pytest.raises(Unscorable, match="its model reads only text features"):
        anchors().given(torch.tensor([0, 1]), ["text"])
    assert len(anchors()) == 2
