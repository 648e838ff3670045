"""Named datasets: where their files are, how to fetch them, and how to load them.

A name resolves to a local folder, searched in this order:

1. ``--data-dir`` / ``dataset.data_dir`` (``<dir>/<name>``, or ``<dir>`` named ``<name>``),
2. the environment variable ``VLKGE_DATA_DIR`` (``$VLKGE_DATA_DIR/<name>``),
3. the user cache (``$VLKGE_CACHE_DIR`` or ``~/.cache/vlkge``) under ``datasets/<name>``,
4. for datasets that ship inside an installed package (PyKEEN's Nations, Kinships, UMLS), that
   package's folder.

If none holds the files, the dataset is downloaded from its public source into the cache, each
file checked against its SHA-256.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from vlkge.data.graph import KnowledgeGraph
from vlkge.data.manifest import EntityManifest, read_keyed_texts
from vlkge.data.triples import LabeledTriples, numbered_lines, read_csv_splits, read_tsv_triples
from vlkge.errors import DataError, VlkgeError, echo
from vlkge.files import atomic_write, raise_if_disk_full

log = logging.getLogger(__name__)

ROTATE = "https://raw.githubusercontent.com/DeepGraphLearning/KnowledgeGraphEmbedding/master/data"
PYKEEN = "https://raw.githubusercontent.com/pykeen/pykeen/master/src/pykeen/datasets"


@dataclass(frozen=True)
class DatasetSpec:
    """How to find and read one named dataset."""

    name: str
    description: str
    # split -> candidate file names inside the dataset folder (first existing wins)
    files: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # file name -> (url, sha256 of the uncompressed content)
    downloads: dict[str, tuple[str, str]] = field(default_factory=dict)
    package: str | None = None  # importable package whose folder holds the files
    csv: bool = False  # WikiArt-MKG layout: one CSV with a mode column
    manifest: Callable[[Path], EntityManifest | None] | None = None
    obtain: str = ""  # how to get it when it cannot be downloaded
    unseen: str = "error"  # published protocol for valid/test entities unseen in train
    texts: str | None = None  # name of the TextSource with its entity names and texts

    def missing(self, folder: Path) -> list[str]:
        if self.csv:
            return [] if _csv_file(folder) else ["triples.csv"]
        return [
            names[0]
            for names in self.files.values()
            if not any((folder / n).is_file() for n in names)
        ]


def _tsv_files() -> dict[str, tuple[str, ...]]:
    return {
        split: (f"{split}.txt", f"{split}.txt.gz", f"{split}.tsv", f"{split}.tsv.gz")
        for split in ("train", "valid", "test")
    }


def wn9_manifest(folder: Path, image_root: str | os.PathLike | None = None) -> EntityManifest:
    """WN9-IMG texts (clean WordNet glosses, else KG-BERT texts) and, given a root, images.

    Images are looked up as ``<root>/<synset>/<image id>.JPEG`` (ImageNet's train layout) for
    every id listed in ``image_list.txt``; without ``image_root`` the manifest has texts only.
    """
    manifest = EntityManifest()
    for name in ("entity2gloss.txt", "entity2text.txt"):
        if (folder / name).is_file():
            for entity, text in read_keyed_texts(folder / name).items():
                manifest.add_text(entity, text)
            break
    root = image_root or os.environ.get("VLKGE_IMAGENET_DIR")
    if root and (folder / "image_list.txt").is_file():
        root = Path(root)
        for _, stem in _nonblank(folder / "image_list.txt"):
            synset = stem.split("_")[0]
            manifest.add_image(synset, str(root / synset / f"{stem}.JPEG"))
    return manifest


def _nonblank(path: Path):
    return ((n, line.strip()) for n, line in numbered_lines(path) if line.strip())


def entity_names(folder: Path) -> dict[str, str]:
    """Human-readable names, when the dataset has them (``entity2name.txt``)."""
    path = folder / "entity2name.txt"
    return read_keyed_texts(path) if path.is_file() else {}


def _manifest_file(folder: Path) -> EntityManifest | None:
    path = folder / "manifest.tsv"
    return EntityManifest.read(path) if path.is_file() else None


def _csv_file(folder: Path) -> Path | None:
    for name in ("triples.csv", "kg.csv"):
        if (folder / name).is_file():
            return folder / name
    csvs = sorted(folder.glob("*triples*.csv"))
    return csvs[0] if csvs else None


KGBERT = "https://raw.githubusercontent.com/yao8839836/kg-bert/master/data"
VILLMOW = "https://raw.githubusercontent.com/villmow/datasets_knowledge_embedding/master"


@dataclass(frozen=True)
class TextSource:
    """Entity names and texts published apart from a dataset's triples (docs/datasets.md).

    Found like a dataset: in a folder of its own name beside the dataset (``<data dir>/<name>``)
    or in the cache, else downloaded there, each file checked against its SHA-256.
    """

    name: str
    description: str
    read: Callable[[Path], tuple[EntityManifest, dict[str, str]]]  # folder -> texts, names
    required: tuple[str, ...]
    downloads: dict[str, tuple[str, str]] = field(default_factory=dict)
    package: str | None = None  # never shipped inside a package (resolve's interface)
    obtain: str = ""

    def missing(self, folder: Path) -> list[str]:
        return [n for n in self.required if not (folder / n).is_file()]


def wordnet_texts(folder: Path) -> tuple[EntityManifest, dict[str, str]]:
    """KG-BERT's WordNet texts, ``lemma, lemma, ..., definition`` per synset offset: the whole
    line is the entity's text, its first lemma the entity's name."""
    manifest, names = EntityManifest(), {}
    for entity, text in read_keyed_texts(folder / "entity2text.txt").items():
        manifest.add_text(entity, text)
        names[entity] = text.split(",", 1)[0].strip()
    return manifest, names


def freebase_texts(folder: Path) -> tuple[EntityManifest, dict[str, str]]:
    """FB15k-237 names (KG-BERT) and short Wikidata descriptions: an entity's text is its
    description, or its name when it has none (6% of the entities)."""
    names = read_keyed_texts(folder / "entity2name.txt")
    if (folder / "entity2description.txt").is_file():
        descriptions = read_keyed_texts(folder / "entity2description.txt")
    else:  # the downloaded layout: derived from the Wikidata mapping
        descriptions = _wikidata_descriptions(folder / "entity2wikidata.json")
    manifest = EntityManifest()
    for entity, name in names.items():
        manifest.add_text(entity, descriptions.get(entity, name))
    for entity in descriptions.keys() - names.keys():
        manifest.add_text(entity, descriptions[entity])
    return manifest, names


def _wikidata_descriptions(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(path, None, f"not a JSON object ({exc})") from None
    if not isinstance(entries, dict):
        raise DataError(path, None, "expected one JSON object keyed by entity id")
    return {
        str(key): " ".join(value["description"].split())
        for key, value in entries.items()
        if isinstance(value, dict)
        and isinstance(value.get("description"), str)
        and value["description"].strip()
    }


TEXTS: dict[str, TextSource] = {
    source.name: source
    for source in [
        TextSource(
            "wordnet-text",
            "WordNet 3.0 lemmas and definitions per synset (KG-BERT's entity2text.txt)",
            wordnet_texts,
            required=("entity2text.txt",),
            downloads={
                "entity2text.txt": (
                    f"{KGBERT}/WN18RR/entity2text.txt",
                    "8f5c6f11753dafa879917b9bdf73d398ceb3bd4bed8d5553177e1e0f2c37521f",
                )
            },
        ),
        TextSource(
            "fb15k-237-text",
            "Freebase names (KG-BERT) and short Wikidata descriptions (villmow's mapping)",
            freebase_texts,
            required=("entity2name.txt",),
            downloads={
                "entity2name.txt": (
                    f"{KGBERT}/FB15k-237/entity2text.txt",
                    "16beedcfad3d32696e8b0b98cfa0f5eeb144f5142225f227a64fd9ce37447da5",
                ),
                "entity2wikidata.json": (
                    f"{VILLMOW}/FB15k-237/entity2wikidata.json",
                    "80e74bb002fb9ca0ecd3d63879a3a51121db855d312a101917a1ffb6aed2fea9",
                ),
            },
        ),
    ]
}


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in [
        DatasetSpec(
            "wn9-img",
            "WordNet subset with ImageNet images (IKRL); texts from WordNet 3.0 glosses",
            files=_tsv_files(),
            manifest=wn9_manifest,
            obtain="the triples and texts ship in the VL-KGE and IKRL repositories; images need a "
            "local ImageNet copy (set VLKGE_IMAGENET_DIR)",
        ),
        DatasetSpec(
            "wn18rr",
            "WordNet subset without inverse relations (Dettmers et al. 2018)",
            files=_tsv_files(),
            downloads={
                "train.txt": (
                    f"{ROTATE}/wn18rr/train.txt",
                    "038612e783c215ee5f3ca9fbfca27b8d0739be1028fe4ee7c174aecf0b83d5df",
                ),
                "valid.txt": (
                    f"{ROTATE}/wn18rr/valid.txt",
                    "453ce7202afa58094a04d2b1560ee2b02660f1c260b32ce6651c8ccedd1028ab",
                ),
                "test.txt": (
                    f"{ROTATE}/wn18rr/test.txt",
                    "0383bceaaa1096cf3c03ec021ed0048068e2355dbfc0239b292cefdac821cec5",
                ),
            },
            manifest=_manifest_file,
            unseen="keep",
            texts="wordnet-text",
        ),
        DatasetSpec(
            "fb15k-237",
            "Freebase subset without inverse relations (Toutanova & Chen 2015)",
            files=_tsv_files(),
            downloads={
                "train.txt": (
                    f"{ROTATE}/FB15k-237/train.txt",
                    "6e4c2782169af21e9743f3b1d200886f5d595bf6bc504ec1351720949c5cdfae",
                ),
                "valid.txt": (
                    f"{ROTATE}/FB15k-237/valid.txt",
                    "cf6309010852f6a8d47a45df830a426415d1ee6f7a3970a8376ff1fb81db4a5c",
                ),
                "test.txt": (
                    f"{ROTATE}/FB15k-237/test.txt",
                    "5711cf41623ceb4eacc50eb6108a3ca6565c7492e3caaf82a3e355cc660d1574",
                ),
            },
            manifest=_manifest_file,
            unseen="keep",
            texts="fb15k-237-text",
        ),
        *[
            DatasetSpec(
                name,
                description,
                files=_tsv_files(),
                package=f"pykeen.datasets.{name}",
                downloads={
                    f"{split}.txt": (f"{PYKEEN}/{name}/{split}.txt", digest)
                    for split, digest in digests.items()
                },
            )
            for name, description, digests in [
                (
                    "nations",
                    "Nations (Kemp et al. 2006): 14 countries, 55 relations",
                    {
                        "train": "0830fa9da8e5bba2ccdaa45b7bdc9130451ba66b09ff2708f35fccaf82473e57",
                        "valid": "2b337a62e51a2f45c283eac98a70d21b7e0e102136be1539b2a52c652a7b0530",
                        "test": "3971085165b47b6aeaec68058c6d8d98b3005e929db81268410b95ae4db770ab",
                    },
                ),
                (
                    "kinships",
                    "Alyawarra kinship (Kemp et al. 2006): 104 people, 25 relations",
                    {
                        "train": "738612111a6acf0e39662bde24c7e72a4d1edf20931beea077da367dda689731",
                        "valid": "c56f8630a583178b1e569f11a64aa535ae1ce0b0912d8b1e24716be2b37f04da",
                        "test": "05e5733265761d55be9c05bfaff5a8d0808df46f9c1e9d66cc3f2fe114e43d88",
                    },
                ),
                (
                    "umls",
                    "Unified Medical Language System (Kemp et al. 2006): 135 concepts, 46 relations",
                    {
                        "train": "873ef4925516b83e7f6f8cc02b4be51d848828710a7f65a956f0ac4a9e452f35",
                        "valid": "025c98f8a4891e2a6582ec5b40ee0d904031edad9c52554522f4b7904820c98e",
                        "test": "a7eb529a3d2810fcc96341ccc97c625a5e202f8389673aa6bd317eeebbb79014",
                    },
                ),
            ]
        ],
        *[
            DatasetSpec(
                name,
                f"WikiArt multimodal KG {version} (VL-KGE paper): artworks with images, "
                "attributes with texts; CSV layout head,relation,tail,mode",
                csv=True,
                manifest=_manifest_file,
                obtain="download it from the VL-KGE repository (github.com/thefth/vl-kge, Git LFS) "
                "and put triples.csv (plus an optional manifest.tsv) in that folder",
            )
            for name, version in [("wikiart-mkg-v1", "v1"), ("wikiart-mkg-v2", "v2")]
        ],
    ]
}


def cache_dir() -> Path:
    return Path(os.environ.get("VLKGE_CACHE_DIR") or Path.home() / ".cache" / "vlkge")


def _candidates(spec: DatasetSpec | TextSource, data_dir: str | os.PathLike | None) -> list[Path]:
    folders: list[Path] = []
    if data_dir:
        folders.append(Path(data_dir) / spec.name)
        if Path(data_dir).name.lower() == spec.name:  # the dataset's own folder
            folders.append(Path(data_dir))
    if os.environ.get("VLKGE_DATA_DIR"):
        folders.append(Path(os.environ["VLKGE_DATA_DIR"]) / spec.name)
    folders.append(cache_dir() / "datasets" / spec.name)
    if spec.package:
        found = importlib.util.find_spec(spec.package.split(".")[0])
        if found is not None and found.submodule_search_locations:
            root = Path(next(iter(found.submodule_search_locations)))
            folders.append(root.joinpath(*spec.package.split(".")[1:]))
    return folders


def get_spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name.lower()]
    except KeyError:
        raise VlkgeError(
            f"unknown dataset {echo(name)}; known: {', '.join(DATASETS)} (or give a folder path)"
        ) from None


def resolve(
    name: str,
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    spec: DatasetSpec | TextSource | None = None,
) -> Path:
    """The local folder holding dataset ``name`` (or the text source ``spec``), downloading it
    into the cache if needed."""
    spec = spec or get_spec(name)
    for folder in _candidates(spec, data_dir):
        if folder.is_dir() and not spec.missing(folder):
            return folder
    if not spec.downloads:
        raise VlkgeError(
            f"dataset {name} not found in {', '.join(str(f) for f in _candidates(spec, data_dir))}"
            f"; {spec.obtain or 'it cannot be downloaded automatically'}"
        )
    if not download:
        raise VlkgeError(f"dataset {name} is not available locally and downloading is disabled")
    return _download(spec)


def _download(spec: DatasetSpec | TextSource) -> Path:
    target = cache_dir() / "datasets" / spec.name
    target.mkdir(parents=True, exist_ok=True)
    for filename, (url, digest) in spec.downloads.items():
        path = target / filename
        if path.is_file() and sha256(path) == digest:
            continue
        log.info("downloading %s from %s", filename, url)
        with atomic_write(path, binary=True) as handle:  # kept only once its checksum matches
            received = hashlib.sha256()
            try:
                with urllib.request.urlopen(url, timeout=60) as response:
                    for block in iter(lambda: response.read(1 << 20), b""):
                        handle.write(block)
                        received.update(block)
            except OSError as exc:
                raise_if_disk_full(exc, path)
                raise VlkgeError(f"could not download {url}: {exc}") from None
            if received.hexdigest() != digest:
                raise VlkgeError(f"checksum mismatch for {url}: the download is corrupt or changed")
    return target


def sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_splits(folder: Path, spec: DatasetSpec | None = None) -> dict[str, LabeledTriples]:
    """Read the triple files of a dataset folder (TSV per split, or one WikiArt CSV)."""
    if spec is not None and spec.csv or (spec is None and _csv_file(folder)):
        path = _csv_file(folder)
        if path is None:
            raise DataError(folder, None, "no triples CSV (expected triples.csv)")
        return read_csv_splits(path)
    files = spec.files if spec is not None else _tsv_files()
    splits: dict[str, LabeledTriples] = {}
    for split, names in files.items():
        path = next((folder / n for n in names if (folder / n).is_file()), None)
        if path is not None:
            splits[split] = read_tsv_triples(path)
    if "train" not in splits:
        raise DataError(folder, None, "no train.txt (tab-separated head, relation, tail)")
    return splits


def load_dataset(
    name_or_path: str,
    data_dir: str | os.PathLike | None = None,
    inductive: bool = False,
    with_manifest: bool = True,
    image_root: str | os.PathLike | None = None,
    unseen: str | None = None,
    quiet: bool = False,
) -> KnowledgeGraph:
    """Load a named dataset, or any folder with ``train/valid/test.txt`` or a triples CSV.

    ``unseen`` (``error``/``keep``/``drop``) overrides the dataset's published handling of
    valid/test entities that training never saw; ``quiet`` keeps the data's findings
    (duplicates, self-loops, overlaps) at debug level (see ``KnowledgeGraph.from_labeled``).
    """
    path = Path(name_or_path)
    if name_or_path.lower() in DATASETS:
        spec: DatasetSpec | None = get_spec(name_or_path)
        folder = resolve(name_or_path, data_dir)
        name = spec.name
    elif path.is_dir():
        spec, folder, name = None, path, path.name
    else:
        get_spec(name_or_path)  # raises with the list of known names
        raise AssertionError
    manifest = None
    if with_manifest:
        if spec is not None and spec.manifest is wn9_manifest:
            manifest = wn9_manifest(folder, image_root)
        elif spec is not None and spec.manifest is not None:
            manifest = spec.manifest(folder)
        else:
            manifest = _manifest_file(folder)
    names = entity_names(folder)
    if spec is not None and spec.texts and manifest is None and (with_manifest or not names):
        try:
            texts, text_names = load_texts(spec.texts, data_dir or folder.parent)
        except DataError:
            raise
        except VlkgeError as exc:  # not found, not downloadable: a structural model needs none
            log.warning("%s: no entity texts (%s)", name, exc)
        else:
            manifest = texts if with_manifest else None
            names = names or text_names
    unseen = unseen or (spec.unseen if spec is not None else "error")
    kg = KnowledgeGraph.from_labeled(
        name,
        read_splits(folder, spec),
        manifest=manifest,
        inductive=inductive,
        unseen=unseen,
        quiet=quiet,
    )
    kg.names = names
    return kg


def load_texts(name: str, data_dir: str | os.PathLike) -> tuple[EntityManifest, dict[str, str]]:
    """The entity texts (as a manifest) and names of text source ``name``."""
    source = TEXTS[name]
    return source.read(resolve(name, data_dir, spec=source))


def load_graph(dataset: dict, quiet: bool = False) -> KnowledgeGraph:
    """The graph a config's ``dataset`` section names, with its training-only inverse
    relations; ``quiet``: its findings were already reported when the run trained."""
    kg = load_dataset(
        dataset["name"],
        data_dir=dataset["data_dir"],
        inductive=dataset["setting"] == "inductive",
        unseen=dataset["unseen_entities"],
        quiet=quiet,
    )
    return kg.with_inverse_relations(dataset["inverse_relations"])
