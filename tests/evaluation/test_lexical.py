"""The lexical baseline: its words, its scores against a brute-force TF-IDF written out here,
`vlkge zero-shot` with it (no encoder built) and its blend in a trained run's evaluation."""

from __future__ import annotations

import json
import math
from collections import Counter

import pytest
import torch

from tests.evaluation.test_blend import check_toy_summary, toy_run
from tests.evaluation.test_zero_shot import write_toy
from vlkge.cli import main
from vlkge.config import load_config
from vlkge.evaluation import zero_shot as zero_shot_mod
from vlkge.evaluation.lexical import LexicalScorer, words

NAMES = ["working dog", "dog, domestic dog", "sled dog", "harness", "dog breeds", "Zoë"]
TEXTS = [
    "any of several breeds of usually large powerful dogs bred to work",
    "a member of the genus Canis",
    "a dog trained to pull a sled",
    "stable gear consisting of an arrangement of straps",
    "",
    "a name with an accent; Zoë's dogs",
]


def test_words_lower_case_drop_stop_words_and_strip_plurals():
    assert words("The Dogs of a Working-Class breeds") == ["dog", "working", "class", "breed"]
    assert words("boxes, classes, ponies, virus, glass, 3 d") == [
        "box", "class", "pony", "virus", "glass"
    ]  # fmt: skip
    assert words("Zoë's café") == ["zoë", "café"]  # letters of any script; "s" alone dropped


def brute_force(names, texts):
    """The module docstring's formula, entry by entry with dictionaries."""
    docs = [Counter(words(n)) for n in names] + [Counter(words(t)) for t in texts]
    df = Counter(w for doc in docs for w in doc)
    idf = {w: max(0.0, math.log(len(docs) / (1 + c))) for w, c in df.items()}

    def vector(doc):
        raw = {w: c * idf[w] for w, c in doc.items()}
        norm = math.sqrt(sum(v * v for v in raw.values())) or 1.0
        return {w: v / norm for w, v in raw.items()}

    name_vec = [vector(d) for d in docs[: len(names)]]
    text_vec = [vector(d) for d in docs[len(names) :]]

    def dot(a, b):
        return sum(v * b.get(w, 0.0) for w, v in a.items())

    n = len(names)
    out = torch.zeros(n, n)
    for h in range(n):
        for t in range(n):
            if h != t:
                out[h, t] = dot(text_vec[h], name_vec[t]) + dot(name_vec[h], text_vec[t])
    return out


def test_scores_equal_the_brute_force_tfidf_both_ways_with_a_zero_diagonal():
    scorer = LexicalScorer(NAMES, TEXTS)
    expected = brute_force(NAMES, TEXTS)
    every = torch.arange(len(NAMES))
    relation = torch.zeros(len(NAMES), dtype=torch.long)
    assert torch.allclose(scorer("tail", every, relation), expected, atol=1e-6)
    assert torch.allclose(scorer("head", every, relation), expected.T, atol=1e-6)  # symmetric
    assert scorer.pairs == int((expected != 0).sum())
    # "working dog"'s text names dog breeds and dogs: its broader entity outscores the harness
    assert expected[0, 1] > expected[0, 3] == 0
    anchor = torch.tensor([2, 0, 2])  # repeated anchors, any order
    fn = scorer.scorer()
    assert torch.allclose(fn("tail", anchor, relation[:3], (1, 4)), expected[anchor][:, 1:4])


def test_a_new_entity_scores_by_the_formula_with_the_graphs_vocabulary_and_idf():
    """``new_rows`` (an entity outside the graph, ``vlkge predict --new-name``) against the
    formula entry by entry: the graph's idf, the new entity's words the graph lacks ignored;
    one of the graph's own entities given again scores as it does, but for itself."""
    scorer = LexicalScorer(NAMES, TEXTS)
    docs = [Counter(words(d)) for d in (*NAMES, *TEXTS)]
    df = Counter(w for doc in docs for w in doc)
    idf = {w: max(0.0, math.log(len(docs) / (1 + c))) for w, c in df.items()}

    def vector(text):
        raw = {w: c * idf[w] for w, c in Counter(words(text)).items() if w in idf}
        norm = math.sqrt(sum(v * v for v in raw.values())) or 1.0
        return {w: v / norm for w, v in raw.items()}

    def dot(a, b):
        return sum(v * b.get(w, 0.0) for w, v in a.items())

    name, text = "husky", "a sled dog of the north, one of the dog breeds"  # "north": unknown
    expected = torch.tensor(
        [
            dot(vector(text), vector(NAMES[t])) + dot(vector(name), vector(TEXTS[t]))
            for t in range(len(NAMES))
        ]
    )
    got = scorer.new_rows([name, NAMES[0]], [text, TEXTS[0]])
    assert torch.allclose(got[0], expected, atol=1e-6)
    assert expected[2] > 0 and expected[4] > 0  # it names the sled dog and the dog breeds
    assert torch.allclose(got[1, 1:], scorer.rows(torch.tensor([0]))[0, 1:], atol=1e-6)
    assert got[1, 0] > 0  # its own name in its own text (the graph's diagonal is 0)


