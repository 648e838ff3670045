"""A fuzz run of the text parsers: random bytes and mutated valid files either parse or raise
the library's ``DataError`` (``VlkgeError`` for a whole dataset folder), never anything else.

Deterministic (seeded) and bounded: a few thousand inputs per parser, at most ~1.5 s each.
"""

from __future__ import annotations

import gzip
import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from vlkge.data.datasets import load_dataset
from vlkge.data.manifest import EntityManifest, read_keyed_texts
from vlkge.data.triples import read_csv_splits, read_tsv_triples
from vlkge.errors import DataError, VlkgeError

CASES = 3000
BUDGET_S = 1.5

VALID = {
    "tsv": b"a\tlikes\tb\nb\tlikes\tc\r\n\nc\tknows\ta\n\xc3\xa9t\xc3\xa9\tin\tparis\n",
    "csv": (
        b'head,relation,tail,mode\na,likes,b,train\n"b,1",likes,c,train\n'
        b'c,knows,a,val\n"q""x",knows,b,test\n'
    ),
    "manifest": (
        b"# comment\na\ttext\tthe first entity\nb\timage\tpics/b.png\n"
        b"c\ttext\t  spaced   text \nb\ttext\tsecond\n"
    ),
    "keyed": b"a\tAlice\nb\tBob the builder\n\nc\t\n",
}
# bytes that matter to the formats: separators, line ends, quotes, BOM, bad UTF-8, NUL
SPECIAL = [b"\t", b"\n", b"\r", b",", b'"', b"#", b" ", b"\xef\xbb\xbf", b"\xff", b"\x00", b"\xc3"]


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One to four random edits: flip, insert, delete, duplicate or truncate."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        at = rng.randint(0, len(out))
        kind = rng.randrange(5)
        if kind == 0 and out:
            out[min(at, len(out) - 1)] ^= 1 << rng.randrange(8)
        elif kind == 1:
            out[at:at] = rng.choice(SPECIAL) * rng.randint(1, 3)
        elif kind == 2:
            del out[at : at + rng.randint(1, 8)]
        elif kind == 3:
            out[at:at] = out[max(0, at - rng.randint(1, 20)) : at]
        else:
            del out[at:]
    return bytes(out)


def inputs(kind: str, seed: int):
    """Mutated valid files, random bytes and random lines of special bytes."""
    rng = random.Random(seed)
    deadline = time.monotonic() + BUDGET_S
    for i in range(CASES):
        if time.monotonic() > deadline:
            return
        roll = i % 4
        if roll < 2:
            yield mutate(VALID[kind], rng)
        elif roll == 2:
            yield rng.randbytes(rng.randint(0, 64))
        else:
            yield b"".join(rng.choice([*SPECIAL, b"a", b"b"]) for _ in range(rng.randint(0, 40)))


def put(path: Path, data: bytes) -> None:
    """Write a new file: truncating an existing one is slow on ext4 (it flushes)."""
    path.unlink(missing_ok=True)
    path.write_bytes(data)


def fuzz(kind: str, parse: Callable[[Path], object], path: Path, allowed=DataError) -> int:
    count = 0
    for data in inputs(kind, seed=len(kind)):
        put(path, data)
        try:
            parse(path)
        except allowed:
            pass
        except Exception as exc:  # the finding: report the input that broke the parser
            pytest.fail(f"{type(exc).__name__}: {exc} on input {data!r}")
        count += 1
    return count


@pytest.mark.parametrize(
    "kind, parse, name",
    [
        ("tsv", read_tsv_triples, "train.txt"),
        ("csv", read_csv_splits, "triples.csv"),
        ("manifest", EntityManifest.read, "manifest.tsv"),
        ("keyed", read_keyed_texts, "entity2name.txt"),
    ],
)
def test_parsers_only_raise_data_errors(tmp_path, kind, parse, name):
    assert fuzz(kind, parse, tmp_path / name) >= 300


def test_gzip_reader_only_raises_data_errors(tmp_path):
    """Mutations of the compressed bytes: bad headers, checksums, truncations."""
    rng = random.Random(7)
    packed = gzip.compress(VALID["tsv"] * 20)
    path = tmp_path / "train.txt.gz"
    deadline = time.monotonic() + BUDGET_S
    for _ in range(1000):
        if time.monotonic() > deadline:
            break
        data = mutate(packed, rng)
        put(path, data)
        try:
            read_tsv_triples(path)
        except DataError:
            pass
        except Exception as exc:
            pytest.fail(f"{type(exc).__name__}: {exc} on input {data!r}")


def test_dataset_folders_only_raise_vlkge_errors(tmp_path):
    """A whole folder (graph checks included) with one of its files mutated."""
    folder = tmp_path / "kg"
    folder.mkdir()
    files = {
        "train.txt": b"a\tr\tb\nb\tr\tc\nc\ts\ta\na\ts\td\n",
        "valid.txt": b"b\tr\ta\n",
        "test.txt": b"c\tr\tb\nd\ts\ta\n",
        "manifest.tsv": VALID["manifest"],
        "entity2name.txt": VALID["keyed"],
    }
    rng = random.Random(3)
    deadline = time.monotonic() + BUDGET_S
    for i in range(1000):
        if time.monotonic() > deadline:
            break
        target = rng.choice(sorted(files))
        for name, data in files.items():
            put(folder / name, mutate(data, rng) if name == target else data)
        try:
            load_dataset(str(folder), inductive=bool(i % 2))
        except VlkgeError:
            pass
        except Exception as exc:
            pytest.fail(
                f"{type(exc).__name__}: {exc} with {target} = {(folder / target).read_bytes()!r}"
            )
