"""The run report: sections for every kind of run, qualitative predictions with the true answer
marked, thumbnails that survive bad images, errors as one line, and a failing report that never
costs a finished run."""

from __future__ import annotations

import json
import logging
import re
import shutil

import pytest

from vlkge.cli import main
from vlkge.config import load_config
from vlkge.data.datasets import load_dataset
from vlkge.errors import VlkgeError
from vlkge.reports import write_report
from vlkge.reports.samples import EntityViews, pick_queries, thumbnail

SECTIONS = ('id="summary"', 'id="metrics"', 'id="curves"', 'id="relation-bars"', 'id="coverage"')


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str, *fragments: str) -> None:
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("vlkge: error:")]
    assert len(lines) == 1 and err.strip().splitlines()[-1] == lines[0], err
    for fragment in fragments:
        assert fragment in lines[0]


def test_train_writes_a_report_without_validation(runs):
    """The structural Nations run (validation.every: 0, no manifest) got its report from
    `vlkge train`; no data: URI points outside the file."""
    page = (runs.structural / "report.html").read_text(encoding="utf-8")
    for section in (*SECTIONS, 'id="predictions"', 'id="config"'):
        assert section in page
    assert "no validation during training" in page
    assert 'id="metrics-test"' in page and 'id="relations-test"' in page
    assert "the model is structural only" in page
    assert re.search(r"<td>neither</td><td>14</td>", page)
    assert page.count('class="query"') == 3
    assert 'data-scorer="model"' in page and 'data-scorer="zero-shot"' not in page
    assert not re.search(r'src="(?!data:)', page)  # self-contained
    links = re.findall(r'<a href="#([^"]+)">', page)
    assert len(links) == 7 and all(f'id="{anchor}"' in page for anchor in links)  # navigation


def test_cli_report_multimodal_run(runs, capsys, tmp_path):
    out = tmp_path / "sub" / "vl.html"
    code, stdout, err = run_cli(capsys, "report", str(runs.multimodal), "--out", str(out))
    assert code == 0, err
    assert stdout.strip() == f"report: {out}"
    page = out.read_text(encoding="utf-8")
    for section in SECTIONS:
        assert section in page
    assert page.count('class="query"') == 3
    assert page.count("<li") == 9  # top 3 of 3 queries
    assert "data:image/jpeg;base64," in page  # thumbnails of the entities with a good image
    assert "the model uses image, text" in page
    assert re.search(r"<td>image \+ text</td><td>5</td>", page)
    # the encoder that wrote the feature cache, not encoder.name's default (minilm)
    assert '<b id="encoder">stub-vl (image 6-d, text 6-d)</b>' in page
    code, _, _ = run_cli(
        capsys, "report", str(runs.multimodal), "--samples", "0", "--out", str(out)
    )
    assert code == 0
    page = out.read_text(encoding="utf-8")
    assert 'class="query"' not in page and "report.samples: 0" in page


def test_report_with_zero_shot_baseline(runs, tmp_path):
    out = write_report(
        runs.multimodal, tmp_path / "r.html", zero_shot=runs.zero_shot, encoder=runs.encoder
    )
    page = out.read_text(encoding="utf-8")
    assert page.count('data-scorer="model"') == page.count('data-scorer="zero-shot"') == 3
    assert "zero-shot, both" in page and "zero-shot MRR" in page
    for block in page.split('<div class="query">')[1:]:
        answer = re.search(r"true answer: <b>([^<]*)</b>", block)[1]
        listed = re.findall(
            r'<li( class="answer")?><span class="rank">\d+</span>.*?<b>([^<]*)</b>', block
        )
        assert len(listed) == 6
        for marked, name in listed:  # the true answer is marked wherever it appears
            assert bool(marked) == (name == answer)
            assert (marked and "✓ true answer" in block) or not marked


def test_report_of_a_zero_shot_run(runs, tmp_path):
    page = write_report(runs.zero_shot, tmp_path / "z.html", encoder=runs.encoder).read_text()
    assert "zero-shot baseline" in page
    assert "a zero-shot run trains nothing" in page
    assert page.count('data-scorer="zero-shot"') == 3


def test_predictions_unavailable_is_a_note_not_a_failure(runs, tmp_path):
    """A zero-shot run whose encoder cannot be rebuilt still gets its report."""
    folder = tmp_path / "zs"
    shutil.copytree(runs.zero_shot, folder)
    text = (folder / "config.yaml").read_text().replace("name: minilm", "name: /no/such/model")
    (folder / "config.yaml").write_text(text)
    page = write_report(folder).read_text()
    assert "no predictions: the run&#39;s model could not be loaded" in page
    assert 'id="metrics-test"' in page


def hostile_copy(run, root):
    """A copy of ``run`` whose folder name and a relation's name are markup."""
    folder = root / "<img src=x onerror=alert(1)>"
    shutil.copytree(run, folder)
    metrics = json.loads((folder / "metrics.json").read_text())
    relations = metrics["test"]["per_relation"]
    relations["<script>alert('r')</script>"] = relations.pop(next(iter(relations)))
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


