"""The named datasets: how to find and read each one (:class:`DatasetSpec`), and the registry
:data:`DATASETS` that ``dataset.name`` and ``vlkge datasets list`` draw from.

Where a named dataset's folder is found, or downloaded to, is in :mod:`vlkge.data.download`;
texts published apart from the triples are :mod:`vlkge.data.texts` (docs/datasets.md).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from vlkge.data.manifest import EntityManifest, read_keyed_texts
from vlkge.data.triples import numbered_lines
from vlkge.errors import VlkgeError, echo
from vlkge.terms import SPLITS

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
            return [] if csv_file(folder) else ["triples.csv"]
        return [
            names[0]
            for names in self.files.values()
            if not any((folder / n).is_file() for n in names)
        ]


def tsv_files() -> dict[str, tuple[str, ...]]:
    return {
        split: (f"{split}.txt", f"{split}.txt.gz", f"{split}.tsv", f"{split}.tsv.gz")
        for split in SPLITS
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


def manifest_file(folder: Path) -> EntityManifest | None:
    path = folder / "manifest.tsv"
    return EntityManifest.read(path) if path.is_file() else None


def csv_file(folder: Path) -> Path | None:
    for name in ("triples.csv", "kg.csv"):
        if (folder / name).is_file():
            return folder / name
    csvs = sorted(folder.glob("*triples*.csv"))
    return csvs[0] if csvs else None


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in [
        DatasetSpec(
            "wn9-img",
            "WordNet subset with ImageNet images (IKRL); texts from WordNet 3.0 glosses",
            files=tsv_files(),
            manifest=wn9_manifest,
            obtain="the triples and texts ship in the VL-KGE and IKRL repositories; images need a "
            "local ImageNet copy (set VLKGE_IMAGENET_DIR)",
        ),
        DatasetSpec(
            "wn18rr",
            "WordNet subset without inverse relations (Dettmers et al. 2018)",
            files=tsv_files(),
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
            manifest=manifest_file,
            unseen="keep",
            texts="wordnet-text",
        ),
        DatasetSpec(
            "fb15k-237",
            "Freebase subset without inverse relations (Toutanova & Chen 2015)",
            files=tsv_files(),
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
            manifest=manifest_file,
            unseen="keep",
            texts="fb15k-237-text",
        ),
        *[
            DatasetSpec(
                name,
                description,
                files=tsv_files(),
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
                manifest=manifest_file,
                obtain="download it from the VL-KGE repository (github.com/thefth/vl-kge, Git LFS) "
                "and put triples.csv (plus an optional manifest.tsv) in that folder",
            )
            for name, version in [("wikiart-mkg-v1", "v1"), ("wikiart-mkg-v2", "v2")]
        ],
    ]
}


def get_spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name.lower()]
    except KeyError:
        raise VlkgeError(
            f"unknown dataset {echo(name)}; known: {', '.join(DATASETS)} (or give a folder path)"
        ) from None
