"""Reading labelled triples: TSV (plain, gzip, CRLF) and the WikiArt-MKG CSV layout."""

from __future__ import annotations

import gzip
import re

import pytest

from vlkge.data.triples import (
    LabeledTriples,
    canonical_split,
    numbered_lines,
    read_csv_splits,
    read_tsv_triples,
)
from vlkge.errors import DataError, VlkgeError

ROWS = [("a", "r1", "b"), ("b", "r2", "c"), ("c", "r1", "a")]


def starts_with_location(exc: DataError, path, line: int | None) -> None:
    """The message starts with ``path:line:`` (or ``path:`` when no line applies)."""
    where = f"{path}:{line}:" if line is not None else f"{path}:"
    assert str(exc).startswith(where), str(exc)
    assert exc.line == line
    if line is None:
        # no line number sneaked in
        assert not re.match(re.escape(str(path)) + r":\d+:", str(exc))


# --- TSV -----------------------------------------------------------------------------------
def test_plain_tsv(tmp_path, tsv):
    path = tsv(tmp_path / "train.txt", ROWS)
    triples = read_tsv_triples(path)
    assert isinstance(triples, LabeledTriples)
    assert triples.rows == ROWS
    assert triples.lines == [1, 2, 3]
    assert len(triples) == 3
    assert triples.path == str(path)
    assert triples.where(1) == f"{path}:2"


def test_crlf_tsv(tmp_path, tsv):
    path = tsv(tmp_path / "train.txt", ROWS, newline="\r\n")
    triples = read_tsv_triples(path)
    assert triples.rows == ROWS  # no stray '\r' in the tail ids
    assert all("\r" not in cell for row in triples.rows for cell in row)


def test_gzip_tsv_with_crlf(tmp_path):
    path = tmp_path / "train.txt.gz"
    path.write_bytes(gzip.compress("".join("\t".join(r) + "\r\n" for r in ROWS).encode()))
    assert read_tsv_triples(path).rows == ROWS


