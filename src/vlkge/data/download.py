"""Where a named dataset (or text source) is on disk, and its download when it is nowhere.

A name resolves to a local folder, searched in this order:

1. ``--data-dir`` / ``dataset.data_dir`` (``<dir>/<name>``, or ``<dir>`` named ``<name>``),
2. the environment variable ``VLKGE_DATA_DIR`` (``$VLKGE_DATA_DIR/<name>``),
3. the user cache (``$VLKGE_CACHE_DIR`` or ``~/.cache/vlkge``) under ``datasets/<name>``,
4. for datasets that ship inside an installed package (PyKEEN's Nations, Kinships, UMLS), that
   package's folder.

If none holds the files, the dataset is downloaded from its public source into the cache, each
file checked against its SHA-256.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import urllib.request
from pathlib import Path

from vlkge.data.registry import DatasetSpec, get_spec
from vlkge.data.texts import TextSource
from vlkge.errors import VlkgeError
from vlkge.files import atomic_write, raise_if_disk_full

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    return Path(os.environ.get("VLKGE_CACHE_DIR") or Path.home() / ".cache" / "vlkge")


def _candidates(spec: DatasetSpec | TextSource, data_dir: str | os.PathLike | None) -> list[Path]:
    folders: list[Path] = []
    if data_dir:
        folders.append(Path(data_dir) / spec.name)
        if Path(data_dir).name.lower() == spec.name:  # the dataset's own folder
            folders.append(Path(data_dir))
    if os.environ.get("VLKGE_DATA_DIR"):
        folders.append(Path(os.environ["VLKGE_DATA_DIR"]) / spec.name)
    folders.append(cache_dir() / "datasets" / spec.name)
    if spec.package:
        found = importlib.util.find_spec(spec.package.split(".")[0])
        if found is not None and found.submodule_search_locations:
            root = Path(next(iter(found.submodule_search_locations)))
            folders.append(root.joinpath(*spec.package.split(".")[1:]))
    return folders


def resolve(
    name: str,
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    spec: DatasetSpec | TextSource | None = None,
) -> Path:
    """The local folder holding dataset ``name`` (or the text source ``spec``), downloading it
    into the cache if needed."""
    spec = spec or get_spec(name)
    for folder in _candidates(spec, data_dir):
        if folder.is_dir() and not spec.missing(folder):
            return folder
    if not spec.downloads:
        raise VlkgeError(
            f"dataset {name} not found in {', '.join(str(f) for f in _candidates(spec, data_dir))}"
            f"; {spec.obtain or 'it cannot be downloaded automatically'}"
        )
    if not download:
        raise VlkgeError(f"dataset {name} is not available locally and downloading is disabled")
    return _download(spec)


def _download(spec: DatasetSpec | TextSource) -> Path:
    target = cache_dir() / "datasets" / spec.name
    target.mkdir(parents=True, exist_ok=True)
    for filename, (url, digest) in spec.downloads.items():
        path = target / filename
        if path.is_file() and sha256(path) == digest:
            continue
        log.info("downloading %s from %s", filename, url)
        with atomic_write(path, binary=True) as handle:  # kept only once its checksum matches
            received = hashlib.sha256()
            try:
                with urllib.request.urlopen(url, timeout=60) as response:
                    for block in iter(lambda: response.read(1 << 20), b""):
                        handle.write(block)
                        received.update(block)
            except OSError as exc:
                raise_if_disk_full(exc, path)
                raise VlkgeError(f"could not download {url}: {exc}") from None
            if received.hexdigest() != digest:
                raise VlkgeError(f"checksum mismatch for {url}: the download is corrupt or changed")
    return target


def sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
