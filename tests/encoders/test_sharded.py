"""Sharded encoding under torchrun: two gloo ranks split the entities, every entity is encoded
exactly once, and rank 0 merges one cache equal to a single process's."""

from __future__ import annotations

import textwrap
from pathlib import Path

import launch
import pytest
import torch
from fakes import LetterColourEncoder

from vlkge.encoders.cache import FeatureCache

pytest.importorskip("torch.distributed.run")

SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import torch

    sys.path.insert(0, sys.argv[3])  # the tests folder
    from fakes import LetterColourEncoder
    from vlkge.data.manifest import EntityManifest
    from vlkge.encoders.cache import FeatureCache
    from vlkge.encoders.sharded import encode_sharded
    from vlkge import distributed


    class Counting(LetterColourEncoder):
        # the shared letter/colour stub, logging every text it encodes
        def __init__(self, log):
            super().__init__()
            self.name, self.log = "counting", log

        def _encode_text_batch(self, texts):
            with open(self.log, "a") as handle:
                handle.write("".join(t + "\\n" for t in texts))
            return super()._encode_text_batch(texts)


    folder, logs = Path(sys.argv[1]), Path(sys.argv[2])
    names = [f"e{i}" for i in range(23)]
    manifest = EntityManifest(texts={e: [chr(97 + i % 26) * 4] for i, e in enumerate(names)})
    with distributed.session(torch.device("cpu")):
        log = logs / f"rank{distributed.rank()}.txt"
        log.touch()
        encoder = Counting(log)
        encode_sharded(FeatureCache(folder), encoder, manifest, names, ["text"])
    """
)


def test_two_ranks_encode_each_entity_once(tmp_path):
    script = tmp_path / "encode.py"
    script.write_text(SCRIPT)
    logs = tmp_path / "logs"
    logs.mkdir()
    cache_dir = tmp_path / "cache"
    args = (str(script), str(cache_dir), str(logs), str(Path(__file__).parents[1]))
    launch.torchrun(*args)
    per_rank = [(logs / f"rank{r}.txt").read_text().split() for r in (0, 1)]
    assert all(per_rank)  # both ranks worked
    encoded = per_rank[0] + per_rank[1]
    assert len(encoded) == len(set(encoded)) == 23  # every entity once, none twice
    cache = FeatureCache(cache_dir)
    assert cache.shards("text") == []  # merged
    names = [f"e{i}" for i in range(23)]
    loaded = cache.load(names, ["text"])["text"]
    assert bool(loaded.mask.all())
    expected = LetterColourEncoder().encode_texts([chr(97 + i % 26) * 4 for i in range(23)])
    assert torch.allclose(torch.as_tensor(loaded.features), expected, atol=1e-5)
    # a second launch finds everything cached and encodes nothing
    launch.torchrun(*args)
    assert sum(len((logs / f"rank{r}.txt").read_text().split()) for r in (0, 1)) == 23
