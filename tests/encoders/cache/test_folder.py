"""The cache folder: two processes encoding into one cache leave it valid (the second waits for
the first's lock), shard numbers never collide between ranks, and temporary files of an
interrupted write are cleaned but a reader's aligned copy is not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from cache_writer import ENTITIES, texts
from conftest import StubEncoder

from vlkge.encoders.cache import FeatureCache
from vlkge.encoders.cache.tables import read_table
from vlkge.errors import VlkgeError

HERE = Path(__file__).parent
ENCODERS = HERE.parent  # its conftest holds the stub encoder the writer imports


def start_writer(folder: Path, go: Path, tmp_path: Path, name: str) -> subprocess.Popen:
    """A fresh interpreter (never a fork of this torch-using process) running cache_writer.py."""
    path = [str(ENCODERS), str(ENCODERS.parent), os.environ.get("PYTHONPATH", "")]
    return subprocess.Popen(
        [sys.executable, str(HERE / "cache_writer.py"), str(folder), str(go)],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(path)},
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


def test_a_held_lock_refuses_after_its_timeout(tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    cache.folder.mkdir()
    with cache.lock():
        with pytest.raises(VlkgeError, match="another vlkge encode is writing"):
            with FeatureCache(cache.folder, lock_timeout=0.1).lock():
                pass
    with FeatureCache(cache.folder, lock_timeout=0).lock():  # released
        pass


def test_ranks_number_their_shards_apart(tmp_path):
    cache = FeatureCache(tmp_path)
    assert [cache.next_shard("text", rank, 3) for rank in range(3)] == [0, 1, 2]
    cache.shard_path("text", 4).touch()
    assert [cache.next_shard("text", rank, 3) for rank in range(3)] == [6, 7, 5]
    assert cache.next_shard("text") == 5 and cache.next_shard("image") == 0


def test_temporary_files_are_cleaned_but_not_aligned_copies(tmp_path):
    cache = FeatureCache(tmp_path)
    cache.update(StubEncoder(), texts())
    left = [".text.safetensors.123.tmp", ".text.part-000002.safetensors.9.tmp"]
    reader = ".text.aligned-0123456789abcdef.npy.77.tmp"
    for name in [*left, reader, ".image.safetensors.5.tmp"]:
        (tmp_path / name).touch()
    cache.update(StubEncoder(), texts(), modalities=["text"])
    assert sorted(p.name for p in tmp_path.glob("*.tmp")) == [".image.safetensors.5.tmp", reader]
