"""The registry of named datasets: every name listed, an unknown one a one-line error that
lists them."""

from __future__ import annotations

import pytest

from vlkge.data import DATASETS, load_dataset, resolve
from vlkge.data.registry import get_spec
from vlkge.errors import VlkgeError

NAMES = ("wn9-img", "wn18rr", "fb15k-237", "nations", "kinships", "umls")


def test_known_names_listed():
    assert set(NAMES) <= set(DATASETS)
    assert {"wikiart-mkg-v1", "wikiart-mkg-v2"} <= set(DATASETS)
    assert get_spec("WN9-IMG").name == "wn9-img"


@pytest.mark.parametrize("call", [resolve, load_dataset])
def test_unknown_dataset_lists_known_names(call):
    with pytest.raises(VlkgeError, match="unknown dataset 'no-such-kg'") as info:
        call("no-such-kg")
    for name in NAMES:
        assert name in str(info.value)