def test_entities_without_words_score_zero_and_lengths_must_match():
    scorer = LexicalScorer(["a", "the"], ["", "of"])  # stop words and single letters only
    assert scorer.pairs == 0
    assert torch.equal(
        scorer("tail", torch.tensor([0, 1]), torch.tensor([0, 0])), torch.zeros(2, 2)
    )
    with pytest.raises(ValueError, match="2 names but 1 texts"):
        LexicalScorer(["x", "y"], ["z"])


def test_a_graph_with_too_many_word_sharing_pairs_is_one_line(monkeypatch):
    from vlkge.errors import VlkgeError
    from vlkge.evaluation import lexical

    monkeypatch.setattr(lexical, "MAX_PAIRS", 3)
    with pytest.raises(VlkgeError, match=r"would multiply 4 \(text, name\) pairs"):
        LexicalScorer(["dog", "dog"], ["a dog", "dogs"])  # 2 texts x 2 names share "dog"
    monkeypatch.setattr(lexical, "MAX_PAIRS", 4)
    assert LexicalScorer(["dog", "dog"], ["a dog", "dogs"]).pairs == 2  # the diagonal dropped


def test_cli_zero_shot_lexical_builds_no_encoder(tmp_path, make_dataset, monkeypatch, capsys):
    def no_encoder(cfg):
        raise AssertionError("the lexical baseline built an encoder")

    monkeypatch.setattr(zero_shot_mod, "configured_encoder", no_encoder)
    folder = write_toy(tmp_path / "toy", make_dataset)
    args = ["zero-shot", "--set", f"dataset.name={folder}", "--set", "dataset.setting=inductive"]
    args += ["--set", "zero_shot.scorer=lexical", "--out", str(tmp_path / "zs")]
    assert main(args) == 0
    metrics = json.loads((tmp_path / "zs" / "metrics.json").read_text())
    assert metrics["zero_shot"]["scorer"] == "lexical" and "encoder" not in metrics["zero_shot"]
    assert metrics["zero_shot"]["vocabulary"] > 0
    assert 0 < metrics["test"]["both"]["mrr"] <= 1
    capsys.readouterr()
    assert main([*args[:-2], "--set", "zero_shot.scorer=bm25", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert "zero_shot.scorer" in err and "lexical" in err and "\n" not in err


def test_a_trained_run_reports_the_lexical_blend_and_evaluate_sets_it(
    tmp_path, make_dataset, capsys
):
    from vlkge.training.run import train

    base = toy_run(write_toy(tmp_path / "toy", make_dataset))
    plain = train(load_config(overrides=base), tmp_path / "plain")
    assert "lexical_blend" not in plain
    metrics = train(
        load_config(overrides=[*base, "evaluation.lexical_blend.weights=[1,50]"]),
        tmp_path / "run",
    )
    summary = metrics["lexical_blend"]
    check_toy_summary(summary, {1.0, 50.0})
    assert main(["evaluate", str(tmp_path / "run"), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["lexical_blend"] == summary
    assert again["test"]["both"]["mrr"] == pytest.approx(metrics["test"]["both"]["mrr"])
    run = str(tmp_path / "plain")
    assert main(["evaluate", run, "--json", "--set", "evaluation.lexical_blend.weights=[2]"]) == 0
    assert "lexical_blend" in json.loads(capsys.readouterr().out)
    assert main(["evaluate", run, "--set", "evaluation.lexical_blend.weights=[-2]"]) == 2
    assert "evaluation.lexical_blend.weights[0] must not be negative" in capsys.readouterr().err
