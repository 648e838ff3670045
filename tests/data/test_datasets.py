"""Loading datasets: real counts, published protocols, manifests, folders and CSVs."""

from __future__ import annotations

import gzip

import pytest

from vlkge.data import load_dataset, resolve
from vlkge.data.datasets import read_splits
from vlkge.data.registry import get_spec
from vlkge.errors import DataError

# name -> (entities, relations, train, valid, test, entities seen in train)
# wn9-img, wn18rr, fb15k-237: the README.md of each folder in shared/data.
# nations, kinships, umls: PyKEEN's copies (Kemp et al. 2006), counted from its files.
COUNTS = {
    "wn9-img": (6_555, 9, 11_741, 1_337, 1_319, 6_555),
    "wn18rr": (40_943, 11, 86_835, 3_034, 3_134, 40_559),
    "fb15k-237": (14_541, 237, 272_115, 17_535, 20_466, 14_505),
    "nations": (14, 55, 1_592, 199, 201, 14),
    "kinships": (104, 25, 8_544, 1_068, 1_074, 104),
    "umls": (135, 46, 5_216, 652, 661, 135),
}


@pytest.mark.parametrize("name", list(COUNTS))
def test_real_dataset_counts(name, data_dir):
    entities, relations, train, valid, test, in_train = COUNTS[name]
    kg = load_dataset(name)
    assert kg.name == name
    assert kg.num_entities == entities
    assert kg.num_relations == relations
    assert {s: len(t) for s, t in kg.splits.items()} == {
        "train": train,
        "valid": valid,
        "test": test,
    }
    assert int(kg.seen_in_train().sum()) == in_train
    # train-first ids: every entity seen in train has a smaller id than every unseen one
    assert kg.seen_in_train()[:in_train].all()


def test_wn18rr_unseen_entities_follow_the_published_protocol(data_dir):
    # the default for WN18RR keeps the 210 valid / 210 test triples with unseen entities
    kg = load_dataset("wn18rr")
    seen = kg.seen_in_train()
    for split in ("valid", "test"):
        triples = kg.splits[split]
        assert int((~(seen[triples[:, 0]] & seen[triples[:, 2]])).sum()) == 210
    with pytest.raises(DataError, match="does not occur in the training split") as info:
        load_dataset("wn18rr", unseen="error")
    assert str(info.value).startswith(str(data_dir / "wn18rr" / "valid.txt") + ":")
    dropped = load_dataset("wn18rr", unseen="drop")
    assert len(dropped.splits["valid"]) == 3_034 - 210
    assert len(dropped.splits["test"]) == 3_134 - 210


def test_fb15k237_is_read_from_gzip_with_crlf(data_dir):
    folder = resolve("fb15k-237")
    assert folder == data_dir / "fb15k-237"
    splits = read_splits(folder, get_spec("fb15k-237"))
    assert splits["train"].path.endswith("train.txt.gz")
    assert not any("\r" in cell for row in splits["test"].rows for cell in row)


def test_wn9_manifest_has_texts_for_every_entity(data_dir):
    kg = load_dataset("wn9-img")
    manifest = kg.manifest
    assert manifest is not None
    assert len(manifest.texts) == 6_555
    assert sum(len(v) for v in manifest.texts.values()) == 6_555
    assert manifest.images == {}  # no ImageNet root given
    # the clean WordNet gloss wins over the KG-BERT text
    assert manifest.texts["n12513613"][0].startswith("small tree of the eastern Mediterranean")
    assert manifest.coverage(kg.entities) == {
        "both": 0,
        "text_only": 6_555,
        "image_only": 0,
        "neither": 0,
    }
    # human-readable names from entity2name.txt
    assert kg.display_name(kg.entity_id("n12513613")).startswith("Judas tree")
    assert load_dataset("wn9-img", with_manifest=False).manifest is None