def test_names_and_texts_are_escaped(runs, tmp_path):
    folder = hostile_copy(runs.multimodal, tmp_path)
    page = write_report(folder, tmp_path / "r.html", samples=0).read_text(encoding="utf-8")
    assert "<script" not in page and "<img src=x" not in page
    assert "Run report: &lt;img src=x onerror=alert(1)&gt;</h1>" in page
    assert "<title>vlkge report: &lt;img src=x onerror=alert(1)&gt;</title>" in page
    assert "<td>&lt;script&gt;alert(&#39;r&#39;)&lt;/script&gt;</td>" in page


def test_sample_queries_cover_relations_and_sides(runs):
    cfg = load_config(runs.multimodal / "config.yaml")
    kg = load_dataset(cfg["dataset"]["name"])
    queries = pick_queries(kg, cfg, "test", 3)
    assert len({q.relation for q in queries}) == 2
    assert [q.side for q in queries] == ["head", "tail", "head"]
    assert pick_queries(kg, cfg, "test", 3)[0].anchor == queries[0].anchor  # seeded
    assert len(pick_queries(kg, cfg, "test", 50)) == 3  # no more than the split has


def test_sample_queries_only_unseen():
    from vlkge.data.graph import KnowledgeGraph
    from vlkge.data.triples import LabeledTriples

    splits = {
        "train": LabeledTriples("train", [("a", "r", "b"), ("b", "r", "c")], [1, 2]),
        "test": LabeledTriples("test", [("a", "r", "c"), ("d", "r", "a")], [1, 2]),
    }
    kg = KnowledgeGraph.from_labeled("t", splits, inductive=True)
    cfg = load_config(overrides=["evaluation.only_unseen=true"])
    (query,) = pick_queries(kg, cfg, "test", 5)
    assert query.side == "head" and kg.entities[query.answer] == "d"


def test_thumbnails_survive_missing_and_corrupt_images(runs):
    kg = load_dataset(str(runs.root / "toy"))
    views = EntityViews(kg)
    assert views(kg.entity_id("cat")).image.startswith("data:image/jpeg;base64,")
    assert views(kg.entity_id("fox")).image is None  # corrupt file
    assert views(kg.entity_id("wolf")).image is None  # missing file
    assert views(kg.entity_id("tulip")).text is None  # no text in the manifest
    assert views(kg.entity_id("cat")).name == "the cat"


@pytest.mark.parametrize(
    "setup, extra, fragments",
    [
        ("missing", [], ["no such run folder"]),
        ("empty", [], ["not a run folder (no config.yaml)"]),
        ("unfinished", [], ["no metrics.json", "--resume"]),
        ("broken-metrics", [], ["metrics.json: not valid JSON"]),
        ("structural", ["--zero-shot", "STRUCTURAL"], ["not a zero-shot run"]),
        ("structural", ["--top-k", "0"], ["top-k >= 1"]),
    ],
)
def test_bad_input_is_one_line(runs, capsys, tmp_path, setup, extra, fragments):
    folder = tmp_path / "run"
    if setup != "missing":
        folder.mkdir()
    if setup in ("unfinished", "broken-metrics"):
        shutil.copy(runs.structural / "config.yaml", folder / "config.yaml")
    if setup == "broken-metrics":
        (folder / "metrics.json").write_text('{"test": ')
    if setup == "structural":
        folder = runs.structural
    extra = [str(runs.structural) if e == "STRUCTURAL" else e for e in extra]
    code, _, err = run_cli(capsys, "report", str(folder), "--out", str(tmp_path / "x.html"), *extra)
    assert code == 2
    one_line_error(err, *fragments)


def test_zero_shot_on_another_dataset_is_refused(runs, tmp_path):
    with pytest.raises(VlkgeError, match="a zero-shot run on dataset"):
        write_report(runs.structural, tmp_path / "x.html", zero_shot=runs.zero_shot)


def test_failing_report_keeps_the_finished_run(tmp_path, monkeypatch, caplog, capsys):
    """`vlkge train` chains training and the report; a failing report only warns."""
    import vlkge.reports.html

    def broken(*args, **kwargs):
        raise RuntimeError("plotting exploded\nsecond line")

    monkeypatch.setattr(vlkge.reports.html, "write_report", broken)
    argv = ["train", "--out", str(tmp_path / "run")]
    for item in (
        "dataset.name=nations",
        "model.dim=4",
        "model.gamma=2",  # no margin warning at d 4: the report's is the only one
        "training.epochs=1",
        "training.negatives.num=2",
        "training.negatives.filter_splits=[]",
        "training.batch_size=512",
        "training.progress=false",
        "compile=false",
        "tracking.tensorboard=false",
        "evaluation.splits=[test]",
    ):
        argv += ["--set", item]
    with caplog.at_level(logging.WARNING, logger="vlkge"):
        assert main(argv) == 0
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert 0 < saved["test"]["both"]["mrr"] <= 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "report not written (RuntimeError: plotting exploded); metrics.json is kept"
    ]
    assert not (tmp_path / "run" / "report.html").exists()


def test_thumbnails_never_open_a_fifo(tmp_path, fifo):
    """A FIFO (or a device) named as an image would block the report forever: it is left out."""
    from PIL import Image

    good = str(tmp_path / "good.png")
    Image.new("RGB", (40, 30), (200, 40, 40)).save(good)
    assert thumbnail([str(fifo.path), "/dev/zero", good]) == thumbnail([good])
    assert thumbnail([str(fifo.path)]) is None
    assert not fifo.opened
