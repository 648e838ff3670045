"""Entity texts and names published beside a dataset's triples (WN18RR's WordNet texts,
FB15k-237's names and Wikidata descriptions): found beside the data, derived from the
downloaded layout, optional when absent."""

import json
import logging
import shutil
import urllib.error
import urllib.request

import pytest

from vlkge.data.datasets import load_dataset
from vlkge.data.manifest import read_keyed_texts
from vlkge.data.texts import TEXTS, freebase_texts
from vlkge.errors import DataError


def test_wn18rr_texts_cover_every_entity_and_name_it_by_its_first_lemma(data_dir):
    kg = load_dataset("wn18rr")
    lines = read_keyed_texts(data_dir / "wordnet-text" / "entity2text.txt")
    assert set(kg.manifest.texts) == set(kg.entities)  # all 40,943
    entity = "03964744"
    assert kg.manifest.texts[entity] == [lines[entity]]
    assert lines[entity] == "toy, an artifact designed to be played with"
    assert kg.names[entity] == "toy"


def test_fb15k237_texts_are_descriptions_else_names(data_dir):
    kg = load_dataset("fb15k-237")
    names = read_keyed_texts(data_dir / "fb15k-237-text" / "entity2name.txt")
    descriptions = read_keyed_texts(data_dir / "fb15k-237-text" / "entity2description.txt")
    assert all(kg.names[e] == names[e] for e in kg.entities)
    for entity in kg.entities:
        assert kg.manifest.texts[entity] == [descriptions.get(entity, names[entity])]
    described = sum(e in descriptions for e in kg.entities)
    assert described == 13_666  # the README's count; the other 875 fall back to their name


def test_downloaded_layout_derives_descriptions_from_the_wikidata_mapping(tmp_path):
    (tmp_path / "entity2name.txt").write_text("/m/a\tAda\n/m/b\tBob\n/m/c\tCy", encoding="utf-8")
    mapping = {
        "/m/a": {"label": "Ada", "description": "English  mathematician"},
        "/m/b": {"label": "Bob", "description": None},
    }
    (tmp_path / "entity2wikidata.json").write_text(json.dumps(mapping), encoding="utf-8")
    manifest, names = freebase_texts(tmp_path)
    assert manifest.texts == {"/m/a": ["English mathematician"], "/m/b": ["Bob"], "/m/c": ["Cy"]}
    assert names["/m/c"] == "Cy"
    (tmp_path / "entity2wikidata.json").write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(DataError, match="entity2wikidata.json: expected one JSON object"):
        freebase_texts(tmp_path)


def test_texts_are_optional_when_absent_and_unreachable(data_dir, tmp_path, monkeypatch, caplog):
    shutil.copytree(data_dir / "wn18rr", tmp_path / "wn18rr")
    monkeypatch.setenv("VLKGE_DATA_DIR", str(tmp_path))

    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with caplog.at_level(logging.WARNING, logger="vlkge"):
        kg = load_dataset("wn18rr")
    assert kg.manifest is None and kg.num_entities == 40_943
    assert "wn18rr: no entity texts (could not download" in caplog.text


def test_every_text_source_checks_its_downloads():
    for source in TEXTS.values():
        assert set(source.required) <= set(source.downloads)
        assert all(len(digest) == 64 for _, digest in source.downloads.values())
