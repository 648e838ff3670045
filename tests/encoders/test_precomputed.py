"""Importing precomputed features: npy, npz, safetensors, pickles (averaging) and bad input."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from payloads import SYSTEM, write_payload
from safetensors.torch import save_file

from vlkge.cli import main
from vlkge.encoders.cache import FeatureCache
from vlkge.encoders.precomputed import read_features
from vlkge.errors import DataError

ENTITIES = ["a", "b", "c", "d"]


def matrix(n=3, w=5, seed=0):
    return np.random.default_rng(seed).normal(size=(n, w)).astype(np.float32)


def test_npy_with_id_list(tmp_path):
    m = matrix()
    np.save(tmp_path / "feats.npy", m)
    (tmp_path / "ids.txt").write_text("a\nb\nc\n")
    features = read_features(tmp_path / "feats.npy", ids=tmp_path / "ids.txt", entities=ENTITIES)
    assert features.width == 5 and list(features.vectors) == ["a", "b", "c"]
    torch.testing.assert_close(features.vectors["b"], torch.from_numpy(m[1]))
    # a sibling <stem>.ids.txt is found on its own
    (tmp_path / "feats.ids.txt").write_text("c\nb\na\n")
    assert torch.equal(read_features(tmp_path / "feats.npy").vectors["a"], torch.from_numpy(m[2]))


def test_npy_without_ids_is_an_error(tmp_path):
    np.save(tmp_path / "m.npy", matrix())
    with pytest.raises(DataError, match=r"m\.npy: .*entity ids"):
        read_features(tmp_path / "m.npy")
    (tmp_path / "ids.txt").write_text("a\nb\n")
    with pytest.raises(DataError, match="3 feature rows but 2 entity ids"):
        read_features(tmp_path / "m.npy", ids=tmp_path / "ids.txt")


def test_safetensors_per_entity_and_matrix(tmp_path):
    m = torch.from_numpy(matrix())
    save_file({"a": m[0], "b": m[1:3]}, str(tmp_path / "keys.safetensors"))
    features = read_features(tmp_path / "keys.safetensors")
    torch.testing.assert_close(features.vectors["b"], m[1:3].mean(0))
    assert features.counts == {"a": 1, "b": 2}
    save_file(
        {"features": m}, str(tmp_path / "mat.safetensors"), metadata={"entities": '["c","b","a"]'}
    )
    assert torch.equal(read_features(tmp_path / "mat.safetensors").vectors["c"], m[0])


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_reference_pickles_average_lists_and_dicts(tmp_path, protocol):
    m = matrix(4)
    data = {
        "a": m[0],  # one vector
        "b": [m[0], m[1]],  # list of vectors
        "c": {"img1": m[1], "img2": torch.from_numpy(m[2]), "img3": m[3].tolist()},
        "d": m[2:4],  # 2-D array
    }
    with open(tmp_path / "f.pkl", "wb") as handle:
        pickle.dump(data, handle, protocol=protocol)
    features = read_features(tmp_path / "f.pkl", entities=ENTITIES, width=5)
    torch.testing.assert_close(features.vectors["b"], torch.from_numpy(m[:2].mean(0)))
    torch.testing.assert_close(features.vectors["c"], torch.from_numpy(m[1:4].mean(0)))
    torch.testing.assert_close(features.vectors["d"], torch.from_numpy(m[2:4].mean(0)))
    assert features.counts == {"a": 1, "b": 2, "c": 3, "d": 2}
    assert len(features.fingerprint) == 64


def write_pickle(path, data):
    with open(path, "wb") as handle:
        pickle.dump(data, handle)
    return path


@pytest.mark.parametrize(
    "data, message",
    [
        ({"a": np.array([1.0, np.nan, 0.0])}, "entity 'a': vector holds NaN or infinite"),
        ({"a": np.array([1.0, np.inf, 0.0])}, "entity 'a': vector holds NaN or infinite"),
        ({"a": np.zeros(3), "b": np.zeros(4)}, "entity 'b': vector width 4, expected 3"),
        ({"zz": np.zeros(3)}, "entity 'zz' is not in the dataset"),
        ({"z" * 10_000: np.zeros(3)}, f"entity '{'z' * 196}... is not in the dataset"),
        ({"a": []}, "entity 'a': no vectors"),
        ({"a": [np.zeros(3), np.zeros(2)]}, "entity 'a': vectors of different widths"),
        ({"a": "text"}, "entity 'a': not a numeric vector"),
        ({"a": np.zeros((2, 2, 2))}, "entity 'a': expected a vector"),
        ([1, 2, 3], "expected a mapping"),
        ({}, "holds no feature vectors"),
    ],
)
def test_bad_pickles_are_one_line_errors(tmp_path, data, message):
    path = write_pickle(tmp_path / "bad.pkl", data)
    with pytest.raises(DataError) as info:
        read_features(path, entities=ENTITIES)
    text = str(info.value)
    assert text.startswith(str(path)) and message in text and "\n" not in text
    assert len(text) < 400 + len(str(path))


@pytest.mark.parametrize("suffix", [".pkl", ".npy", ".safetensors", ".npz"])
def test_corrupt_files_are_one_line_errors(tmp_path, suffix):
    path = tmp_path / f"junk{suffix}"
    path.write_bytes(b"\x80\x04this is not a feature file" * 3)
    with pytest.raises(DataError, match="cannot read features") as info:
        read_features(path, ids=["a"])
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "name, refusal",
    [
        ("evil.pkl", f"refused to load {SYSTEM}, which could run code"),
        ("evil.pickle", f"refused to load {SYSTEM}, which could run code"),
        ("evil.pt", f"refused to load {SYSTEM}, which could run code"),
        ("evil.pth", f"refused to load {SYSTEM}, which could run code"),
        ("evil.npy", "holds Python objects (an object array, as np.save of a dict writes)"),
        ("evil.npz", "holds Python objects (an object array, as np.save of a dict writes)"),
    ],
)
def test_feature_files_that_run_code_are_refused_by_encode(
    toy_dir, tmp_path, capsys, name, refusal
):
    marker = tmp_path / "ran"
    path = write_payload(tmp_path / name, marker)
    argv = ["encode", "--dataset", str(toy_dir), "--image-features", str(path)]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [err.strip()] and "Traceback" not in err
    assert err.startswith(f"vlkge: error: {path}: {refusal}")
    assert not marker.exists()


def test_imported_features_in_the_cache(tmp_path):
    m = matrix(2)
    path = write_pickle(tmp_path / "img.pkl", {"a": [m[0], m[1]], "c": m[1]})
    source = read_features(path, entities=ENTITIES)
    cache = FeatureCache(tmp_path / "cache")
    report = cache.import_features("image", source)
    assert report.encoded == 2 and report.encoder == "precomputed:img.pkl"
    loaded = cache.load(ENTITIES)
    features, mask = loaded["image"]
    assert mask.tolist() == [True, False, True, False]
    torch.testing.assert_close(features[0], torch.from_numpy(m.mean(0)))
    assert torch.equal(features[1], torch.zeros(5))
    assert cache.import_features("image", source).reused == 2  # unchanged file: kept
    assert cache.metadata("image")["encoder"] == "precomputed:img.pkl"
    # the cache file itself can be imported elsewhere
    again = read_features(cache.features_path("image"))
    assert set(again.vectors) == {"a", "c"}
