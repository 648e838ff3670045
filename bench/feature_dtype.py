#!/usr/bin/env python
"""Memory of frozen features held as float32 or float16 (``features.dtype``).

Usage::

    OMP_NUM_THREADS=1 python bench/feature_dtype.py [--entities 200000] [--width 512]
                                                    [--json-out results.json]

Writes a feature cache of random text features (``--entities`` x ``--width``) in a temporary
folder, then, once per dtype and each in a fresh process: loads it as training does (float32:
the cache file mapped; float16: the aligned float16 copy, written beforehand by another
process so that writing it is not counted), builds a fused DistMult entity representation
(d 64, no preprocessing), reads every row once (the fingerprint does) and fuses one batch of
4,096 random entities. Each process reports the bytes of its frozen table, its private
resident memory (``RssAnon``), its file-backed resident memory (``RssFile``, the mapped pages
read) and its high-water mark (``VmHWM``), each above what it held before loading, and the
resident pages of the mapped table itself (``/proc/self/smaps``). The figures to read: the
ratio float16 / float32 of the table's resident pages (the design: 0.5), and private memory
that does not grow by a float32 table (4 w E) in either case.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

FIELDS = ("RssAnon", "RssFile", "VmHWM")


def status() -> dict[str, int]:
    """``FIELDS`` of /proc/self/status in MiB."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in FIELDS:
            out[key] = int(value.split()[0]) / 1024
    return out


def write_cache(folder: Path, entities: int, width: int) -> None:
    import torch

    from vlkge.encoders.cache.tables import Record, write_table

    values = torch.randn(entities, width, generator=torch.Generator().manual_seed(0))
    header = {"encoder": "x", "fingerprint": "f", "preprocessing": "p", "width": str(width)}
    records = {f"e{i}": Record(f"in{i}", values[i], 1) for i in range(entities)}
    write_table(folder / "text.safetensors", "text", header, records)


def measure(folder: Path, entities: int, dtype: str) -> dict:
    import numpy  # noqa: F401  (what loading imports, so that it is not counted)
    import safetensors.torch  # noqa: F401
    import torch

    from vlkge.encoders.cache import FeatureCache
    from vlkge.models.multimodal import FusedEntityRepresentation

    before = status()
    names = [f"e{i}" for i in range(entities)]
    features = FeatureCache(folder).load(names, ["text"], dtype)
    seen = torch.ones(entities, dtype=torch.bool)
    model = FusedEntityRepresentation(features, 64, seen, structural=False)
    with torch.no_grad():
        model(torch.randint(entities, (4096,), generator=torch.Generator().manual_seed(1)))
    after = status()
    table = model.features.frozen("text")
    return {
        "dtype": dtype,
        "table_mb": table.untyped_storage().nbytes() / 2**20,
        "table_resident_mb": round(resident_mb(table.data_ptr()), 1),
        **{f"{key}_mb": round(after[key] - before[key], 1) for key in FIELDS},
    }


def resident_mb(address: int) -> float:
    """Resident MiB of the file mapped at ``address`` (all of this process's maps of it)."""
    mappings, path = [], None
    for line in Path("/proc/self/smaps").read_text().splitlines():
        fields = line.split()
        if "-" in fields[0] and not fields[0].endswith(":"):
            start, end = (int(x, 16) for x in fields[0].split("-"))
            name = fields[5] if len(fields) >= 6 else None
            mappings.append([name, 0])
            path = name if start <= address < end else path
        elif fields[0] == "Rss:":
            mappings[-1][1] += int(fields[1])
    return sum(kb for name, kb in mappings if name == path and path) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, default=200_000)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)  # folder, dtype
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(Path(args.child[0]), args.entities, args.child[1])))
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_cache(folder, args.entities, args.width)
        rows = []
        for dtype in ("float16", "float32", "float16"):  # the first writes the float16 copy
            command = [sys.executable, __file__, "--entities", str(args.entities)]
            done = subprocess.run(
                [*command, "--child", str(folder), dtype], capture_output=True, text=True
            )
            if done.returncode:
                sys.exit(done.stderr)
            rows.append(json.loads(done.stdout.splitlines()[-1]))
    full, half = rows[1], rows[2]
    result = {
        "entities": args.entities,
        "width": args.width,
        "float32": full,
        "float16": half,
        "ratio_table_pages": round(half["table_resident_mb"] / full["table_resident_mb"], 3),
    }
    for row in (full, half):
        print(
            f"{row['dtype']}: table {row['table_mb']:.1f} MiB, its resident pages "
            f"{row['table_resident_mb']} MiB; private +{row['RssAnon_mb']} MiB, file-backed "
            f"+{row['RssFile_mb']} MiB, peak +{row['VmHWM_mb']} MiB"
        )
    print(f"float16 / float32 resident pages of the table: {result['ratio_table_pages']}")
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
