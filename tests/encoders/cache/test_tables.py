"""The cache's tables: checksums find flipped bits and truncated files, only the damaged rows
are encoded again, training refuses a damaged cache in one line; tables are memory-mapped, not
read into memory (aligned files map directly, others through a once-written aligned copy, and
the model's checks keep the map)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from cache_writer import ENTITIES, texts
from conftest import StubEncoder
from safetensors import safe_open
from safetensors.torch import save_file

from vlkge.cli import main
from vlkge.data.manifest import EntityManifest
from vlkge.encoders.cache import FeatureCache, tables
from vlkge.encoders.cache.tables import Record, read_table, write_table
from vlkge.errors import DataError
from vlkge.models.feature_tables import fingerprint
from vlkge.models.features import check_features


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    monkeypatch.setattr(tables, "BLOCK_ROWS", 4)


def flip_feature_byte(path: Path, row: int) -> None:
    """Flip one mantissa byte of ``row``'s first feature, leaving the value finite."""
    raw = bytearray(path.read_bytes())
    size = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + size])
    width = header["features"]["shape"][1]
    raw[8 + size + header["features"]["data_offsets"][0] + row * width * 4 + 1] ^= 0xFF
    path.write_bytes(bytes(raw))


def rewrite(path: Path, **metadata: str) -> None:
    """Save the file again with some metadata entries replaced (None removes one)."""
    with safe_open(str(path), framework="pt") as handle:
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        meta = dict(handle.metadata())
    meta.update(metadata)
    save_file(tensors, str(path), metadata={k: v for k, v in meta.items() if v is not None})


def test_a_flipped_bit_costs_only_its_block(tmp_path, caplog):
    cache = FeatureCache(tmp_path / "cache")
    cache.update(StubEncoder(), texts())
    # a copy: the loaded table maps the file, which the test damages in place
    before = cache.load(ENTITIES)["text"].features.clone()
    path = cache.features_path("text")
    flip_feature_byte(path, 9)
    assert read_table(path).damaged == [8, 9, 10, 11]

    with pytest.raises(DataError) as info:
        cache.load(ENTITIES)
    message = str(info.value)
    assert message.startswith(f"{path}: corrupt feature cache: 4 row(s) fail their checksum")
    assert "the first is entity 'e8'" in message and "\n" not in message

    stub = StubEncoder()
    with caplog.at_level(logging.WARNING, logger="vlkge"):
        report = cache.update(stub, texts())["text"]
    assert (report.encoded, report.reused) == (4, 16)
    assert stub.texts == 4
    assert f"{path}: 4 row(s) fail their checksum (e8, e9, e10, ...); re-encoding" in caplog.text
    assert torch.equal(cache.load(ENTITIES)["text"].features, before)


def test_a_truncated_shard_costs_only_its_rows(tmp_path, caplog):
    folder = tmp_path / "cache"

    class Failing(StubEncoder):
        def _encode_text_batch(self, batch):
            if self.texts >= 12:  # three shards of four entities, then "Ctrl-C"
                raise KeyboardInterrupt
            return super()._encode_text_batch(batch)

    with pytest.raises(KeyboardInterrupt):
        FeatureCache(folder).update(Failing(), texts(), shard_size=4)
    shards = FeatureCache(folder).shards("text")
    assert len(shards) == 3
    shards[1].write_bytes(shards[1].read_bytes()[:-40])

    stub = StubEncoder()
    with caplog.at_level(logging.WARNING, logger="vlkge"):
        report = FeatureCache(folder).update(stub, texts(), shard_size=4)["text"]
    assert f"{shards[1]}: corrupt cache file" in caplog.text
    assert (report.reused, report.encoded) == (8, 12)  # the shard's 4 and the 8 never encoded
    assert stub.texts == 12
    fresh = FeatureCache(tmp_path / "fresh")
    fresh.update(StubEncoder(), texts())
    got, want = FeatureCache(folder).load(ENTITIES)["text"], fresh.load(ENTITIES)["text"]
    torch.testing.assert_close(got.features, want.features)


