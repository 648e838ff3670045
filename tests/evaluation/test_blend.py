"""Late fusion with the zero-shot baseline: the blended scorer against its formula, weights fit
per (relation, side) on validation, the evaluator, a trained run and ``vlkge evaluate``."""

from __future__ import annotations

import json

import pytest
import torch

from tests.evaluation.test_calibration import E, R, dense_scorer, graph, random_scores, settings
from tests.evaluation.test_zero_shot import TEMPLATES, BagOfWords, write_toy
from vlkge.config import load_config
from vlkge.errors import ConfigError, VlkgeError
from vlkge.evaluation import zero_shot as zero_shot_mod
from vlkge.evaluation.blend import blended, recorded_weights, remembered
from vlkge.evaluation.calibration import fit_weights
from vlkge.evaluation.evaluator import Evaluator


def test_blended_scores_add_the_weighted_other_per_relation_and_side_also_within_a_span():
    base, other = random_scores(1), random_scores(2)
    weights = {"tail": torch.tensor([0.0, 2.0]), "head": torch.tensor([1.0, 0.5])}
    fn = blended(dense_scorer(base), dense_scorer(other), weights)
    anchor, relation = torch.tensor([0, 4, 6]), torch.tensor([1, 0, 1])
    for side in ("tail", "head"):
        first = dense_scorer(base)(side, anchor, relation)
        second = dense_scorer(other)(side, anchor, relation)
        expected = first + weights[side][relation, None] * second
        assert torch.allclose(fn(side, anchor, relation), expected)
        assert torch.allclose(fn(side, anchor, relation, (2, 5)), expected[:, 2:5])
    assert fn("tail", anchor, relation).shape == (3, E)


def test_recorded_weights_rebuild_a_fit_from_its_metrics_json_summary():
    """Both sides, 0 where the summary names nothing (a side not evaluated: the scorer alone),
    and a record that is not a fit's is one line (metrics.json is a file a user may edit)."""
    weights = recorded_weights({"tail": {"r1": 2.0, "r0": 1}}, ["r0", "r1"])
    assert set(weights) == {"head", "tail"}
    assert weights["tail"].tolist() == [1.0, 2.0] and weights["head"].tolist() == [0.0, 0.0]
    for chosen, words in [
        ([1], "expected {side: {relation: weight}}"),
        ({"up": {}}, "side 'up'"),
        ({"tail": {"r9": 1.0}}, "relation 'r9'"),
        ({"tail": {"r0": True}}, "not a number"),
    ]:
        with pytest.raises(VlkgeError, match=words):
            recorded_weights(chosen, ["r0", "r1"])


def test_a_chunk_without_weight_does_not_call_the_other_scorer():
    def other(*_):
        raise AssertionError("called")

    base = dense_scorer(random_scores())
    zero = {side: torch.zeros(R) for side in ("head", "tail")}
    anchor, relation = torch.tensor([1, 2]), torch.tensor([0, 1])
    assert torch.equal(
        blended(base, other, zero)("head", anchor, relation), base("head", anchor, relation)
    )


def two_needs():
    """Model and other scores on :func:`graph`: for relation r the model knows every valid
    answer and the other scorer puts it last; for s it is the other way round."""
    kg = graph()
    n = kg.num_entities
    noise = torch.Generator().manual_seed(0)
    model = torch.randn(kg.num_relations, n, n, generator=noise) * 0.01
    other = torch.randn(kg.num_relations, n, n, generator=noise) * 0.01
    r, s = kg.relation_id("r"), kg.relation_id("s")
    for h, rel, t in kg.splits["valid"].tolist():
        model[rel, h, t] += 10.0 if rel == r else -10.0
        other[rel, h, t] += -1.0 if rel == r else 1.0
    assert {r, s} == set(kg.splits["valid"][:, 1].tolist())
    return kg, dense_scorer(model), dense_scorer(other)