def test_blank_lines_skipped_and_line_numbers_kept(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text("a\tr1\tb\n\n   \nb\tr2\tc\n", encoding="utf-8")
    triples = read_tsv_triples(path)
    assert triples.rows == ROWS[:2]
    assert triples.lines == [1, 4]


def test_whitespace_around_ids_is_stripped(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text(" a \t r1\tb  \n", encoding="utf-8")
    assert read_tsv_triples(path).rows == [("a", "r1", "b")]


def test_utf8_ids(tmp_path, tsv):
    rows = [("Zürich", "liegt_in", "Schweiz"), ("東京", "capital_of", "日本")]
    assert read_tsv_triples(tsv(tmp_path / "t.txt", rows)).rows == rows


def test_column_order(tmp_path, tsv):
    # IKRL's original layout is head, tail, relation
    path = tsv(tmp_path / "t.txt", [("a", "b", "r1")])
    assert read_tsv_triples(path, order="htr").rows == [("a", "r1", "b")]
    with pytest.raises(ValueError):
        read_tsv_triples(path, order="hrr")


@pytest.mark.parametrize(
    "content, line",
    [
        ("a\tr1\tb\nb\tr2\n", 2),  # too few columns
        ("a\tr1\tb\tx\n", 1),  # too many columns
        ("a\tr1\tb\na r2 c\n", 2),  # spaces instead of tabs
    ],
)
def test_wrong_column_count(tmp_path, content, line):
    path = tmp_path / "train.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match="columns") as info:
        read_tsv_triples(path)
    starts_with_location(info.value, path, line)


@pytest.mark.parametrize("row", ["a\t\tb", "\tr1\tb", "a\tr1\t "])
def test_blank_id(tmp_path, row):
    path = tmp_path / "train.txt"
    path.write_text(f"x\tr\ty\n{row}\n", encoding="utf-8")
    with pytest.raises(DataError, match="blank id") as info:
        read_tsv_triples(path)
    starts_with_location(info.value, path, 2)


@pytest.mark.parametrize("content", [b"", b"\n\n  \n"])
def test_empty_tsv(tmp_path, content):
    path = tmp_path / "train.txt"
    path.write_bytes(content)
    with pytest.raises(DataError, match="no triples") as info:
        read_tsv_triples(path)
    starts_with_location(info.value, path, None)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.txt"
    with pytest.raises(DataError, match="not found") as info:
        read_tsv_triples(path)
    starts_with_location(info.value, path, None)
    assert isinstance(info.value, VlkgeError)


def test_non_utf8_small_file(tmp_path):
    path = tmp_path / "train.txt"
    path.write_bytes(b"a\tr1\tb\nc\xff\tr1\td\n")
    with pytest.raises(DataError, match="UTF-8") as info:
        read_tsv_triples(path)
    # the bad byte is on line 2
    starts_with_location(info.value, path, 2)


def test_non_utf8_line_number_in_large_file(tmp_path):
    """The reported line must be the one holding the bad byte, however far into the file."""
    lines = [f"e{i}\tr\te{i + 1}\n".encode() for i in range(3000)]
    lines[1999] = b"e\xe9\tr\tx\n"  # latin-1 e-acute on line 2000
    path = tmp_path / "train.txt"
    path.write_bytes(b"".join(lines))
    with pytest.raises(DataError, match="UTF-8") as info:
        read_tsv_triples(path)
    starts_with_location(info.value, path, 2000)


def test_non_utf8_in_gzip(tmp_path):
    path = tmp_path / "train.txt.gz"
    path.write_bytes(gzip.compress(b"a\tr\tb\n\xc3(\tr\tb\n"))
    with pytest.raises(DataError, match="UTF-8") as info:
        read_tsv_triples(path)
    assert str(info.value).startswith(f"{path}:")


@pytest.mark.parametrize(
    "payload",
    [b"a\tr\tb\n", gzip.compress(b"a\tr\tb\n" * 1000)[:-30]],
    ids=["not-gzip", "truncated-gzip"],
)
def test_corrupt_gzip_is_a_data_error(tmp_path, payload):
    """A .gz file that is not valid gzip is bad input, not a crash with a traceback."""
    path = tmp_path / "train.txt.gz"
    path.write_bytes(payload)
    with pytest.raises(DataError) as info:
        read_tsv_triples(path)
    assert str(info.value).startswith(f"{path}:")


def test_utf8_bom_is_not_part_of_the_first_id(tmp_path):
    """Files saved by Windows editors start with a BOM; it must not glue onto the first id."""
    path = tmp_path / "train.txt"
    path.write_bytes(b"\xef\xbb\xbfa\tr1\tb\r\nb\tr2\tc\r\n")
    assert read_tsv_triples(path).rows == ROWS[:2]


def test_numbered_lines(tmp_path):
    path = tmp_path / "f.txt"
    path.write_bytes(b"one\r\ntwo\n\nfour")
    assert list(numbered_lines(path)) == [(1, "one"), (2, "two"), (3, ""), (4, "four")]


# --- split names ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, split",
    [
        ("train", "train"),
        ("TRAINING", "train"),
        ("val", "valid"),
        ("valid", "valid"),
        ("validation", "valid"),
        ("dev", "valid"),
        (" test ", "test"),
        ("testing", "test"),
    ],
)
def test_canonical_split(name, split):
    assert canonical_split(name) == split


def test_unknown_split_name():
    with pytest.raises(DataError, match="unknown split name 'holdout'") as info:
        canonical_split("holdout", "kg.csv", 7)
    starts_with_location(info.value, "kg.csv", 7)


# --- WikiArt-MKG CSV -----------------------------------------------------------------------
def write_csv(path, text: str, newline: str = "\n"):
    path.write_bytes(text.replace("\n", newline).encode("utf-8"))
    return path


CSV = """head,relation,tail,mode
a,painted_by,x,train
b,painted_by,y,train
a,has_style,s,train
b,has_style,s,val
a,painted_by,y,valid
b,painted_by,x,test
"""


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_csv_splits(tmp_path, newline):
    path = write_csv(tmp_path / "triples.csv", CSV, newline)
    splits = read_csv_splits(path)
    assert set(splits) == {"train", "valid", "test"}  # val and valid both map to valid
    assert splits["train"].rows == [
        ("a", "painted_by", "x"),
        ("b", "painted_by", "y"),
        ("a", "has_style", "s"),
    ]
    assert splits["train"].lines == [2, 3, 4]
    assert splits["valid"].rows == [("b", "has_style", "s"), ("a", "painted_by", "y")]
    assert splits["valid"].lines == [5, 6]
    assert splits["test"].rows == [("b", "painted_by", "x")]
    assert splits["test"].where(0) == f"{path}:7"


def test_csv_column_order_extra_columns_and_quotes(tmp_path):
    text = (
        "id,Mode,tail,relation,head\n"
        '1,train,"Smith, John",painted_by,"Mona Lisa"\n'
        "2,TEST,x,r,y\n"
        ",,,,\n"
    )
    splits = read_csv_splits(write_csv(tmp_path / "kg.csv", text))
    assert splits["train"].rows == [("Mona Lisa", "painted_by", "Smith, John")]
    assert splits["test"].rows == [("y", "r", "x")]


def test_csv_wrong_column_count(tmp_path):
    path = write_csv(tmp_path / "t.csv", "head,relation,tail,mode\na,r,b,train\na,r,b\n")
    with pytest.raises(DataError, match="columns") as info:
        read_csv_splits(path)
    starts_with_location(info.value, path, 3)


def test_csv_blank_id(tmp_path):
    path = write_csv(tmp_path / "t.csv", "head,relation,tail,mode\na,r,b,train\na, ,b,train\n")
    with pytest.raises(DataError, match="blank id") as info:
        read_csv_splits(path)
    starts_with_location(info.value, path, 3)


def test_csv_unknown_split(tmp_path):
    path = write_csv(tmp_path / "t.csv", "head,relation,tail,mode\na,r,b,train\nb,r,a,holdout\n")
    with pytest.raises(DataError, match="unknown split name 'holdout'") as info:
        read_csv_splits(path)
    starts_with_location(info.value, path, 3)


def test_csv_missing_header_column(tmp_path):
    path = write_csv(tmp_path / "t.csv", "head,relation,tail,split\na,r,b,train\n")
    with pytest.raises(DataError, match="mode") as info:
        read_csv_splits(path)
    starts_with_location(info.value, path, 1)


@pytest.mark.parametrize(
    "text", ["", "head,relation,tail,mode\n", "head,relation,tail,mode\n,,,\n"]
)
def test_csv_empty(tmp_path, text):
    path = write_csv(tmp_path / "t.csv", text)
    with pytest.raises(DataError) as info:
        read_csv_splits(path)
    starts_with_location(info.value, path, None)


def test_csv_non_utf8_names_the_line(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(
        b"head,relation,tail,mode\na,r,b,train\n" + b"c,r,d,train\n" * 100 + b"\xff,r,b,test\n"
    )
    with pytest.raises(DataError, match="UTF-8") as info:
        read_csv_splits(path)
    starts_with_location(info.value, path, 103)


def test_csv_with_utf8_bom_header(tmp_path):
    """Excel's "CSV UTF-8" export starts with a BOM; the header must still be recognised."""
    path = tmp_path / "t.csv"
    path.write_bytes(b"\xef\xbb\xbfhead,relation,tail,mode\r\na,r,b,train\r\n")
    assert read_csv_splits(path)["train"].rows == [("a", "r", "b")]
