"""Training with sharded entity tables (:mod:`vlkge.training.sharded`).

In one process (a one-rank gloo group): the row optimiser equals the dense ``torch.optim``
step (the sharded losses: test_shard_losses.py). With two gloo
ranks on loopback (fresh processes under torchrun): a sharded run matches one process with
the same seed and global batch, per epoch, for negative sampling and 1-vs-all, structural and
VL; a sharded run killed with SIGKILL and resumed ends where an uninterrupted one does; a
sharded run is evaluated, predicted from and exported by one process; resuming it with another
number of ranks is refused in one line.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import launch
import numpy as np
import pytest
import torch

from vlkge.config import load_config
from vlkge.errors import ConfigError
from vlkge.models.representations import Embedding
from vlkge.models.sharded import ShardedEmbedding
from vlkge.training import sharded
from vlkge.training.build import OPTIMIZERS
from vlkge.training.run import train
from vlkge.training.setup import load_run

pytest.importorskip("torch.distributed.run")

BASE = [
    "dataset.name=nations",
    "model.dim=8",
    "training.batch_size=200",
    "training.negatives.num=4",
    "training.epochs=3",
    "training.progress=false",
    "evaluation.splits=[valid]",
    "report.after_train=false",
    "tracking.tensorboard=false",
    "num_threads=1",
]
NEGATIVE_SAMPLING = ["model.backbone=distmult"]
ONE_VS_ALL = [
    "model.backbone=complex",
    "model.reciprocal=true",
    "training.regime=1vsall",
    "training.loss=ce",
    "training.label_smoothing=0.1",
    "training.regularizer.name=n3",
    "training.regularizer.weight=0.01",
]


@pytest.fixture
def group():
    with launch.one_rank_group():
        yield


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_row_updates_equal_the_dense_optimiser(group, name):
    """Every optimiser a run can name: Adagrad and SGD leave rows without gradient alone,
    Adam moves them by their first moment, on the shard as on the whole table."""
    table = Embedding(6, 3)
    dense = torch.nn.Parameter(table.weight.detach().clone())
    reference = OPTIMIZERS[name]([dense], lr=0.1)
    holder = torch.nn.Module()
    holder.entities = ShardedEmbedding.of(table, [0, 6], 0)
    rows = sharded.ShardedRows(holder, name, 0.1)
    generator = torch.Generator().manual_seed(0)
    for step in range(4):
        # rows 4, 5 never touched; in the last step, only rows 0 and 1
        ids = torch.randint(0, 4 if step < 3 else 2, (5,), generator=generator)
        weights = torch.randn(5, 3, generator=generator)
        (holder.entities(ids) * weights).sum().backward()
        rows.step()
        reference.zero_grad()
        (dense[ids] * weights).sum().backward()
        reference.step()
    torch.testing.assert_close(holder.entities.weight, dense.detach(), rtol=0, atol=1e-6)
    state = rows.state_dict()  # a checkpoint's state restores the same optimiser
    again = sharded.ShardedRows(holder, name, 0.1)
    again.load_state_dict(state)
    assert all(torch.equal(again.state_dict()[key], value) for key, value in state.items())


@pytest.mark.parametrize(
    "setting, message",
    [
        ("training.optimizer.weight_decay=0.1", "weight_decay: 0"),
        ("evaluation.calibration.weights=[0.5]", "calibration"),
    ],
)
def test_configs_that_cannot_shard_exactly_are_refused(setting, message):
    with pytest.raises(ConfigError, match=message):
        sharded.check_shardable(load_config(overrides=[setting]))


# --- two ranks ----------------------------------------------------------------------------------
def sets(settings) -> list[str]:
    return [arg for s in settings for arg in ("--set", s)]


def trace(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "trace.jsonl").read_text().splitlines()]


def assert_same_epochs(mine, theirs):
    assert [e["epoch"] for e in mine] == [e["epoch"] for e in theirs]
    for a, b in zip(mine, theirs, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
        assert a["valid"]["mrr"] == pytest.approx(b["valid"]["mrr"], abs=1e-4)


@pytest.fixture(scope="module")
def image_cache(tmp_path_factory):
    """Random 6-d image features for two thirds of nations' entities, imported into a cache."""
    from vlkge.data.datasets import load_dataset
    from vlkge.encoders.cache.store import FeatureCache
    from vlkge.encoders.precomputed import read_features

    root = tmp_path_factory.mktemp("features")
    entities = load_dataset("nations").entities
    rng = np.random.default_rng(0)
    vectors = {e: rng.standard_normal(6).astype(np.float32) for e in entities[::3] + entities[1::3]}
    np.savez(root / "image.npz", **vectors)
    FeatureCache(root / "cache").import_features("image", read_features(root / "image.npz"))
    return root / "cache"