def test_the_fit_picks_per_relation_the_weight_with_the_best_validation_mrr():
    kg, model, other = two_needs()
    evaluator = Evaluator(kg, settings("evaluation.zero_shot_blend.weights=[0.5,100]"))
    before = evaluator.evaluate_scores(model, "valid")["both"]["mrr"]
    fn, summary = evaluator.blend(model, other)
    assert summary == {"split": "valid", "weights": {"head": {"s": 100.0}, "tail": {"s": 100.0}}}
    assert before < 0.9
    assert evaluator.evaluate_scores(fn, "valid")["both"]["mrr"] == pytest.approx(1.0)
    # one weight for every relation cannot do it: each grid value fails one relation
    for w in (0.0, 0.5, 100.0):
        uniform = {side: torch.full((kg.num_relations,), w) for side in ("head", "tail")}
        mrr = evaluator.evaluate_scores(blended(model, other, uniform), "valid")["both"]["mrr"]
        assert mrr < 0.9


def counted(score_fn):
    """``score_fn`` and the list of the calls it answered."""
    calls = []

    def score(side, anchor, relation, span=None):
        calls.append((side, tuple(anchor.tolist()), span))
        return score_fn(side, anchor, relation, span)

    return score, calls


def test_remembered_answers_a_repeated_call_from_memory_until_forgotten():
    base, calls = counted(dense_scorer(random_scores()))
    fn, forget = remembered(base)
    anchor, relation = torch.tensor([1, 2]), torch.tensor([0, 1])
    first = fn("tail", anchor, relation)
    assert fn("tail", anchor.clone(), relation.clone()) is first and len(calls) == 1
    fn("head", anchor, relation)
    fn("tail", anchor, relation, (2, 5))
    fn("tail", anchor, torch.tensor([1, 1]))
    assert len(calls) == 4
    forget()
    assert torch.equal(fn("tail", anchor, relation), first) and len(calls) == 5


def test_the_fit_scores_each_part_once_per_piece_and_matches_a_pass_per_weight():
    kg = graph()
    n = kg.num_entities
    model, model_calls = counted(dense_scorer(torch.randn(kg.num_relations, n, n)))
    other, other_calls = counted(dense_scorer(torch.randn(kg.num_relations, n, n)))
    grid = [0.5, 1.0, 3.0]
    # max_scores = E: pieces of one triple, so the memory never holds the whole split
    evaluator = Evaluator(
        kg, settings(f"evaluation.zero_shot_blend.weights={grid}", f"evaluation.max_scores={n}")
    )
    fn, summary = evaluator.blend(model, other)
    queries = 2 * len(evaluator.triples("valid"))
    assert len(model_calls) == len(other_calls) == queries  # not once per weight
    every = {}
    for w in (0.0, *grid):
        uniform = {side: torch.full((kg.num_relations,), w) for side in ("head", "tail")}
        every[w] = Evaluator(kg, settings()).rank(blended(model, other, uniform), "valid")
    weights = fit_weights(every, evaluator.triples("valid")[:, 1], kg.num_relations)
    chosen = {
        side: {kg.relations[r]: float(w) for r, w in enumerate(weights[side]) if w}
        for side in ("head", "tail")
    }
    assert summary["weights"] == chosen
    anchor, relation = torch.tensor([0, 3]), torch.tensor([1, 0])
    expected = blended(model, other, weights)("tail", anchor, relation)
    assert torch.equal(fn("tail", anchor, relation), expected)


def test_off_by_default_and_bad_settings_are_one_line_naming_the_key():
    kg, model, other = two_needs()
    assert Evaluator(kg, settings()).blend(model, other) == (model, None)
    with pytest.raises(ConfigError, match=r"zero_shot_blend.weights\[0\] must not be negative"):
        settings("evaluation.zero_shot_blend.weights=[-1]")  # the other cases: tests/config
    evaluator = Evaluator(
        kg,
        settings("evaluation.zero_shot_blend.weights=[1]", "evaluation.zero_shot_blend.split=dev"),
    )
    with pytest.raises(ConfigError, match="no dev split"):
        evaluator.blend(model, other)


