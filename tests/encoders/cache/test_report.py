"""What an update did, as the summary line and the first failures."""

from __future__ import annotations

from pathlib import Path

from vlkge.encoders.cache.report import FAILURES_SHOWN, ModalityReport


def test_describe_lists_the_first_failures_and_points_to_the_rest():
    report = ModalityReport("image", "clip", 8, entities=9, encoded=9)
    for i in range(FAILURES_SHOWN + 2):
        report.failures[f"e{i}"] = [(f"{i}.png", "missing"), (f"{i}b.png", "missing")]
    lines = report.describe(Path("cache/image.json")).splitlines()
    assert lines[0] == report.summary()
    assert "14 images missing or unreadable in 7 entities" in lines[0]
    assert lines[1] == "  e0: 0.png: missing (+1 more)"
    assert len(lines) == 1 + FAILURES_SHOWN + 1
    assert lines[-1] == "  ... 2 more entities: see cache/image.json"


def test_describe_without_failures_is_the_summary():
    report = ModalityReport("text", "minilm", 384, entities=1, reused=1)
    assert report.describe(Path("x")) == "text: 1 entity, 0 encoded, 1 reused (width 384, minilm)"
