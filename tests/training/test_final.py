"""A run's final scorer (training/final.py). Late fusion with a second trained run
(``evaluation.run_blend``): the blended metrics against a brute-force ranking of ``score_A + w *
score_B``, set in a config or by ``vlkge evaluate``; a partner that is missing or trained on
another graph is one line (exit 2); and ``vlkge predict``, ``vlkge serve`` rank with the blends
a run's metrics.json records (``recorded_scorer``)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from tests.conftest import TOY_TEST, TOY_TRAIN, TOY_VALID
from vlkge.cli import main
from vlkge.config import load_config
from vlkge.evaluation.evaluator import Evaluator, model_scorer
from vlkge.training.final import recorded_scorer
from vlkge.training.run import train
from vlkge.training.setup import load_run

BASE = ["training.progress=false", "report.after_train=false", "tracking.tensorboard=false"]
#: the partner: DistMult trained 1-vs-all on Nations, far better than the weak first run
PARTNER = ["model.backbone=distmult", "model.dim=16", "training.regime=1vsall", "training.loss=ce"]
PARTNER += ["training.epochs=6", "training.batch_size=64", "seed=1"]
#: TransE after one epoch of negative sampling: the partner's scores pay on some relations
WEAK = ["model.dim=8", "training.epochs=1", "training.negatives.num=2"]


@pytest.fixture
def runs(tmp_path):
    """The folder holding the partner run ``b`` on Nations, and the other run's overrides."""
    common = ["dataset.name=nations", *BASE]
    train(load_config(overrides=[*common, *PARTNER]), tmp_path / "b")
    return tmp_path, [*common, *WEAK]


def brute_force_mrr(run_a, run_b, weights: dict) -> float:
    """Test MRR of ``score_A + w[side][r] * score_B``: every candidate scored, the known
    answers of the query's own direction removed, ties at the mean of their ranks."""
    _, kg, model_a = load_run(run_a)
    _, _, model_b = load_run(run_b)
    a, b = model_scorer(model_a), model_scorer(model_b)
    known = {tuple(t) for s in ("train", "valid", "test") for t in kg.splits[s].tolist()}
    reciprocal = []
    for h, r, t in kg.splits["test"].tolist():
        name = kg.relations[r]
        for side, anchor, answer in (("tail", h, t), ("head", t, h)):
            w = weights.get(side, {}).get(name, 0.0)
            args = (side, torch.tensor([anchor]), torch.tensor([r]))
            with torch.no_grad():
                scores = (a(*args) + w * b(*args))[0].double()
            others = [
                e
                for e in range(kg.num_entities)
                if e != answer and ((h, r, e) if side == "tail" else (e, r, t)) not in known
            ]
            rest = scores[others]
            rank = 1 + (rest > scores[answer]).sum().item() + (rest == scores[answer]).sum() / 2
            reciprocal.append(1.0 / float(rank))
    return sum(reciprocal) / len(reciprocal)


def test_a_trained_run_blends_its_partner_as_the_formula_ranks(runs, capsys, monkeypatch):
    tmp_path, common = runs
    partner = tmp_path / "b"
    cfg = load_config(overrides=[*common, "evaluation.run_blend.run=b"])
    monkeypatch.chdir(tmp_path)  # a relative path is resolved against the current folder
    metrics = train(cfg, tmp_path / "a")
    monkeypatch.undo()  # ... once: the run folder holds the absolute path
    summary = metrics["run_blend"]
    assert summary["run"] == str(partner) and summary["split"] == "valid"
    saved = load_config(tmp_path / "a" / "config.yaml")
    assert saved["evaluation"]["run_blend"]["run"] == str(partner)
    grid = set(cfg["evaluation"]["run_blend"]["weights"])  # the default grid
    chosen = [w for side in summary["weights"].values() for w in side.values()]
    assert chosen and set(chosen) <= grid  # the partner pays on some relations
    expected = brute_force_mrr(tmp_path / "a", partner, summary["weights"])
    assert metrics["test"]["both"]["mrr"] == pytest.approx(expected, abs=1e-9)

    assert main(["evaluate", str(tmp_path / "a"), "--json"]) == 0  # reproduced from the folder
    again = json.loads(capsys.readouterr().out)
    assert again["run_blend"] == summary
    assert again["test"]["both"]["mrr"] == pytest.approx(expected, abs=1e-9)


