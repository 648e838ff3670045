"""The ``vlkge`` command line: datasets, config, errors, and a tiny train/evaluate/predict."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from vlkge import __version__
from vlkge.cli import main

METRICS = ("mrr", "mr", "hits@1", "hits@3", "hits@10")


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(err: str, *fragments: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    # log lines (HH:MM:SS ...) may precede it; the error itself is one line, no traceback
    assert "Traceback" not in err
    errors = [line for line in lines if line.startswith("vlkge: error:")]
    assert len(errors) == 1, err
    assert lines[-1] == errors[0]
    for fragment in fragments:
        assert fragment in errors[0]


# --- datasets ------------------------------------------------------------------------------
def test_datasets_list(capsys):
    code, out, err = run(capsys, "datasets", "list")
    assert code == 0
    names = [line.split()[0] for line in out.splitlines()]
    for name in ("wn9-img", "wn18rr", "fb15k-237", "nations", "kinships", "umls"):
        assert name in names
    assert "wikiart-mkg-v1" in names


def test_datasets_info(capsys, data_dir):
    code, out, err = run(capsys, "datasets", "info", "wn9-img")
    assert code == 0
    assert "dataset    wn9-img" in out
    assert "entities   6,555 (6,555 in train)" in out
    assert "relations  9" in out
    assert "train 11,741 / valid 1,337 / test 1,319" in out
    assert "valid: 89.6%" in out and "test: 89.9%" in out
    assert "_hypernym" in out


def test_datasets_info_json(capsys, data_dir):
    code, out, _ = run(capsys, "datasets", "info", "wn9-img", "--json")
    assert code == 0
    stats = json.loads(out)
    assert stats["name"] == "wn9-img"
    assert stats["entities"] == 6_555
    assert stats["relations"] == 9
    assert stats["triples"] == {"train": 11_741, "valid": 1_337, "test": 1_319}
    assert stats["inverse_leakage"]["valid"] == pytest.approx(1_198 / 1_337)
    assert stats["inverse_leakage"]["test"] == pytest.approx(1_186 / 1_319)
    assert stats["modalities"]["text_only"] == 6_555


def test_datasets_info_data_dir_and_folder(capsys, tmp_path, make_dataset):
    make_dataset(tmp_path / "nations")
    code, out, _ = run(capsys, "datasets", "info", "nations", "--data-dir", str(tmp_path), "--json")
    assert code == 0
    assert json.loads(out)["entities"] == 4
    code, out, _ = run(capsys, "datasets", "info", str(tmp_path / "nations"))
    assert code == 0
    assert "entities   4 (4 in train)" in out


# --- config --------------------------------------------------------------------------------
def test_config_show(capsys):
    from vlkge.config import defaults, documented

    code, out, _ = run(capsys, "config", "show")
    assert code == 0
    assert out == documented(defaults())
    assert "# transe | distmult | complex | rotate: " in out


def test_config_show_resolved(capsys, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  backbone: complex\n")
    code, out, _ = run(
        capsys, "config", "show", "--config", str(path), "--set", "model.dim=32", "--set", "seed=1"
    )
    assert code == 0
    cfg = yaml.safe_load(out)
    assert cfg["model"] == {**cfg["model"], "backbone": "complex", "dim": 32}
    assert cfg["seed"] == 1


def test_config_show_changed_and_full(capsys):
    from vlkge.config import default_text

    code, out, _ = run(capsys, "config", "show", "--set", "model.dim=32")
    assert code == 0
    assert yaml.safe_load(out) == {"model": {"dim": 32}}
    assert "# default 768;" in out
    code, out, _ = run(capsys, "config", "show", "--set", "model.dim=32", "--full")
    assert code == 0
    assert len(out.splitlines()) == len(default_text().splitlines())
    assert yaml.safe_load(out)["model"]["dim"] == 32 and "# width d of the" in out


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert __version__ in capsys.readouterr().out


# --- bad input: one line, status 2, no traceback -------------------------------------------
@pytest.mark.parametrize(
    "argv, fragments",
    [
        (["datasets", "info", "no-such-kg"], ["unknown dataset 'no-such-kg'", "wn9-img"]),
        (["datasets", "info"], ["needs a dataset NAME"]),
        (["config", "show", "--set", "model.dimm=3"], ["did you mean model.dim?"]),
        (["config", "show", "--set", "model.dim=-1"], ["model.dim must be positive"]),
        (["config", "show", "--set", "model.backbone=transr"], ["must be one of"]),
        (["config", "show", "--set", "nokey"], ["key=value"]),
        (["train", "--set", "model.dim=8"], ["--out"]),
    ],
)
def test_bad_input(capsys, argv, fragments):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert_one_line_error(err, *fragments)


def test_bad_config_file(capsys, tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("model:\n  dim: [16\n")
    code, _, err = run(capsys, "config", "show", "--config", str(path))
    assert code == 2
    assert_one_line_error(err, f"{path}:", "invalid YAML")


def test_bad_data_file_names_file_and_line(capsys, tmp_path, make_dataset):
    folder = make_dataset(tmp_path / "kg")
    with open(folder / "test.txt", "a", encoding="utf-8") as handle:
        handle.write("a\tlikes\n")
    code, _, err = run(capsys, "datasets", "info", str(folder))
    assert code == 2
    assert_one_line_error(err, f"vlkge: error: {folder / 'test.txt'}:3: expected 3")


def test_unseen_relation_names_file_and_line(capsys, tmp_path, make_dataset):
    folder = make_dataset(tmp_path / "kg", test=[("a", "likes", "b"), ("a", "hates", "b")])
    code, _, err = run(capsys, "datasets", "info", str(folder))
    assert code == 2
    assert_one_line_error(err, f"{folder / 'test.txt'}:2:", "'hates'")


def test_argparse_errors_exit_2(capsys):
    for argv in (["datasets", "frobnicate"], ["nosuchcommand"], []):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err
        assert "error:" in err.splitlines()[-1]


def test_evaluate_not_a_run_folder(capsys, tmp_path):
    code, _, err = run(capsys, "evaluate", str(tmp_path))
    assert code == 2
    assert_one_line_error(err, "not a run folder")


# --- subprocess: real exit codes -----------------------------------------------------------
def _env(tmp_path) -> dict:
    env = dict(os.environ)
    env["VLKGE_CACHE_DIR"] = str(tmp_path / "cache")
    env.pop("VLKGE_IMAGENET_DIR", None)
    return env


def test_module_entry_point_exit_codes(tmp_path):
    ok = subprocess.run(
        [sys.executable, "-m", "vlkge.cli", "datasets", "info", "nations"],
        capture_output=True,
        text=True,
        env=_env(tmp_path),
        cwd=tmp_path,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    assert "dataset    nations" in ok.stdout
    assert "entities   14 (14 in train)" in ok.stdout

    script = Path(sys.executable).with_name("vlkge")
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "vlkge.cli"]
    bad = subprocess.run(
        [*command, "datasets", "info", "no-such-kg"],
        capture_output=True,
        text=True,
        env=_env(tmp_path),
        cwd=tmp_path,
        timeout=120,
    )
    assert bad.returncode == 2
    assert bad.stdout == ""
    assert bad.stderr.strip().splitlines() == [bad.stderr.strip()]
    assert bad.stderr.startswith("vlkge: error: unknown dataset 'no-such-kg'")


# --- a tiny end-to-end run on Nations ------------------------------------------------------
TINY = [
    "dataset.name=nations",
    "model.dim=16",
    "training.epochs=2",
    "training.negatives.num=4",
    "training.batch_size=256",
    "training.progress=false",
    "device=cpu",
    "num_threads=1",
]


def _sets(items):
    return [arg for item in items for arg in ("--set", item)]


@pytest.fixture(scope="module")
def nations_run(tmp_path_factory):
    """Train once for the module. Negative filtering is off: Nations is so dense that some
    (relation, tail) pairs have 13 of the 14 entities as known heads, leaving too few
    filtered negatives (see test_train_nations_with_filtered_negatives)."""
    run_dir = tmp_path_factory.mktemp("runs") / "nations"
    code = main(
        ["train", "--out", str(run_dir), *_sets(TINY)]
        + ["--set", "training.negatives.filter_splits=[]"]
    )
    return code, run_dir


def _check_metrics(block: dict) -> None:
    for key in METRICS:
        assert type(block[key]) is float, (key, block[key])
    assert 0.0 < block["mrr"] <= 1.0
    assert 1.0 <= block["mr"] <= 14.0
    assert 0.0 <= block["hits@1"] <= block["hits@3"] <= block["hits@10"] <= 1.0


def test_train_writes_run_folder(nations_run, capsys):
    code, run_dir = nations_run
    assert code == 0
    assert (run_dir / "config.yaml").is_file()
    assert (run_dir / "checkpoints" / "best.pt").is_file()
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["dataset"]["name"] == "nations" and saved["model"]["dim"] == 16

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"valid", "test", "ties"} <= set(metrics)
    assert metrics["ties"] == "realistic"
    for split, count in (("valid", 199), ("test", 201)):
        block = metrics[split]
        assert {"both", "head", "tail", "per_relation"} <= set(block)
        _check_metrics(block["both"])
        _check_metrics(block["head"])
        _check_metrics(block["tail"])
        assert block["both"]["count"] == 2 * count
        assert block["head"]["count"] == block["tail"]["count"] == count
        assert sum(m["count"] for m in block["per_relation"].values()) == 2 * count
        for m in block["per_relation"].values():
            _check_metrics(m)


def test_evaluate_run(nations_run, capsys):
    code, run_dir = nations_run
    assert code == 0
    code, out, _ = run(capsys, "evaluate", str(run_dir), "--json")
    assert code == 0
    metrics = json.loads(out)
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["ties"] == "realistic"
    assert metrics["test"]["both"] == pytest.approx(saved["test"]["both"])

    code, out, _ = run(capsys, "evaluate", str(run_dir), "--split", "valid", "--ties", "optimistic")
    assert code == 0
    assert out.splitlines()[0].split()[:2] == ["valid", "MRR"]
    both = out.splitlines()[1].split()
    assert both[0] == "both"
    assert float(both[1]) >= saved["valid"]["both"]["mrr"] - 1e-4  # optimistic >= realistic
    code, _, err = run(capsys, "evaluate", str(run_dir), "--ties", "random")
    assert code == 2 and "evaluation.ties" in err and "realistic" in err  # the config's check
    assert len(err.strip().splitlines()) == 1


def test_evaluate_runs_on_the_device_it_is_given(nations_run, capsys, monkeypatch):
    """`--set device=...` moves the evaluation (the run's own device otherwise); one that is
    not there is one line, exit 2."""
    code, run_dir = nations_run
    assert code == 0
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    code, _, err = run(capsys, "evaluate", str(run_dir), "--set", "device=cuda")
    assert code == 2
    assert err.strip().splitlines() == [
        "vlkge: error: device cuda requested but CUDA is not available"
    ]


def test_predict_run(nations_run, capsys):
    code, run_dir = nations_run
    assert code == 0
    code, out, _ = run(
        capsys,
        "predict",
        str(run_dir),
        "--head",
        "uk",
        "--relation",
        "embassy",
        "--top-k",
        "5",
        "--json",
    )
    assert code == 0
    answers = json.loads(out)
    assert [a["rank"] for a in answers] == [1, 2, 3, 4, 5]
    scores = [a["score"] for a in answers]
    assert scores == sorted(scores, reverse=True)
    assert all(isinstance(a["known"], bool) and isinstance(a["entity"], str) for a in answers)

    code, out, _ = run(
        capsys,
        "predict",
        str(run_dir),
        "--tail",
        "usa",
        "--relation",
        "embassy",
        "--top-k",
        "3",
        "--exclude-known",
    )
    assert code == 0
    assert out.startswith("top 3 for (?, embassy, usa)")
    # 11 of the 14 entities are known heads; the other 3 are the answers
    assert len(out.splitlines()) == 4
    assert " * " not in out.split("\n", 1)[1]  # known triples excluded

    code, _, err = run(
        capsys, "predict", str(run_dir), "--head", "atlantis", "--relation", "embassy"
    )
    assert code == 2
    assert_one_line_error(err, "unknown entity 'atlantis'")
    code, _, err = run(
        capsys, "predict", str(run_dir), "--head", "uk", "--tail", "usa", "--relation", "embassy"
    )
    assert code == 2
    assert_one_line_error(err, "exactly one of")


def test_predict_exclude_known_drops_them(nations_run, capsys):
    """``--exclude-known`` drops known triples, even when k exceeds the unknown answers."""
    from vlkge.data import load_dataset

    code, run_dir = nations_run
    assert code == 0
    kg = load_dataset("nations")
    usa, embassy = kg.entity_id("usa"), kg.relation_id("embassy")
    triples = kg.all_triples()
    known = {kg.entities[h] for h, r, t in triples.tolist() if r == embassy and t == usa}
    assert known
    code, out, _ = run(
        capsys,
        "predict",
        str(run_dir),
        "--tail",
        "usa",
        "--relation",
        "embassy",
        "--top-k",
        "14",
        "--exclude-known",
        "--json",
    )
    assert code == 0
    answers = json.loads(out)
    assert not any(a["known"] for a in answers)
    assert {a["entity"] for a in answers}.isdisjoint(known)
    assert len(answers) == 14 - len(known)


def test_train_refuses_a_folder_with_another_config(nations_run, capsys):
    code, run_dir = nations_run
    assert code == 0
    code, _, err = run(capsys, "train", "--out", str(run_dir), *_sets(TINY), "--set", "seed=7")
    assert code == 2
    assert_one_line_error(err, "another config", "seed")


def test_train_nations_with_filtered_negatives(tmp_path, capsys):
    """The default negative filter (known train triples rejected) must not make a tiny
    Nations run impossible: 4 negatives out of 14 entities is a modest request."""
    code, _, err = run(
        capsys, "train", "--out", str(tmp_path / "run"), *_sets(TINY), "--set", "training.epochs=1"
    )
    assert code == 0, err


def test_a_run_with_relative_paths_works_from_another_folder(
    tmp_path, monkeypatch, capsys, make_dataset
):
    """The paths of config.yaml are made absolute when a run starts, so evaluate and predict
    work from any folder; metrics.json names the encoder that made the run's features."""
    from fakes import LetterColourEncoder

    from vlkge.data.datasets import load_dataset
    from vlkge.encoders.cache import FeatureCache

    work = tmp_path / "work"
    folder = make_dataset(work / "kg")
    texts = "".join(f"{e}\ttext\tthe thing called {e}\n" for e in "abcd")
    (folder / "manifest.tsv").write_text(texts, encoding="utf-8")
    monkeypatch.chdir(work)
    kg = load_dataset("kg")
    FeatureCache("cache").update(LetterColourEncoder(), kg.manifest, kg.entities, ["text"])
    settings = ["dataset.name=kg", "features.cache_dir=cache", "model.modalities=[text]"]
    settings += ["model.dim=4", "training.epochs=2", "training.negatives.num=2"]
    settings += ["training.progress=false", "report.after_train=false", "compile=false"]
    code, _, err = run(capsys, "train", "--out", "run", *_sets(settings))
    assert code == 0, err
    saved = yaml.safe_load((work / "run" / "config.yaml").read_text())
    assert saved["dataset"]["name"] == str(folder)
    assert saved["features"]["cache_dir"] == str(work / "cache")
    metrics = json.loads((work / "run" / "metrics.json").read_text())
    assert metrics["features"] == {"text": {"encoder": "stub-vl", "width": 6}}

    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "evaluate", "work/run", "--json")
    assert code == 0, err
    assert json.loads(out)["test"]["both"] == pytest.approx(metrics["test"]["both"])
    code, out, err = run(
        capsys, "predict", "work/run", "--head", "a", "--relation", "likes", "--json"
    )
    assert code == 0, err
    assert len(json.loads(out)) == 4
