"""Property-based tests of the loaders: any valid file round-trips exactly, whatever its ids,
line endings, blank lines, compression, quoting or column order."""

from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vlkge.data.graph import KnowledgeGraph
from vlkge.data.manifest import EntityManifest
from vlkge.data.triples import LabeledTriples, read_csv_splits, read_tsv_triples

SETTINGS = settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# an id: printable text with no separator, line break or surrounding whitespace (what a
# well-formed file can hold; the readers strip whitespace around fields)
ids = st.text(
    st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"), blacklist_characters="\ufeff"),
    min_size=1,
    max_size=12,
).filter(lambda s: s == s.strip())
triples = st.lists(st.tuples(ids, ids, ids), min_size=1, max_size=25)


def put(path: Path, data: bytes) -> Path:
    path.unlink(missing_ok=True)  # a new file: truncating one is slow on ext4
    path.write_bytes(data)
    return path


@SETTINGS
@given(
    rows=triples,
    endings=st.lists(st.sampled_from(["\n", "\r\n"]), min_size=25, max_size=25),
    blanks=st.lists(st.sampled_from(["", "\n", "  \n", "\t\r\n"]), min_size=25, max_size=25),
    compressed=st.booleans(),
    bom=st.booleans(),
)
def test_tsv_round_trip(tmp_path, rows, endings, blanks, compressed, bom):
    text, lines, number = "\ufeff" if bom else "", [], 0
    for row, ending, blank in zip(rows, endings, blanks, strict=False):
        text += blank
        number += blank.count("\n")
        text += "\t".join(row) + ending
        number += 1
        lines.append(number)
    data = text.encode("utf-8")
    name = "train.txt.gz" if compressed else "train.txt"
    path = put(tmp_path / name, gzip.compress(data) if compressed else data)
    read = read_tsv_triples(path)
    assert read.rows == rows
    assert read.lines == lines


@SETTINGS
@given(
    rows=st.lists(
        st.tuples(ids, ids, ids, st.sampled_from(["train", "valid", "val", "test", "TEST"])),
        min_size=1,
        max_size=25,
    ),
    order=st.permutations(["head", "relation", "tail", "mode", "note"]),
    ending=st.sampled_from(["\n", "\r\n"]),
)
def test_csv_round_trip(tmp_path, rows, order, ending):
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=ending)
    writer.writerow(order)
    for h, r, t, mode in rows:
        cells = {"head": h, "relation": r, "tail": t, "mode": mode, "note": 'x, "y"'}
        writer.writerow([cells[c] for c in order])
    path = put(tmp_path / "triples.csv", buffer.getvalue().encode("utf-8"))
    splits = read_csv_splits(path)
    canonical = {"train": "train", "valid": "valid", "val": "valid", "test": "test", "TEST": "test"}
    expected: dict[str, list] = {}
    for h, r, t, mode in rows:
        expected.setdefault(canonical[mode], []).append((h, r, t))
    assert {split: labeled.rows for split, labeled in splits.items()} == expected


texts = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\ufeff\x00"), max_size=30
).filter(lambda s: s.split())


@SETTINGS
@given(
    entries=st.lists(
        st.tuples(ids.filter(lambda s: not s.startswith("#")), st.booleans(), texts),
        min_size=1,
        max_size=20,
    )
)
def test_manifest_round_trip(tmp_path, entries):
    manifest = EntityManifest()
    for entity, is_text, value in entries:
        if is_text:
            manifest.add_text(entity, value)
        else:
            manifest.add_image(entity, f"img/{abs(hash(value))}.png")
    path = tmp_path / "manifest.tsv"
    path.unlink(missing_ok=True)
    manifest.write(path)
    read = EntityManifest.read(path)
    assert read.texts == {e: [" ".join(t.split()) for t in ts] for e, ts in manifest.texts.items()}
    assert read.images == {e: [str(tmp_path / p) for p in ps] for e, ps in manifest.images.items()}


small = st.sampled_from(["a", "b", "c", "d", "e"])


@SETTINGS
@given(
    train=st.lists(st.tuples(small, st.sampled_from(["r", "s"]), small), min_size=1, max_size=30),
    test_picks=st.lists(st.integers(0, 29), min_size=1, max_size=10),
)
def test_graph_deduplicates_and_indexes_train_first(train, test_picks):
    test = [train[i % len(train)] for i in test_picks]
    kg = KnowledgeGraph.from_labeled(
        "g",
        {
            "train": LabeledTriples("train.txt", train, list(range(1, len(train) + 1))),
            "test": LabeledTriples("test.txt", test, list(range(1, len(test) + 1))),
        },
    )
    for split, rows in (("train", train), ("test", test)):
        got = [
            (kg.entities[h], kg.relations[r], kg.entities[t])
            for h, r, t in kg.splits[split].tolist()
        ]
        assert got == list(dict.fromkeys(rows))  # first occurrences, in file order
    seen = list(dict.fromkeys(e for h, _, t in train for e in (h, t)))
    assert kg.entities == seen and kg.num_entities == len(seen)