def test_wn9_manifest_with_image_root(data_dir, tmp_path):
    kg = load_dataset("wn9-img", image_root=tmp_path)
    images = kg.manifest.images
    assert len(images) == 6_555
    assert sum(len(v) for v in images.values()) == 63_225
    assert images["n00004475"][0] == str(tmp_path / "n00004475" / "n00004475_15899.JPEG")
    assert all(1 <= len(v) <= 10 for v in images.values())
    assert kg.manifest.coverage(kg.entities)["both"] == 6_555


def test_load_folder_path(toy_dir):
    kg = load_dataset(str(toy_dir))
    assert kg.name == "toy"
    assert kg.entities == ["a", "b", "c", "d"]
    assert {s: len(t) for s, t in kg.splits.items()} == {"train": 6, "valid": 2, "test": 2}
    assert kg.manifest is None
    assert kg.names == {}


def test_folder_with_manifest_and_names(toy_dir):
    (toy_dir / "manifest.tsv").write_text("a\ttext\tletter a\nb\timage\tb.jpg\n", encoding="utf-8")
    (toy_dir / "entity2name.txt").write_text("a\tAlpha\n", encoding="utf-8")
    kg = load_dataset(str(toy_dir))
    assert kg.manifest.coverage(kg.entities) == {
        "both": 0,
        "text_only": 1,
        "image_only": 1,
        "neither": 2,
    }
    assert kg.manifest.images["b"] == [str(toy_dir / "b.jpg")]
    assert kg.display_name(0) == "Alpha"


def test_folder_with_gz_and_tsv_names(tmp_path, tsv):
    folder = tmp_path / "kg"
    folder.mkdir()
    (folder / "train.tsv.gz").write_bytes(gzip.compress(b"a\tr\tb\r\nb\tr\tc\r\n"))
    tsv(folder / "test.tsv", [("a", "r", "c")])
    kg = load_dataset(str(folder))
    assert set(kg.splits) == {"train", "test"}
    assert kg.entities == ["a", "b", "c"]


def test_folder_without_train(tmp_path, tsv):
    folder = tmp_path / "kg"
    tsv(folder / "test.txt", [("a", "r", "c")])
    with pytest.raises(DataError, match="no train.txt") as info:
        load_dataset(str(folder))
    assert str(info.value).startswith(f"{folder}:")


WIKIART_CSV = """head,relation,tail,mode
art1,painted_by,artist1,train
art2,painted_by,artist2,train
art1,has_style,cubism,train
art2,has_style,cubism,train
art3,painted_by,artist1,train
art3,has_style,cubism,val
art2,painted_by,artist1,test
"""


def test_wikiart_csv_dataset(tmp_path):
    folder = tmp_path / "data" / "wikiart-mkg-v1"
    folder.mkdir(parents=True)
    (folder / "triples.csv").write_text(WIKIART_CSV, encoding="utf-8")
    (folder / "manifest.tsv").write_text(
        "art1\timage\timages/art1.jpg\ncubism\ttext\tan art movement\n", encoding="utf-8"
    )
    kg = load_dataset("wikiart-mkg-v1", data_dir=tmp_path / "data")
    assert kg.name == "wikiart-mkg-v1"
    assert {s: len(t) for s, t in kg.splits.items()} == {"train": 5, "valid": 1, "test": 1}
    assert kg.relations == ["painted_by", "has_style"]
    assert kg.manifest.images == {"art1": [str(folder / "images" / "art1.jpg")]}
    # a folder path with a CSV works too
    assert len(load_dataset(str(folder)).splits["valid"]) == 1


def test_wikiart_csv_bad_row_names_file_and_line(tmp_path):
    folder = tmp_path / "wikiart-mkg-v2"
    folder.mkdir()
    (folder / "kg.csv").write_text(WIKIART_CSV + "art9,painted_by,artist1,holdout\n")
    with pytest.raises(DataError, match="unknown split name") as info:
        load_dataset("wikiart-mkg-v2", data_dir=tmp_path)
    assert str(info.value).startswith(f"{folder / 'kg.csv'}:9:")
