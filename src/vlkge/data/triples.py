"""Reading labelled triples from disk: tab-separated files and the WikiArt-MKG CSV layout.

Every triple keeps the file and line it came from, so later checks (unknown entities,
relations only in test) can point the user at the exact row.
"""

from __future__ import annotations

import csv
import gzip
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from vlkge.errors import DataError, echo

SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "valid": "valid",
    "val": "valid",
    "validation": "valid",
    "dev": "valid",
    "test": "test",
    "testing": "test",
}


def canonical_split(name: str, path: str | Path | None = None, line: int | None = None) -> str:
    """Map a split name (``val``, ``dev``, ...) to ``train``/``valid``/``test``."""
    key = name.strip().lower()
    if key not in SPLIT_ALIASES:
        raise DataError(
            path, line, f"unknown split name {echo(name)} (expected train, valid or test)"
        )
    return SPLIT_ALIASES[key]


@dataclass(frozen=True)
class LabeledTriples:
    """Triples as strings, with the source file and 1-based line number of each row."""

    path: str
    rows: list[tuple[str, str, str]]
    lines: list[int]

    def __len__(self) -> int:
        return len(self.rows)

    def where(self, i: int) -> str:
        return f"{self.path}:{self.lines[i]}"


def _raw_lines(path: Path) -> Iterator[bytes]:
    """Lines as bytes (``.gz`` decompressed); a damaged archive is a ``DataError``."""
    if not path.is_file():
        raise DataError(path, None, "file not found")
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as handle:
            yield from handle
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(path, None, f"unreadable or corrupt file ({exc})") from None


def numbered_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """Yield ``(line number, line without line ending)``, decoding each line on its own so a
    bad byte (invalid UTF-8, or a NUL) is reported on its own line; a leading byte-order mark
    is dropped."""
    path = Path(path)
    for number, raw in enumerate(_raw_lines(path), start=1):
        try:
            line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(path, number, f"not valid UTF-8 ({exc.reason})") from None
        if "\x00" in line:
            raise DataError(path, number, "NUL byte in a text file (is it a binary file?)")
        yield number, line.rstrip("\r\n")


def read_tsv_triples(path: str | Path, order: str = "hrt") -> LabeledTriples:
    """Read ``head<TAB>relation<TAB>tail`` rows (``order`` permutes the columns, e.g. ``htr``).

    Blank lines are skipped; a row with another number of columns or a blank id is an error.
    """
    if sorted(order) != ["h", "r", "t"]:
        raise ValueError(f"order must be a permutation of 'hrt', got {order!r}")
    position = {c: i for i, c in enumerate(order)}
    rows: list[tuple[str, str, str]] = []
    lines: list[int] = []
    for number, line in numbered_lines(path):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 3:
            raise DataError(path, number, f"expected 3 tab-separated columns, found {len(fields)}")
        fields = [f.strip() for f in fields]
        if not all(fields):
            raise DataError(path, number, "blank id")
        rows.append((fields[position["h"]], fields[position["r"]], fields[position["t"]]))
        lines.append(number)
    if not rows:
        raise DataError(path, None, "no triples in file")
    return LabeledTriples(str(path), rows, lines)


def read_csv_splits(path: str | Path) -> dict[str, LabeledTriples]:
    """Read the WikiArt-MKG layout: a CSV with columns head, relation, tail, mode.

    ``mode`` names the split (``train``, ``val``/``valid``, ``test``). Returns one
    ``LabeledTriples`` per split found.
    """
    reader = csv.reader(f"{line}\n" for _, line in numbered_lines(path))
    try:
        header = next(reader, None)
        if header is None:
            raise DataError(path, None, "empty file")
        names = [h.strip().lower() for h in header]
        missing = {"head", "relation", "tail", "mode"} - set(names)
        if missing:
            raise DataError(path, 1, f"header lacks column(s) {', '.join(sorted(missing))}")
        col = {n: names.index(n) for n in ("head", "relation", "tail", "mode")}
        out: dict[str, tuple[list, list]] = {}
        for row in reader:
            number = reader.line_num
            if not row or not any(cell.strip() for cell in row):
                continue
            if len(row) != len(names):
                raise DataError(path, number, f"expected {len(names)} columns, found {len(row)}")
            h, r, t, mode = (row[col[k]].strip() for k in ("head", "relation", "tail", "mode"))
            if not (h and r and t):
                raise DataError(path, number, "blank id")
            split = canonical_split(mode, path, number)
            bucket = out.setdefault(split, ([], []))
            bucket[0].append((h, r, t))
            bucket[1].append(number)
    except csv.Error as exc:
        raise DataError(path, reader.line_num, f"malformed CSV ({exc})") from None
    if not out:
        raise DataError(path, None, "no triples in file")
    return {split: LabeledTriples(str(path), rows, lines) for split, (rows, lines) in out.items()}
