"""Finding a named dataset: the resolution order, and downloads checked against their
SHA-256."""

from __future__ import annotations

import io
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from vlkge.data import load_dataset, resolve
from vlkge.data.download import cache_dir, sha256
from vlkge.data.registry import get_spec
from vlkge.errors import VlkgeError


# --- resolution order ----------------------------------------------------------------------
def test_resolution_order(tmp_path, monkeypatch, make_dataset):
    arg = make_dataset(tmp_path / "arg" / "nations")
    env = make_dataset(tmp_path / "env" / "nations")
    cache = make_dataset(tmp_path / "cache" / "datasets" / "nations")
    monkeypatch.setenv("VLKGE_DATA_DIR", str(tmp_path / "env"))
    monkeypatch.setenv("VLKGE_CACHE_DIR", str(tmp_path / "cache"))
    assert cache_dir() == tmp_path / "cache"

    # 1. the data_dir argument, as a parent folder or as the dataset folder itself
    assert resolve("nations", data_dir=tmp_path / "arg") == arg
    assert resolve("nations", data_dir=arg) == arg
    # 2. $VLKGE_DATA_DIR
    assert resolve("nations") == env
    assert resolve("nations", data_dir=tmp_path / "elsewhere") == env
    # 3. the cache
    monkeypatch.delenv("VLKGE_DATA_DIR")
    assert resolve("nations") == cache
    # 4. the installed package (PyKEEN ships Nations)
    (cache / "test.txt").unlink()  # an incomplete folder is skipped
    found = resolve("nations")
    assert found.parts[-3:] == ("pykeen", "datasets", "nations")
    assert load_dataset("nations").num_entities == 14

    # the toy folder is what gets loaded when it wins
    kg = load_dataset("nations", data_dir=tmp_path / "arg")
    assert kg.name == "nations"
    assert kg.num_entities == 4


def test_missing_dataset_without_download(tmp_path, monkeypatch):
    monkeypatch.setenv("VLKGE_DATA_DIR", str(tmp_path / "empty"))
    with pytest.raises(VlkgeError, match="not found in .*wikiart"):
        resolve("wikiart-mkg-v1")
    with pytest.raises(VlkgeError, match="downloading is disabled"):
        resolve("wn18rr", download=False)


# --- downloads -----------------------------------------------------------------------------
class FakeServer:
    """Serves the RotatE repository's WN18RR files from the shared copy (and KG-BERT's WordNet
    texts from the folder beside it)."""

    def __init__(self, folder: Path, corrupt: str | None = None, fail: str | None = None):
        self.folder, self.corrupt, self.fail = folder, corrupt, fail
        self.calls: list[str] = []

    def __call__(self, url, *args, **kwargs):
        name = url.rsplit("/", 1)[-1]
        assert url.startswith("https://") and "wn18rr" in url.lower()
        self.calls.append(name)
        if name == self.fail:
            raise urllib.error.URLError("connection refused")
        folder = self.folder.parent / "wordnet-text" if name == "entity2text.txt" else self.folder
        data = bytearray((folder / name).read_bytes())
        if name == self.corrupt:
            data[len(data) // 2] ^= 0x01  # one wrong bit
        return io.BytesIO(bytes(data))


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    """No local copy anywhere, so wn18rr must be downloaded into a fresh cache."""
    monkeypatch.delenv("VLKGE_DATA_DIR", raising=False)
    monkeypatch.setenv("VLKGE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "datasets" / "wn18rr"


def cached_files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def test_download_verifies_and_caches(data_dir, offline_cache, monkeypatch):
    server = FakeServer(data_dir / "wn18rr")
    monkeypatch.setattr(urllib.request, "urlopen", server)
    assert resolve("wn18rr") == offline_cache
    assert sorted(server.calls) == ["test.txt", "train.txt", "valid.txt"]
    assert cached_files(offline_cache) == {"train.txt", "valid.txt", "test.txt"}
    for name, (_, digest) in get_spec("wn18rr").downloads.items():
        assert sha256(offline_cache / name) == digest
        assert (offline_cache / name).read_bytes() == (data_dir / "wn18rr" / name).read_bytes()

    # found in the cache next time: only the text source is fetched, once, into its own folder
    server.calls.clear()
    kg = load_dataset("wn18rr")
    assert server.calls == ["entity2text.txt"]
    assert (kg.num_entities, len(kg.train)) == (40_943, 86_835)
    assert len(kg.manifest.texts) == 40_943
    assert (offline_cache.parent / "wordnet-text" / "entity2text.txt").is_file()
    server.calls.clear()
    load_dataset("wn18rr")
    assert server.calls == []


def test_download_refetches_only_bad_or_missing_files(data_dir, offline_cache, monkeypatch):
    server = FakeServer(data_dir / "wn18rr")
    monkeypatch.setattr(urllib.request, "urlopen", server)
    resolve("wn18rr")
    (offline_cache / "test.txt").unlink()
    server.calls.clear()
    resolve("wn18rr")
    assert server.calls == ["test.txt"]


@pytest.mark.parametrize("corrupt", ["train.txt", "test.txt"])
def test_download_checksum_mismatch(data_dir, offline_cache, monkeypatch, corrupt):
    monkeypatch.setattr(urllib.request, "urlopen", FakeServer(data_dir / "wn18rr", corrupt))
    with pytest.raises(VlkgeError, match="checksum mismatch") as info:
        resolve("wn18rr")
    assert corrupt in str(info.value)
    left = cached_files(offline_cache)
    # neither the corrupt file nor a temporary file stays behind; whatever is left is verified
    assert corrupt not in left
    digests = get_spec("wn18rr").downloads
    assert left <= set(digests)
    for name in left:
        assert sha256(offline_cache / name) == digests[name][1]
    if corrupt == "train.txt":  # the first file: nothing at all is left
        assert left == set()

    # a later good download repairs the cache
    monkeypatch.setattr(urllib.request, "urlopen", FakeServer(data_dir / "wn18rr"))
    assert resolve("wn18rr") == offline_cache
    assert cached_files(offline_cache) == set(digests)


def test_download_network_error(data_dir, offline_cache, monkeypatch):
    monkeypatch.setattr(
        urllib.request, "urlopen", FakeServer(data_dir / "wn18rr", fail="valid.txt")
    )
    with pytest.raises(VlkgeError, match="could not download .*valid.txt"):
        resolve("wn18rr")
    assert cached_files(offline_cache) <= {"train.txt"}
