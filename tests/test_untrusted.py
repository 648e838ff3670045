"""Reading untrusted files: pickles rebuild arrays, tensors and plain values and refuse any other
global before it runs; torch files load weights-only; FIFOs and devices are never opened."""

from __future__ import annotations

import codecs
import collections
import functools
import io
import os
import pickle

import numpy as np
import pytest
import torch
from payloads import SYSTEM, RunsCode

from vlkge.errors import DataError
from vlkge.untrusted import NotARegularFile, check_regular_file, load_pickle, load_torch


class Reduces:
    """Unpickling this calls ``function(*args)``."""

    def __init__(self, function, *args):
        self.reduced = (function, args)

    def __reduce__(self):
        return self.reduced


def test_the_payload_runs_under_a_plain_load(tmp_path):
    """So that the refusals below are refusals of code that would run."""
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(RunsCode(marker)))
    assert marker.is_file()


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_a_pickle_that_runs_code_is_refused_before_it_runs(tmp_path, protocol):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"a": [np.zeros(2), RunsCode(marker)]}, protocol=protocol))
    with pytest.raises(DataError) as info:
        load_pickle(path)
    assert str(info.value).startswith(f"{path}: refused to load {SYSTEM}, which could run code")
    assert not marker.exists()


@pytest.mark.parametrize(
    "payload, refused",
    [
        (Reduces(eval, "1 + 1"), "builtins.eval"),
        (Reduces(getattr, "text", "upper"), "builtins.getattr"),
        (Reduces(__import__, "os"), "builtins.__import__"),
        (functools.partial(print, "hello"), "functools.partial"),
        (Reduces(codecs.encode, "text", "rot13"), "_codecs.encode with codec 'rot13'"),
        (torch.nn.Linear(2, 2), "torch.nn.modules.linear.Linear"),
    ],
)
def test_every_other_global_is_refused(tmp_path, payload, refused):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"a": payload}))
    with pytest.raises(DataError, match=f"refused to load {refused}, which"):
        load_pickle(path)


def test_a_tensor_storage_in_a_pickle_is_read_weights_only(tmp_path):
    """torch's own ``torch.storage._load_from_bytes`` reads a storage with
    ``weights_only=False``: crafted storage bytes would run code."""
    marker = tmp_path / "ran"
    storage = io.BytesIO()
    torch.save(RunsCode(marker), storage, _use_new_zipfile_serialization=False)
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(Reduces(torch.storage._load_from_bytes, storage.getvalue())))
    with pytest.raises(DataError, match=f"refused to load {SYSTEM}, which"):
        load_pickle(path)
    assert not marker.exists()


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_arrays_tensors_and_plain_values_round_trip(tmp_path, protocol):
    matrix = np.arange(12, dtype=np.float32).reshape(3, 4)
    data = {
        "a": matrix[0],
        "b": [matrix[:, 1], np.float64(0.5), 1.5, 2],  # a strided view, a numpy scalar
        "c": {"image": torch.arange(3.0), "text": matrix[1:].T},
        "d": collections.OrderedDict(x=(1, "y", None, True)),
        "e": [{b"bytes", frozenset({1}), 1 + 2j}, bytearray(b"ab")],
        "f": np.array(["ids"]),
        "g": np.int64(7),
    }
    path = tmp_path / "features.pkl"
    path.write_bytes(pickle.dumps(data, protocol=protocol))
    loaded = load_pickle(path)
    assert list(loaded) == list(data)
    np.testing.assert_array_equal(loaded["a"], matrix[0])
    np.testing.assert_array_equal(loaded["b"][0], matrix[:, 1])
    assert loaded["b"][1:] == [0.5, 1.5, 2] and type(loaded["b"][1]) is np.float64
    assert torch.equal(loaded["c"]["image"], torch.arange(3.0))
    np.testing.assert_array_equal(loaded["c"]["text"], matrix[1:].T)
    assert loaded["d"] == data["d"] and loaded["e"] == data["e"]
    assert loaded["f"].tolist() == ["ids"] and loaded["g"] == 7


def test_torch_files_load_weights_only(tmp_path):
    path = tmp_path / "features.pt"
    torch.save({"a": torch.ones(2), "n": 3, "names": ["x"]}, path)
    loaded = load_torch(path)
    assert torch.equal(loaded["a"], torch.ones(2)) and loaded["names"] == ["x"]
    marker = tmp_path / "ran"
    torch.save({"a": RunsCode(marker)}, path)
    with pytest.raises(DataError) as info:
        load_torch(path)
    assert str(info.value).startswith(f"{path}: refused to load {SYSTEM}, which could run code")
    assert not marker.exists()


def test_a_damaged_torch_file_is_not_advised_to_load_unsafely(tmp_path):
    path = tmp_path / "zeros.pt"
    path.write_bytes(b"\0" * 64)
    with pytest.raises(pickle.UnpicklingError) as info:
        load_torch(path)
    assert "weights_only" not in str(info.value) and "\n" not in str(info.value)


def test_only_regular_files_are_opened(tmp_path, fifo):
    (tmp_path / "file.png").write_bytes(b"x")
    check_regular_file(tmp_path / "file.png")
    with pytest.raises(FileNotFoundError):
        check_regular_file(tmp_path / "missing.png")
    with pytest.raises(IsADirectoryError):
        check_regular_file(tmp_path)
    for path in (fifo.path, "/dev/zero"):
        if os.path.exists(path):
            with pytest.raises(NotARegularFile):
                check_regular_file(path)
    assert not fifo.opened
