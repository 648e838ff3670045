"""`vlkge compare`: one table of several runs, the config keys they differ in, terminal and
HTML."""

from __future__ import annotations

import shutil

import pytest

from vlkge.cli import main
from vlkge.errors import VlkgeError
from vlkge.reports import compare_runs, format_table, render_html


def test_compare_table_and_html(runs, capsys, tmp_path):
    html = tmp_path / "cmp.html"
    code = main(["compare", str(runs.multimodal), str(runs.zero_shot), "--html", str(html)])
    out, err = capsys.readouterr()
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "test metrics (both sides)"
    header = lines[1].split()
    assert header[:3] == ["run", "kind", "encoder"]
    assert "model.modalities" in header and "zero_shot.templates" in header
    assert "dataset.name" not in header  # equal in both
    assert header[-7:] == ["MRR", "MR", "H@1", "H@3", "H@10", "epoch", "train_s"]
    assert lines[2].startswith("vl ") and "trained" in lines[2]
    assert lines[2].split()[2:6] == ["stub-vl", "(image", "6-d,", "text"]  # not minilm
    assert lines[3].startswith("zero-shot ") and "zero-shot" in lines[3].split()[1]
    assert lines[3].split()[2] == "stub-vl"
    assert lines[-1] == f"html: {html}"
    page = html.read_text(encoding="utf-8")
    assert '<table class="metrics" id="comparison">' in page
    assert page.count("<tr>") == 3  # header + two runs
    assert "<b>" in page  # the best value of each metric


def test_identical_configs_and_same_names(runs, tmp_path):
    twin = tmp_path / "a" / "vl"
    shutil.copytree(runs.multimodal, twin)
    comparison = compare_runs([runs.multimodal, twin], split="valid")
    assert comparison.keys == [] and comparison.split == "valid"
    assert comparison.names == [str(runs.multimodal), str(twin)]  # the same folder name twice
    assert "the configs are identical" in format_table(comparison)


def test_no_encoder_column_for_structural_runs(runs):
    table = format_table(compare_runs([runs.structural]))
    assert table.splitlines()[1].split()[:2] == ["run", "kind"]
    assert "encoder" not in table


def test_compare_page_escapes_names(runs, tmp_path):
    folder = tmp_path / "<i onclick=x>run"
    shutil.copytree(runs.structural, folder)
    page = render_html(compare_runs([folder, runs.structural]))
    assert "<i onclick" not in page and "<td>&lt;i onclick=x&gt;run</td>" in page


def test_compare_errors(runs, tmp_path, capsys):
    with pytest.raises(VlkgeError, match="no train metrics"):
        compare_runs([runs.multimodal], split="train")
    code = main(["compare", str(runs.multimodal), str(tmp_path / "nothing")])
    err = capsys.readouterr().err
    assert code == 2 and err.strip().endswith("no such run folder") and "Traceback" not in err
