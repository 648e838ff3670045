"""Embeddings out: safetensors and TSV with ids, and nearest neighbours in the fused space."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from vlkge.cli import main
from vlkge.config import load_config
from vlkge.data.datasets import load_dataset
from vlkge.export import nearest_entities
from vlkge.models import build_model

TRAIN = [("a", "r", "b"), ("b", "r", "c"), ("c", "s", "a"), ("d", "s", "b"), ("a", "s", "d")]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from vlkge.training.run import train

    root = tmp_path_factory.mktemp("export")
    data = root / "kg"
    data.mkdir()
    for split, rows in (("train", TRAIN), ("valid", TRAIN[:2]), ("test", TRAIN[2:])):
        (data / f"{split}.txt").write_text("".join("\t".join(r) + "\n" for r in rows))
    cfg = load_config(
        overrides=[
            f"dataset.name={data}",
            "model.backbone=complex",
            "model.reciprocal=true",
            "model.dim=3",
            "training.epochs=1",
            "training.negatives.num=1",
            "training.negatives.filter_splits=[]",
            "training.progress=false",
            "report.after_train=false",
            "tracking.tensorboard=false",
        ]
    )
    train(cfg, root / "run")
    return root / "run"


def test_export_safetensors_and_tsv(run_dir, tmp_path, capsys):
    out = tmp_path / "emb"
    assert main(["export", str(run_dir), "--out", str(out)]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [
        str(out / f) for f in ("embeddings.safetensors", "entities.tsv", "relations.tsv")
    ]
    from vlkge.training.setup import load_run

    _, kg, model = load_run(run_dir)
    with safe_open(str(out / "embeddings.safetensors"), "pt") as handle:
        meta = handle.metadata()
        entities, relations = handle.get_tensor("entities"), handle.get_tensor("relations")
    assert torch.allclose(entities, model.entity_table())
    assert entities.shape == (4, 6) and relations.shape == (4, 6)  # complex: 2d; reciprocal: 2R
    assert json.loads(meta["entities_ids"]) == kg.entities
    assert json.loads(meta["relations_ids"]) == ["r", "s", "r^-1", "s^-1"]
    assert meta["backbone"] == "complex" and meta["entity_layout"] == "real|imaginary"
    lines = (out / "entities.tsv").read_text().splitlines()
    assert lines[0].split("\t") == ["index", "id", *(f"x{i}" for i in range(6))]
    rows = [line.split("\t") for line in lines[1:]]
    assert [r[1] for r in rows] == kg.entities
    values = torch.tensor([[float(v) for v in r[2:]] for r in rows])
    assert torch.allclose(values, entities, rtol=1e-6, atol=1e-7)
    assert (out / "relations.tsv").read_text().splitlines()[3].split("\t")[:2] == ["2", "r^-1"]


def test_neighbours_are_the_most_cosine_similar(tmp_path):
    kg = load_dataset("nations")
    model = build_model(load_config(overrides=["model.dim=4"])["model"], kg)
    found = nearest_entities(model, kg, "usa", k=3)
    table = model.entity_table()
    sims = torch.nn.functional.cosine_similarity(table[kg.entity_id("usa")][None], table)
    sims[kg.entity_id("usa")] = -2
    expected = [kg.entities[i] for i in sims.argsort(descending=True)[:3].tolist()]
    assert [n["entity"] for n in found] == expected
    assert [n["rank"] for n in found] == [1, 2, 3]
    assert len(nearest_entities(model, kg, "usa", k=100)) == kg.num_entities - 1


def test_neighbours_cli(run_dir, capsys):
    assert main(["neighbours", str(run_dir), "a", "--top-k", "2", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert len(found) == 2 and "a" not in [n["entity"] for n in found]
    assert main(["neighbors", str(run_dir), "b"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("nearest to b") and len(out) == 4
    for argv, fragment in (
        (["neighbours", str(run_dir), "zzz"], "unknown entity 'zzz'"),
        (["neighbours", str(run_dir), "a", "--top-k", "0"], "--top-k must be positive"),
        (["export", str(run_dir.parent), "--out", "x"], "not a run folder"),
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert fragment in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
