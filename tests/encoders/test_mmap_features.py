"""Feature tables are memory-mapped from the cache, not read into memory: aligned files map
directly, others through a once-written aligned copy, and the model's checks keep the map."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vlkge.encoders.cache import FeatureCache
from vlkge.encoders.cache.tables import Record, write_table
from vlkge.models.features import check_features

ROWS, WIDTH = 4096, 64

pytestmark = pytest.mark.skipif(not Path("/proc/self/maps").is_file(), reason="needs /proc")


def mapped_file(tensor: torch.Tensor) -> str | None:
    """The file whose mapping holds ``tensor``'s first element, if any."""
    address = tensor.data_ptr()
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split()
        start, end = (int(x, 16) for x in fields[0].split("-"))
        if start <= address < end and len(fields) >= 6:
            return fields[5]
    return None


@pytest.fixture
def cache(tmp_path) -> tuple[FeatureCache, torch.Tensor]:
    values = torch.randn(ROWS, WIDTH, generator=torch.Generator().manual_seed(0))
    header = {"encoder": "x", "fingerprint": "f", "preprocessing": "p", "width": str(WIDTH)}
    records = {f"e{i}": Record(f"in{i}", values[i], 1) for i in range(ROWS)}
    write_table(tmp_path / "text.safetensors", "text", header, records)
    return FeatureCache(tmp_path), values


def test_aligned_table_maps_the_cache_file(cache):
    folder, values = cache
    names = [f"e{i}" for i in range(ROWS)]
    features, mask = folder.load(names, ["text"])["text"]
    assert mapped_file(features) == str(folder.features_path("text"))
    assert torch.equal(features, values) and bool(mask.all())
    checked, _ = check_features({"text": (features, mask)}, ROWS, ["text"])["text"]
    assert checked.data_ptr() == features.data_ptr()  # no copy on the way into the model


def test_other_entity_order_maps_an_aligned_copy(cache):
    folder, values = cache
    names = ["new", *(f"e{i}" for i in reversed(range(ROWS)))]
    features, mask = folder.load(names, ["text"])["text"]
    assert mapped_file(features).startswith(str(folder.folder / "text.aligned-"))
    assert not mask[0] and bool(mask[1:].all())
    assert torch.equal(features[0], torch.zeros(WIDTH))
    assert torch.equal(features[1:], values.flip(0))
    again, _ = folder.load(names, ["text"])["text"]  # the copy is reused, not rewritten
    assert mapped_file(again) == mapped_file(features)
    checked, _ = check_features({"text": (features, mask)}, ROWS + 1, ["text"])["text"]
    assert checked.data_ptr() == features.data_ptr()
