"""The fixed names of a graph's parts: one source for the config schema and the code."""

from __future__ import annotations

import pytest

from vlkge.config.schema import CHOICES, SUBSETS
from vlkge.errors import VlkgeError
from vlkge.terms import MODALITIES, SIDES, SPLITS, check_modality, check_side


def test_checks_return_a_known_name_and_refuse_others_in_one_line():
    assert check_side("head") == "head" and check_modality("text") == "text"
    with pytest.raises(VlkgeError, match=r"^direction must be head or tail, not 'up'$"):
        check_side("up", "direction")
    with pytest.raises(VlkgeError, match=r"^unknown modality 'audio' \(known: image, text\)$"):
        check_modality("audio")


def test_the_config_schema_lists_the_same_names():
    assert SUBSETS["evaluation.sides"] is SIDES and CHOICES["validation.split"] is SPLITS
    assert SUBSETS["model.modalities"] is MODALITIES
