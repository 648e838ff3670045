"""The encoding loop: only stale entities are encoded, in groups of one shard each."""

from __future__ import annotations

from fakes import LetterColourEncoder

from vlkge.data.manifest import EntityManifest
from vlkge.encoders.cache.encoding import EncodeOptions, Plan, encoded_shards
from vlkge.encoders.cache.fingerprints import text_fingerprint
from vlkge.encoders.cache.tables import Record

MANIFEST = EntityManifest(texts={f"e{i}": [f"text {'x' * i}"] for i in range(5)})


def test_stale_entities_are_those_without_a_row_for_their_inputs():
    plan = Plan.build(LetterColourEncoder(), MANIFEST, ["e0", "e1", "e2"], "text", EncodeOptions())
    records = {
        "e0": Record(text_fingerprint(["text "]), None),  # current
        "e1": Record("an older input", None),  # changed since
    }
    assert [entity for entity, _ in plan.stale(records)] == ["e1", "e2"]
    assert plan.key == (LetterColourEncoder().fingerprint, "", 6)


def test_rows_come_in_groups_of_shard_size():
    encoder, options = LetterColourEncoder(), EncodeOptions(shard_size=2)
    plan = Plan.build(encoder, MANIFEST, MANIFEST.entities(), "text", options)
    shards = list(encoded_shards(encoder, plan, plan.items, options))
    assert [list(shard) for shard in shards] == [["e0", "e1"], ["e2", "e3"], ["e4"]]
    row = shards[2]["e4"]
    assert row.input == plan.fingerprints["e4"] and row.used == 1
    assert row.feature.shape == (6,)