def test_evaluate_sets_it_and_a_run_blended_with_itself_ranks_as_alone(runs, capsys):
    tmp_path, common = runs
    run = str(tmp_path / "b")
    assert main(["evaluate", run, "--json"]) == 0
    alone = json.loads(capsys.readouterr().out)
    assert main(["evaluate", run, "--json", "--set", f"evaluation.run_blend.run={run}"]) == 0
    both = json.loads(capsys.readouterr().out)
    assert "run_blend" not in alone and both["run_blend"]["run"] == run
    assert both["test"]["both"] == pytest.approx(alone["test"]["both"])  # (1 + w) x the same


def test_a_missing_partner_or_one_of_another_graph_is_one_line(runs, make_dataset, capsys):
    tmp_path, common = runs
    run = str(tmp_path / "b")
    missing = tmp_path / "nowhere"
    assert main(["evaluate", run, "--set", f"evaluation.run_blend.run={missing}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"vlkge: error: evaluation.run_blend.run: {missing}: no such run folder"
    config = tmp_path / "text.yaml"  # a training run checks before its first epoch
    config.write_text(f"evaluation: {{run_blend: {{run: {missing}}}}}\n")
    out = tmp_path / "never"
    command = ["train", "--config", str(config), "--out", str(out), "--set", "dataset.name=nations"]
    assert main(command) == 2
    assert capsys.readouterr().err.strip() == err
    assert not (out / "trace.jsonl").exists()

    other = make_dataset(
        tmp_path / "kg2", train=[*TOY_TRAIN, ("a", "sees", "z")], valid=TOY_VALID, test=TOY_TEST
    )
    other_run = [f"dataset.name={other}", *BASE, *WEAK]
    train(load_config(overrides=other_run), tmp_path / "other")
    assert main(["evaluate", run, "--set", f"evaluation.run_blend.run={tmp_path / 'other'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"{tmp_path / 'other'} was trained on" in err
    assert "not on this run's graph" in err


def test_a_partner_leaves_the_process_settings_of_the_run_it_joins(runs, capsys):
    """The partner's num_threads (and seed, kernels) are not applied: a run evaluated with 1
    thread stays at 1 thread after a partner saved with 3 is loaded, as a server keeps the
    first of its runs' settings."""
    from vlkge.serving.state import load_served_runs

    tmp_path, _ = runs
    run = tmp_path / "b"
    partner = tmp_path / "c"
    shutil.copytree(run, partner)
    config = partner / "config.yaml"
    config.write_text(config.read_text().replace("\nnum_threads: null\n", "\nnum_threads: 3\n"))
    assert load_config(config)["num_threads"] == 3
    before = torch.get_num_threads()
    try:
        command = ["evaluate", str(run), "--set", "num_threads=1"]
        assert main([*command, "--set", f"evaluation.run_blend.run={partner}"]) == 0
        assert torch.get_num_threads() == 1
        load_served_runs([run, partner])
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    capsys.readouterr()


@pytest.fixture(scope="module")
def blended(tmp_path_factory):
    """Run ``a`` trained with ``b`` blended in (once for the module): its folder and metrics."""
    folder = tmp_path_factory.mktemp("blended")
    common = ["dataset.name=nations", *BASE]
    train(load_config(overrides=[*common, *PARTNER]), folder / "b")
    cfg = load_config(overrides=[*common, *WEAK, f"evaluation.run_blend.run={folder / 'b'}"])
    return folder / "a", train(cfg, folder / "a")


def test_the_recorded_scorer_ranks_as_the_run_was_evaluated(blended):
    """What predict and serve rank with, rebuilt from metrics.json with nothing fit: the
    run's test metrics to the last digit, and the blend's formula."""
    run, metrics = blended
    cfg, kg, model = load_run(run)
    scorer, stages = recorded_scorer(run, cfg, kg, model)
    assert stages == ["run_blend"]
    evaluator = Evaluator(kg, cfg["evaluation"])
    assert evaluator.evaluate_scores(scorer, "test") == metrics["test"]
    _, _, partner = load_run(run.parent / "b")
    weights = metrics["run_blend"]["weights"]
    (name, w), side = next(iter(weights["tail"].items())), "tail"
    ids = torch.tensor([3]), torch.tensor([kg.relation_id(name)])
    with torch.no_grad():
        expected = model_scorer(model)(side, *ids) + w * model_scorer(partner)(side, *ids)
    assert torch.allclose(scorer(side, *ids), expected)


def test_predict_ranks_with_the_blends_unless_model_only(blended, capsys):
    run, metrics = blended
    cfg, kg, model = load_run(run)
    name, _ = next(iter(metrics["run_blend"]["weights"]["tail"].items()))
    anchor = kg.entities[3]
    query = ["predict", str(run), "--head", anchor, "--relation", name, "--top-k", "3"]
    scorers = {
        "blended": recorded_scorer(run, cfg, kg, model)[0],
        "alone": model_scorer(model),
    }
    ranked = {}
    for flags, which in (([], "blended"), (["--model-only"], "alone")):
        assert main([*query, *flags, "--json"]) == 0
        got = json.loads(capsys.readouterr().out)
        with torch.no_grad():
            scores = scorers[which]("tail", torch.tensor([3]), torch.tensor([kg.relation_id(name)]))
        best = torch.topk(scores[0], 3)
        assert [a["entity"] for a in got] == [kg.entities[i] for i in best.indices.tolist()]
        assert [a["score"] for a in got] == pytest.approx(best.values.tolist())
        ranked[which] = [a["entity"] for a in got]
    assert main(query) == 0
    assert "scored as evaluated: the model + run_blend" in capsys.readouterr().out
    # the server ranks alike
    from vlkge.serving.state import load_served_runs

    (served,) = load_served_runs([run]).values()
    assert served.summary()["blends"] == ["run_blend"]
    answers = served.predict("tail", anchor, name, 3, exclude_known=False)["answers"]
    assert [a["entity"] for a in answers] == ranked["blended"]


@pytest.mark.parametrize(
    "record, words",
    [
        ({"split": "valid", "weights": {"tail": {"nope": 1.0}}, "run": "b"}, "relation 'nope'"),
        ({"split": "valid", "weights": {"tail": {}}}, "run_blend: expected a record with"),
        ({"split": "valid", "weights": {"tail": {}}, "run": 3}, "weights, run"),
        ({"weights": {"sideways": {}}, "run": "b"}, "side 'sideways'"),
        ({"weights": {"tail": {"r": "x"}}, "run": "b"}, "not a number"),
    ],
)
def test_a_malformed_record_is_one_line_naming_the_file(blended, capsys, record, words):
    run, metrics = blended
    name = next(iter(metrics["run_blend"]["weights"]["tail"]))
    record = json.loads(json.dumps(record).replace('"r"', json.dumps(name)))
    if record.get("run") == "b":
        record["run"] = str(run.parent / "b")
    saved = run / "metrics.json"
    kept = saved.read_text()
    saved.write_text(json.dumps({**metrics, "run_blend": record}))
    try:
        query = ["predict", str(run), "--head", "usa", "--relation", name]
        assert main(query) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and str(saved) in err and words in err
        assert main([*query, "--model-only"]) == 0
    finally:
        saved.write_text(kept)
