"""One `FeatureCache.update` in a fresh interpreter, for the two-writer test.

Usage: ``python cache_writer.py CACHE_FOLDER GO_FILE``. Writes ``GO_FILE.<pid>.ready`` once its
imports are done, waits for ``GO_FILE`` so that two writers start together, encodes the twenty
test texts with a slow stub and prints ``[encoded, reused, waited]`` as JSON on its last line.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path

from conftest import StubEncoder

from vlkge.data.manifest import EntityManifest
from vlkge.encoders.cache import FeatureCache, tables

ENTITIES = [f"e{i}" for i in range(20)]


def texts() -> EntityManifest:
    manifest = EntityManifest()
    for i, entity in enumerate(ENTITIES):
        manifest.add_text(entity, f"entity number {i} " + "xyz"[i % 3] * (i + 1))
    return manifest


class Messages(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def main(folder: str, go: str) -> None:
    tables.BLOCK_ROWS = 4  # several checksum blocks in the twenty-row table
    messages = Messages()
    logger = logging.getLogger("vlkge")
    logger.addHandler(messages)
    logger.setLevel(logging.INFO)
    Path(f"{go}.{os.getpid()}.ready").touch()
    while not Path(go).exists():
        time.sleep(0.01)
    report = FeatureCache(folder).update(StubEncoder(delay=0.05), texts(), shard_size=4)["text"]
    waited = any("waiting for another vlkge encode" in line for line in messages.lines)
    print(json.dumps([report.encoded, report.reused, waited]))


if __name__ == "__main__":
    main(*sys.argv[1:3])
