"""Feature-cache integrity: checksums find flipped bits and truncated files, only the damaged
rows are encoded again, training refuses a damaged cache in one line, and two processes
encoding into one cache leave it valid."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
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

HERE = Path(__file__).parent
TESTS = HERE.parent


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


def test_training_refuses_a_damaged_cache_in_one_line(tmp_path, make_dataset, capsys):
    data = make_dataset(tmp_path / "toy")
    manifest = EntityManifest()
    for entity in "abcd":
        manifest.add_text(entity, f"the entity {entity}")
    cache = FeatureCache(tmp_path / "cache")
    cache.update(StubEncoder(), manifest)
    flip_feature_byte(cache.features_path("text"), 2)
    argv = ["train", "--out", str(tmp_path / "run")]
    for item in (
        f"dataset.name={data}",
        "model.modalities=[text]",
        f"features.cache_dir={cache.folder}",
        "model.dim=4",
        "training.negatives.num=2",
    ):
        argv += ["--set", item]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [err.strip()] and "Traceback" not in err
    assert f"{cache.features_path('text')}: corrupt feature cache: 4 row(s)" in err
    assert "run vlkge encode again" in err


# --- two writers ---------------------------------------------------------------------------
def start_writer(folder: Path, go: Path, tmp_path: Path, name: str) -> subprocess.Popen:
    """A fresh interpreter (never a fork of this torch-using process) running cache_writer.py."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.Popen(
        [sys.executable, str(HERE / "cache_writer.py"), str(folder), str(go)],
        env=env,
        stdout=(tmp_path / f"{name}.out").open("w"),
        stderr=subprocess.STDOUT,
    )


def test_two_processes_encoding_into_one_cache(tmp_path):
    """Started together, one writer takes the lock and encodes; the other waits for it, then
    reuses everything the first wrote. The cache ends valid and complete."""
    folder, go = tmp_path / "cache", tmp_path / "go"
    workers = [start_writer(folder, go, tmp_path, name) for name in "ab"]
    try:
        deadline = time.monotonic() + 120
        while len(list(tmp_path.glob("go.*.ready"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        go.touch()  # both have imported everything: they open the cache together
        for worker in workers:
            assert worker.wait(timeout=120) == 0, (tmp_path / "a.out").read_text()
    finally:
        for worker in workers:
            worker.kill()
    outcomes = [json.loads((tmp_path / f"{n}.out").read_text().splitlines()[-1]) for n in "ab"]
    assert sorted(map(tuple, outcomes)) == [(0, 20, True), (20, 0, False)]
    assert not list(folder.glob("*.tmp")) and not FeatureCache(folder).shards("text")
    assert read_table(FeatureCache(folder).features_path("text")).damaged == []
    fresh = FeatureCache(tmp_path / "fresh")
    fresh.update(StubEncoder(), texts())
    torch.testing.assert_close(
        FeatureCache(folder).load(ENTITIES)["text"].features, fresh.load(ENTITIES)["text"].features
    )
