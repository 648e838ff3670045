"""The hubness correction: penalties against brute force, the calibrated scorer, weights fit per
(relation, side) on validation, the evaluator, model runs and the zero-shot baseline."""

from __future__ import annotations

import pytest
import torch

from tests.evaluation.test_zero_shot import TEMPLATES, BagOfWords, features_of, toy_graph
from vlkge.config import load_config
from vlkge.data.graph import KnowledgeGraph
from vlkge.data.triples import LabeledTriples
from vlkge.errors import ConfigError
from vlkge.evaluation import calibration as cal
from vlkge.evaluation.blend import blended
from vlkge.evaluation.calibration import fit_weights, hub_penalties, penalty_scorer
from vlkge.evaluation.evaluator import Evaluator
from vlkge.evaluation.zero_shot import zero_shot

E, R = 7, 2


def dense_scorer(scores: torch.Tensor):
    """A ``ScoreFn`` over fixed ``[R, E, E]`` (head, tail) scores."""

    def score(side, anchor, relation, span=None):
        rows = scores[relation, anchor] if side == "tail" else scores[relation, :, anchor]
        return rows if span is None else rows[:, span[0] : span[1]]

    return score


def random_scores(seed=0):
    return torch.randn(R, E, E, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("bank", [0, 4])
def test_penalties_are_the_scaled_logsumexp_over_the_bank(monkeypatch, bank):
    monkeypatch.setattr(cal, "CHUNK", 3)  # several chunks
    scores = random_scores()
    got = hub_penalties(dense_scorer(scores), E, R, ("head", "tail"), 0.5, bank, seed=3)
    anchors = torch.arange(E)
    if bank:
        anchors = torch.randperm(E, generator=torch.Generator().manual_seed(3))[:bank].sort().values
    for r in range(R):
        tail_side = scores[r][anchors]  # rows: bank heads, columns: candidate tails
        head_side = scores[r][:, anchors].T  # rows: bank tails, columns: candidate heads
        for side, block in (("tail", tail_side), ("head", head_side)):
            t = 0.5 * float(block.std())
            expected = torch.tensor([t * torch.logsumexp(block[:, e] / t, 0) for e in range(E)])
            assert torch.allclose(got[side][r], expected, atol=1e-5)


def test_constant_scores_get_no_penalty_and_infinite_ones_are_ignored():
    scores = torch.zeros(R, E, E)
    scores[1, :, 2] = -torch.inf  # candidate 2 never allowed for relation 1
    scores[1, 0, 3] = 1.0
    got = hub_penalties(dense_scorer(scores), E, R, ("tail",), 0.3)
    assert torch.equal(got["tail"][0], torch.zeros(E))
    assert got["tail"][1][2] == 0 and torch.isfinite(got["tail"][1]).all()


def test_calibrated_scores_subtract_the_weighted_penalty_also_within_a_span():
    scores = random_scores(1)
    penalties = {"tail": torch.rand(R, E), "head": torch.rand(R, E)}
    weights = {"tail": torch.tensor([0.0, 2.0]), "head": torch.tensor([1.0, 0.5])}
    fn = blended(dense_scorer(scores), penalty_scorer(penalties), weights)
    anchor, relation = torch.tensor([0, 4, 6]), torch.tensor([1, 0, 1])
    for side in ("tail", "head"):
        base = dense_scorer(scores)(side, anchor, relation)
        expected = base - weights[side][relation, None] * penalties[side][relation]
        assert torch.allclose(fn(side, anchor, relation), expected)
        assert torch.allclose(fn(side, anchor, relation, (2, 5)), expected[:, 2:5])


def test_fit_picks_the_best_weight_per_relation_and_side_and_the_smallest_on_ties():
    relations = torch.tensor([0, 0, 1, 1])
    ranks = {
        0.0: {"tail": torch.tensor([2, 2, 1, 1]), "head": torch.tensor([5, 5, 3, 3])},
        0.5: {"tail": torch.tensor([1, 1, 1, 1]), "head": torch.tensor([5, 5, 2, 2])},
        1.0: {"tail": torch.tensor([1, 1, 4, 4]), "head": torch.tensor([5, 5, 1, 1])},
    }
    got = fit_weights(ranks, relations, 3)
    assert got["tail"].tolist() == [0.5, 0.0, 0.0]  # relation 2: no query, 0
    assert got["head"].tolist() == [0.0, 1.0, 0.0]


# --- in the evaluator -----------------------------------------------------------------------
TRAIN = [("a", "r", "b"), ("b", "r", "c"), ("c", "s", "a"), ("d", "s", "b"), ("e", "r", "f")]
VALID = [("a", "r", "c"), ("d", "r", "e"), ("f", "s", "a"), ("b", "s", "d")]
TEST = [("c", "r", "d"), ("e", "s", "c"), ("g", "r", "a")]


def graph() -> KnowledgeGraph:
    splits = {
        "train": LabeledTriples("train", TRAIN, list(range(1, 6))),
        "valid": LabeledTriples("valid", VALID, list(range(1, 5))),
        "test": LabeledTriples("test", TEST, list(range(1, 4))),
    }
    return KnowledgeGraph.from_labeled("toy", splits, inductive=True)


def settings(*overrides):
    return load_config(overrides=list(overrides))["evaluation"]


def test_off_by_default_and_the_scorer_is_unchanged():
    kg = graph()
    evaluator = Evaluator(kg, settings())
    fn = dense_scorer(random_scores())
    assert evaluator.calibrate(fn) == (fn, None)


def test_calibration_never_lowers_the_fit_split_and_is_reported():
    kg = graph()
    scores = random_scores(2)[:, : kg.num_entities, : kg.num_entities] * 3
    scores[:, :, 0] += 4.0  # entity 0 a hub for every relation and side
    base = dense_scorer(scores)
    plain = Evaluator(kg, settings()).evaluate_scores(base, "valid")["both"]["mrr"]
    evaluator = Evaluator(kg, settings("evaluation.calibration.weights=[0.5,1,2]"))
    fn, summary = evaluator.calibrate(base)
    fitted = evaluator.evaluate_scores(fn, "valid")["both"]["mrr"]
    assert fitted >= plain - 1e-12
    assert summary["split"] == "valid" and summary["temperature"] == 0.3
    assert set(summary["weights"]) == {"head", "tail"}
    for side in summary["weights"].values():
        assert set(side) <= set(kg.relations) and all(w in (0.5, 1.0, 2.0) for w in side.values())


def test_bad_weights_and_splits_are_config_errors():
    kg = graph()
    with pytest.raises(ConfigError, match="calibration.weights"):
        Evaluator(kg, settings("evaluation.calibration.weights=[-1]"))
    evaluator = Evaluator(
        kg,
        settings("evaluation.calibration.weights=[1]", "evaluation.calibration.split=dev"),
    )
    with pytest.raises(ConfigError, match="no dev split"):
        evaluator.calibrate(dense_scorer(random_scores()))
    with pytest.raises(ConfigError, match="temperature"):
        settings("evaluation.calibration.temperature=0")


def test_zero_shot_writes_the_fitted_weights():
    kg = toy_graph()
    rows = {"dog": "kind of animal", "leaf": "part of plant", "cat": "part of dog"}
    cfg = load_config(
        overrides=[
            "evaluation.splits=[valid,test]",
            "evaluation.calibration.weights=[1]",
            f"zero_shot.templates={TEMPLATES}".replace("'", '"'),
        ]
    )
    metrics = zero_shot(cfg, kg, BagOfWords(), features_of(kg, rows))
    assert metrics["calibration"]["split"] == "valid"
    assert set(metrics) == {"valid", "test", "ties", "zero_shot", "calibration"}


def test_a_trained_run_reports_calibrated_metrics_and_evaluate_reproduces_them(
    tmp_path, make_dataset, capsys
):
    import json

    from vlkge.cli import main
    from vlkge.training.run import train

    folder = make_dataset(tmp_path / "toy", train=TRAIN, valid=VALID, test=TEST)
    cfg = load_config(
        overrides=[
            f"dataset.name={folder}",
            "dataset.setting=inductive",
            "model.dim=4",
            "training.epochs=2",
            "training.negatives.num=2",
            "training.progress=false",
            "evaluation.calibration.weights=[0.5,1]",
        ]
    )
    metrics = train(cfg, tmp_path / "run")
    assert metrics["calibration"]["split"] == "valid"
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["calibration"] == metrics["calibration"]
    assert main(["evaluate", str(tmp_path / "run"), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    recorded = {k: v for k, v in metrics["calibration"].items() if k != "penalties_sha256"}
    assert again["calibration"] == recorded  # evaluate writes nothing: no file to name
    assert again["test"]["both"]["mrr"] == pytest.approx(metrics["test"]["both"]["mrr"])
    # evaluation settings of a trained run can change when it is evaluated, its model cannot
    run = str(tmp_path / "run")
    assert main(["evaluate", run, "--json", "--set", "evaluation.calibration.weights=[]"]) == 0
    assert "calibration" not in json.loads(capsys.readouterr().out)
    assert main(["evaluate", run, "--set", "model.dim=8"]) == 2
    assert "model.dim cannot change" in capsys.readouterr().err


@pytest.fixture
def calibrated_run(tmp_path, make_dataset):
    """A trained inductive run whose evaluation fit the calibration (and wrote its penalties)."""
    from vlkge.training.run import train

    folder = make_dataset(tmp_path / "toy", train=TRAIN, valid=VALID, test=TEST)
    overrides = [f"dataset.name={folder}", "dataset.setting=inductive", "model.dim=4"]
    overrides += ["training.epochs=2", "training.negatives.num=2", "training.progress=false"]
    overrides += ["evaluation.calibration.weights=[0.5,1,2]", "evaluation.calibration.bank=3"]
    return tmp_path / "run", train(load_config(overrides=overrides), tmp_path / "run")


def test_the_penalties_are_kept_in_the_run_and_read_back_not_recomputed(
    calibrated_run, monkeypatch, caplog
):
    """vlkge train writes the hub penalties beside metrics.json, which records their sha256;
    the recorded scorer (predict, serve) reads them and reproduces the test metrics without
    computing them; a file edited, replaced or missing is recomputed, with one line saying so."""
    import hashlib

    from vlkge.runfolder import PENALTIES
    from vlkge.training.final import recorded_scorer
    from vlkge.training.setup import load_run

    run, metrics = calibrated_run
    path = run / PENALTIES
    assert (
        hashlib.sha256(path.read_bytes()).hexdigest() == metrics["calibration"]["penalties_sha256"]
    )
    cfg, kg, model = load_run(run)
    kept = path.read_bytes()

    def test_metrics() -> dict:
        scorer, stages = recorded_scorer(run, cfg, kg, model)
        assert stages == ["calibration"]
        return Evaluator(kg, cfg["evaluation"]).evaluate_scores(scorer, "test")

    def refuse(*args):
        raise AssertionError("the penalties were recomputed")

    with monkeypatch.context() as patch:
        patch.setattr(Evaluator, "hub_penalties", refuse)
        assert test_metrics() == metrics["test"]
    cases = [
        (kept[:-5], "is not the file metrics.json records"),
        (None, "is missing"),
    ]
    for data, words in cases:
        if data is None:
            path.unlink()
        else:
            path.write_bytes(data)
        caplog.clear()
        assert test_metrics() == metrics["test"]
        assert words in caplog.text and "recomputed" in caplog.text
    path.write_bytes(kept)


def test_a_penalty_file_of_other_tables_is_recomputed(tmp_path, caplog):
    """A file with the recorded hash but tables of another shape, side or type: not used."""
    sides, shape = ("head", "tail"), (2, 3)
    for penalties in (
        {"head": torch.zeros(2, 3), "tail": torch.zeros(3, 2)},
        {"tail": torch.zeros(2, 3)},
        {"head": torch.zeros(2, 3), "tail": torch.full((2, 3), torch.inf)},
    ):
        sha = cal.save_penalties(tmp_path / "p.safetensors", penalties)
        caplog.clear()
        assert cal.load_penalties(tmp_path / "p.safetensors", sha, sides, shape) is None
        assert "does not hold finite" in caplog.text
    good = {"head": torch.ones(2, 3), "tail": torch.zeros(2, 3)}
    sha = cal.save_penalties(tmp_path / "p.safetensors", good)
    loaded = cal.load_penalties(tmp_path / "p.safetensors", sha, sides, shape)
    assert all(torch.equal(loaded[s], good[s]) for s in sides)
    (tmp_path / "p.safetensors").write_bytes(b"not a safetensors file")
    import hashlib

    sha = hashlib.sha256(b"not a safetensors file").hexdigest()
    caplog.clear()
    assert cal.load_penalties(tmp_path / "p.safetensors", sha, sides, shape) is None
    assert "unreadable" in caplog.text


def test_the_scale_is_the_std_of_all_finite_scores_combined_over_chunks():
    gen = torch.Generator().manual_seed(5)
    chunks = [torch.randn(3, 5, generator=gen) * 4 + 100, torch.randn(1, 5, generator=gen)]
    chunks.append(torch.full((2, 5), -torch.inf))
    chunks[0][1, 2] = -torch.inf
    every = torch.cat(chunks)
    expected = float(every[torch.isfinite(every)].double().std())
    assert cal._finite_std(chunks) == pytest.approx(expected, rel=1e-12)
    assert cal._finite_std([torch.full((2, 2), -torch.inf)]) == 0.0