def toy_run(folder, *extra: str) -> list[str]:
    """Overrides of a two-epoch inductive run on the toy graph of ``write_toy(folder)``, with
    the toy's prompts, plus ``extra``."""
    return [
        f"dataset.name={folder}",
        "dataset.setting=inductive",
        *extra,
        "model.dim=4",
        "training.epochs=2",
        "training.negatives.num=2",
        "training.progress=false",
        "report.after_train=false",
        f"zero_shot.templates={json.dumps(TEMPLATES)}",
    ]


def check_toy_summary(summary: dict, grid: set[float]) -> None:
    """A blend's ``metrics.json`` summary on the toy graph: fit on valid, both sides, only
    the toy's relations, only weights of ``grid``."""
    assert summary["split"] == "valid" and set(summary["weights"]) == {"head", "tail"}
    for side in summary["weights"].values():
        assert set(side) <= {"hyper", "part"} and set(side.values()) <= grid


def test_a_trained_run_reports_the_blend_and_evaluate_sets_it(
    tmp_path, make_dataset, monkeypatch, capsys
):
    from vlkge.cli import main
    from vlkge.training.run import train

    encoders = []

    def tiny_encoder(cfg):
        encoders.append(BagOfWords())
        return encoders[-1]

    monkeypatch.setattr(zero_shot_mod, "configured_encoder", tiny_encoder)
    folder = write_toy(tmp_path / "toy", make_dataset)
    base = toy_run(folder, f"features.cache_dir={tmp_path / 'cache'}")
    plain = train(load_config(overrides=base), tmp_path / "plain")
    assert "zero_shot_blend" not in plain and encoders == []  # off: no encoder built
    cfg = load_config(overrides=[*base, "evaluation.zero_shot_blend.weights=[1,50]"])
    metrics = train(cfg, tmp_path / "run")
    summary = metrics["zero_shot_blend"]
    check_toy_summary(summary, {1.0, 50.0})
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["zero_shot_blend"] == summary
    assert "a cat" in encoders[0].seen  # the anchors' texts were encoded into the cache
    # evaluate reproduces it, and may switch it on for a run trained without it
    assert main(["evaluate", str(tmp_path / "run"), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["zero_shot_blend"] == summary
    assert again["test"]["both"]["mrr"] == pytest.approx(metrics["test"]["both"]["mrr"])
    run = str(tmp_path / "plain")
    args = ["evaluate", run, "--json", "--set", "evaluation.zero_shot_blend.weights=[1,50]"]
    assert main(args) == 0
    assert "zero_shot_blend" in json.loads(capsys.readouterr().out)
    assert main([*args, "--set", "zero_shot.templates={nope: 'x {}'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert "zero_shot.templates" in err and "nope" in err and "\n" not in err
    assert main(["evaluate", run, "--set", "evaluation.zero_shot_blend.weights=[-2]"]) == 2
    assert "evaluation.zero_shot_blend.weights[0] must not be negative" in capsys.readouterr().err


def test_train_refuses_a_template_of_another_graph_before_training(tmp_path, make_dataset, capsys):
    """A recipe carried over from another graph whose prompts name a relation this graph lacks
    stops `vlkge train` at once, in one line, with no epoch trained and no run folder left
    behind (it used to fail in the final evaluation, after the whole training)."""
    from vlkge.cli import main

    folder = write_toy(tmp_path / "toy", make_dataset)
    out = tmp_path / "run"
    args = ["train", "--set", f"dataset.name={folder}", "--set", "dataset.setting=inductive"]
    args += ["--set", "evaluation.zero_shot_blend.weights=[1,50]", "--out", str(out)]
    args += ["--set", "zero_shot.templates={_instance_hypernym: 'an instance of {}'}"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "zero_shot.templates: unknown relation '_instance_hypernym'" in err and "\n" not in err
    assert not (out / "checkpoints").exists()