def test_a_truncated_file_costs_only_its_modality(tmp_path, write_images):
    manifest = texts()
    for entity, path in zip(ENTITIES[:3], write_images(3), strict=True):
        manifest.add_image(entity, str(path))
    cache = FeatureCache(tmp_path / "cache")
    cache.update(StubEncoder(), manifest)
    path = cache.features_path("image")
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(DataError, match="corrupt feature cache"):
        cache.load(ENTITIES, ["image"])
    stub = StubEncoder()
    reports = cache.update(stub, manifest)
    assert (reports["text"].reused, reports["image"].encoded) == (20, 3)
    assert (stub.texts, stub.images) == (0, 3)
    assert cache.load(ENTITIES)["image"].mask.sum() == 3


def test_a_tampered_description_invalidates_the_file(tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    cache.update(StubEncoder(), texts())
    rewrite(cache.features_path("text"), encoder="tampered")
    with pytest.raises(DataError, match="description fails its checksum"):
        cache.load(ENTITIES)
    stub = StubEncoder()
    assert cache.update(stub, texts())["text"].encoded == 20


def test_a_non_finite_row_is_damaged_and_reencoded(tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    cache.update(StubEncoder(), texts())
    table = read_table(cache.features_path("text"))
    records = table.records()
    records["e5"] = Record(records["e5"].input, torch.full((6,), float("nan")), 1)
    write_table(cache.features_path("text"), "text", table.header, records)
    assert read_table(cache.features_path("text")).damaged == [5]
    stub = StubEncoder()
    assert cache.update(stub, texts())["text"].encoded == 1 and stub.texts == 1


def test_files_without_checksums_still_load(tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    cache.update(StubEncoder(), texts())
    before = cache.load(ENTITIES)["text"].features
    rewrite(cache.features_path("text"), checksums=None)
    assert torch.equal(cache.load(ENTITIES)["text"].features, before)
    assert cache.update(StubEncoder(), texts())["text"].reused == 20


def train_with_text(tmp_path: Path, data: Path, damage: bool, *settings: str) -> int:
    """``vlkge train`` of a text model on ``data`` from a fresh cache (one row flipped when
    ``damage``); its exit status."""
    manifest = EntityManifest()
    for entity in "abcd":
        manifest.add_text(entity, f"the entity {entity}")
    cache = FeatureCache(tmp_path / "cache")
    cache.update(StubEncoder(), manifest)
    if damage:
        flip_feature_byte(cache.features_path("text"), 2)
    argv = ["train", "--out", str(tmp_path / "run")]
    for item in (
        f"dataset.name={data}",
        "model.modalities=[text]",
        f"features.cache_dir={cache.folder}",
        "model.dim=4",
        "training.negatives.num=2",
        *settings,
    ):
        argv += ["--set", item]
    return main(argv)


def test_training_refuses_a_damaged_cache_in_one_line(tmp_path, make_dataset, capsys):
    cache = FeatureCache(tmp_path / "cache")
    assert train_with_text(tmp_path, make_dataset(tmp_path / "toy"), True) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [err.strip()] and "Traceback" not in err
    assert f"{cache.features_path('text')}: corrupt feature cache: 4 row(s)" in err
    assert "run vlkge encode again" in err


# --- memory-mapped tables ------------------------------------------------------------------
ROWS, WIDTH = 4096, 64

needs_proc = pytest.mark.skipif(not Path("/proc/self/maps").is_file(), reason="needs /proc")


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
def mapped(tmp_path) -> tuple[FeatureCache, torch.Tensor]:
    values = torch.randn(ROWS, WIDTH, generator=torch.Generator().manual_seed(0))
    header = {"encoder": "x", "fingerprint": "f", "preprocessing": "p", "width": str(WIDTH)}
    records = {f"e{i}": Record(f"in{i}", values[i], 1) for i in range(ROWS)}
    write_table(tmp_path / "text.safetensors", "text", header, records)
    return FeatureCache(tmp_path), values


@needs_proc
def test_aligned_table_maps_the_cache_file(mapped):
    folder, values = mapped
    names = [f"e{i}" for i in range(ROWS)]
    features, mask = folder.load(names, ["text"])["text"]
    assert mapped_file(features) == str(folder.features_path("text"))
    assert torch.equal(features, values) and bool(mask.all())
    checked, _ = check_features({"text": (features, mask)}, ROWS, ["text"])["text"]
    assert checked.data_ptr() == features.data_ptr()  # no copy on the way into the model


@needs_proc
def test_other_entity_order_maps_an_aligned_copy(mapped):
    folder, values = mapped
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


# --- float16 tables (features.dtype) -------------------------------------------------------
def resident_kb(path: Path) -> int:
    """Resident kB of this process's mappings of ``path`` (/proc/self/smaps)."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        fields = line.split()
        if "-" in fields[0] and not fields[0].endswith(":"):  # a mapping's first line
            inside = len(fields) >= 6 and fields[5] == str(path)
        elif inside and fields[0] == "Rss:":
            total += int(fields[1])
    return total


@needs_proc
def test_float16_maps_its_own_copy_of_half_the_size(mapped):
    folder, values = mapped
    names = [f"e{i}" for i in range(ROWS)]
    full, _ = folder.load(names, ["text"])["text"]  # float32: the cache file itself
    half, mask = folder.load(names, ["text"], "float16")["text"]
    path = mapped_file(half)
    assert path.startswith(str(folder.folder / "text.aligned16-")) and half.dtype == torch.float16
    assert torch.equal(half.float(), values.half().float())  # values within fp16 rounding
    assert (half.float() - values).abs().max() <= values.abs().max() * 2**-11
    # the model's checks keep the map, and reading every row costs half the float32 table
    checked, _ = check_features({"text": (half, mask)}, ROWS, ["text"])["text"]
    assert checked.data_ptr() == half.data_ptr() and checked.dtype == torch.float16
    fingerprint(full, mask), fingerprint(half, mask)  # reads every row of both
    assert resident_kb(folder.features_path("text")) >= ROWS * WIDTH * 4 // 1024
    assert resident_kb(Path(path)) <= ROWS * WIDTH * 2 // 1024 + 8
    # another entity order: a float32 and a float16 copy, side by side
    names = list(reversed(names))
    assert folder.load(names, ["text"], "float16")["text"].features.dtype == torch.float16
    copy32 = mapped_file(folder.load(names, ["text"])["text"].features)
    assert copy32.startswith(str(folder.folder / "text.aligned-"))
    assert len(list(folder.folder.glob("text.aligned16-*.npy"))) == 1  # the stale one removed
    assert mapped_file(folder.load(names, ["text"], "float16")["text"].features) != copy32


@pytest.mark.parametrize("damage", ["truncate", "float32"])
def test_a_corrupt_float16_copy_is_one_clear_line(mapped, damage):
    import numpy as np

    folder, _ = mapped
    names = [f"e{i}" for i in range(ROWS)]
    folder.load(names, ["text"], "float16")
    (copy,) = folder.folder.glob("text.aligned16-*.npy")
    if damage == "truncate":
        copy.write_bytes(copy.read_bytes()[:1000])
    else:
        np.save(copy, np.zeros((ROWS, WIDTH), np.float32))
    with pytest.raises(DataError, match="corrupt aligned copy of the text features") as info:
        folder.load(names, ["text"], "float16")
    assert str(info.value).startswith(f"{copy}: ") and "delete it" in str(info.value)
    assert "\n" not in str(info.value)


def test_a_model_trains_and_evaluates_on_float16_features(tmp_path, make_dataset, capsys):
    data = make_dataset(tmp_path / "toy")
    settings = ("features.dtype=float16", "features.preprocess=center", "training.epochs=2")
    assert train_with_text(tmp_path, data, False, *settings) == 0
    assert len(list((tmp_path / "cache").glob("text.aligned16-*.npy"))) == 1
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "run"), "--split", "test", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert 0 < metrics["test"]["both"]["mrr"] <= 1
    assert metrics["test"]["both"] == pytest.approx(saved["test"]["both"])
