"""Sharded encoding under torchrun: two gloo ranks split the entities, every entity is encoded
exactly once, and rank 0 merges one cache equal to a single process's."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap

import pytest
import torch

from vlkge.encoders.cache import FeatureCache

pytest.importorskip("torch.distributed.run")

SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import torch

    from vlkge.data.manifest import EntityManifest
    from vlkge.encoders.base import Encoder
    from vlkge.encoders.cache import FeatureCache
    from vlkge.encoders.sharded import encode_sharded
    from vlkge.training import distributed


    class Counting(Encoder):
        # letter counts through a fixed linear map; logs every text it encodes
        def __init__(self, log):
            self.name, self.device, self.batch_size = "counting", torch.device("cpu"), 4
            self.net = torch.nn.Linear(26, 6)
            with torch.no_grad():
                for p in self.net.parameters():
                    p.copy_(torch.linspace(-1, 1, p.numel()).reshape(p.shape))
            self.log = log

        def module(self):
            return self.net

        @property
        def text_width(self):
            return 6

        def _encode_text_batch(self, texts):
            with open(self.log, "a") as handle:
                handle.write("".join(t + "\\n" for t in texts))
            counts = torch.zeros(len(texts), 26)
            for i, text in enumerate(texts):
                for char in text:
                    counts[i, ord(char) - 97] += 1
            return self.net(counts)


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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_ranks_encode_each_entity_once(tmp_path):
    script = tmp_path / "encode.py"
    script.write_text(SCRIPT)
    logs = tmp_path / "logs"
    logs.mkdir()
    cache_dir = tmp_path / "cache"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(free_port()),
        str(script),
        str(cache_dir),
        str(logs),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    per_rank = [(logs / f"rank{r}.txt").read_text().split() for r in (0, 1)]
    assert all(per_rank)  # both ranks worked
    encoded = per_rank[0] + per_rank[1]
    assert len(encoded) == len(set(encoded)) == 23  # every entity once, none twice
    cache = FeatureCache(cache_dir)
    assert cache.shards("text") == []  # merged
    names = [f"e{i}" for i in range(23)]
    loaded = cache.load(names, ["text"])["text"]
    assert bool(loaded.mask.all())
    counts = torch.zeros(23, 26)
    for i in range(23):
        counts[i, i % 26] = 4
    net = torch.nn.Linear(26, 6)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.linspace(-1, 1, p.numel()).reshape(p.shape))
        assert torch.allclose(torch.as_tensor(loaded.features), net(counts), atol=1e-5)
    # a second launch finds everything cached and encodes nothing
    subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=True)
    assert sum(len((logs / f"rank{r}.txt").read_text().split()) for r in (0, 1)) == 23