@pytest.mark.parametrize("modal", [False, True], ids=["structural", "vl"])
@pytest.mark.parametrize("regime", [NEGATIVE_SAMPLING, ONE_VS_ALL], ids=["negatives", "1vsall"])
def test_two_sharded_ranks_match_one_process(tmp_path, image_cache, regime, modal):
    settings = [*BASE, *regime]
    if modal:  # ComplEx also shards its free imaginary rows
        settings += ["model.modalities=[image]", f"features.cache_dir={image_cache}"]
    match_one_process(tmp_path, settings)


def test_two_sharded_ranks_with_adam_match_one_process(tmp_path):
    """Adam updates every row of each shard, as one process's dense Adam does the table."""
    match_one_process(tmp_path, [*BASE, *NEGATIVE_SAMPLING, "training.optimizer.name=adam"])


def test_two_sharded_ranks_on_float16_features_match_one_process(tmp_path, image_cache):
    """Each rank reads its rows of the mapped float16 copy; one process reads them all."""
    modal = ["model.modalities=[image]", f"features.cache_dir={image_cache}"]
    match_one_process(tmp_path, [*BASE, *ONE_VS_ALL, *modal, "features.dtype=float16"])
    assert len(list(image_cache.glob("image.aligned16-*.npy"))) == 1


def match_one_process(tmp_path, settings: list[str]) -> None:
    """Train with ``settings`` in one process and with 2 sharded ranks: the same epochs."""
    train(load_config(overrides=settings), tmp_path / "one")
    two = tmp_path / "two"
    launch.torchrun(
        "-m",
        "vlkge",
        "train",
        *sets([*settings, "distributed.shard_tables=true"]),
        "--out",
        str(two),
    )
    assert_same_epochs(trace(two), trace(tmp_path / "one"))
    assert (two / "checkpoints" / "last.e3.shard1of2.pt").is_file()


def launch_command(*args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(launch.free_port()),
        "-m",
        "vlkge",
        "train",
        *args,
    ]


KILL_SETTINGS = [*BASE, *NEGATIVE_SAMPLING, "training.epochs=6", "distributed.shard_tables=true"]


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    """An uninterrupted 2-rank sharded run."""
    run = tmp_path_factory.mktemp("sharded") / "whole"
    launch.torchrun("-m", "vlkge", "train", *sets(KILL_SETTINGS), "--out", str(run))
    return run


def stopped_and_resumed(run, whole, signum: int, group: bool) -> None:
    """Start a sharded run like ``whole``, send ``signum`` once it has trained an epoch (to
    torchrun and its ranks when ``group``, else to torchrun, which passes it on), resume
    it with two ranks, and check that it ends as ``whole`` did."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        launch_command(*sets(KILL_SETTINGS), "--out", str(run)),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if (run / "trace.jsonl").is_file() and len(trace(run)) >= 1:
            break
        time.sleep(0.05)
    if group:
        os.killpg(proc.pid, signum)
    else:
        os.kill(proc.pid, signum)
    proc.wait(timeout=120)
    assert len(trace(run)) < 6, "the run ended before it was stopped"
    done = subprocess.run(
        launch_command("--resume", str(run)), env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_epochs(trace(run), trace(whole))
    metrics = json.loads((run / "metrics.json").read_text())
    reference = json.loads((whole / "metrics.json").read_text())
    assert metrics["valid"]["both"] == reference["valid"]["both"]


def test_sharded_run_killed_and_resumed_matches(tmp_path, whole):
    stopped_and_resumed(tmp_path / "killed", whole, signal.SIGKILL, group=True)


def test_sharded_run_stopped_by_sigterm_resumes_and_matches(tmp_path, whole):
    stopped_and_resumed(tmp_path / "stopped", whole, signal.SIGTERM, group=False)


def test_one_process_reads_a_sharded_run(tmp_path, whole):
    """evaluate and export read the shards; resuming with another world size is refused."""
    from vlkge.training.final import evaluate_run

    reference = json.loads((whole / "metrics.json").read_text())
    cfg, kg, model = load_run(whole)
    assert evaluate_run(cfg, kg, model, ["valid"])["valid"]["both"] == reference["valid"]["both"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    exported = subprocess.run(
        [sys.executable, "-m", "vlkge", "export", str(whole), "--out", str(tmp_path / "x")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert exported.returncode == 0, exported.stderr[-2000:]
    refused = subprocess.run(
        [sys.executable, "-m", "vlkge", "train", "--resume", str(whole)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 2
    assert "2 ranks with sharded tables" in refused.stderr
    assert "Traceback" not in refused.stderr
