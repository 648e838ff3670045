"""What ``vlkge encode`` does with a dataset: which cache folder, which imported features,
which encoder and which modalities, from the command's options and the config.

Every entity with triples or inputs is encoded, seen in training or not, with the config's text
template applied (:func:`encoder_manifest`). Imported features (``--text-features``,
``--image-features``) fill their modality; the encoder fills the others, skipping a modality
the dataset has no inputs for unless ``--modalities`` names it. Under torchrun each rank encodes
a share of the entities (:mod:`vlkge.encoders.sharded`) and rank 0 alone imports and reports.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from vlkge import distributed
from vlkge.data.datasets import load_dataset
from vlkge.data.graph import KnowledgeGraph
from vlkge.data.manifest import EntityManifest
from vlkge.encoders.cache.folder import default_cache_dir
from vlkge.encoders.cache.report import ModalityReport
from vlkge.encoders.cache.store import FeatureCache
from vlkge.encoders.precomputed import read_features
from vlkge.encoders.sharded import encode_sharded
from vlkge.errors import VlkgeError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncodeRequest:
    """The options of ``vlkge encode``, named as on its command line; ``None`` leaves the
    choice to the config."""

    dataset: str | None = None
    data_dir: str | None = None
    image_root: str | None = None
    encoder: str | None = None  # an encoder asked for by name (else encoder.name)
    kind: str | None = None
    out: str | None = None
    modalities: list[str] | None = None
    batch_size: int | None = None
    workers: int | None = None
    text_features: str | None = None  # files of precomputed features to import
    image_features: str | None = None
    ids: str | None = None  # the entity ids of a feature matrix, one a line

    @property
    def imports(self) -> dict[str, str]:
        """The feature file to import, by modality."""
        given = (("text", self.text_features), ("image", self.image_features))
        return {modality: path for modality, path in given if path}


def encoder_manifest(cfg: dict, kg: KnowledgeGraph) -> EntityManifest | None:
    """The entities' texts and images as the encoder sees them (``encoder.text_template``
    applied), or ``None`` when the dataset has none."""
    if kg.manifest is None:
        return None
    return kg.manifest.with_text_template(cfg["encoder"]["text_template"], kg.names)


def encode_dataset(
    cfg: dict, request: EncodeRequest, device: torch.device, progress: bool = False
) -> tuple[FeatureCache, list[ModalityReport]] | None:
    """Fill the dataset's feature cache as ``request`` asks: the cache and what was done to
    each modality on rank 0, ``None`` on the other ranks of a torchrun launch."""
    from vlkge.encoders import build_encoder  # at each call: it may be replaced (tests do)

    settings = cfg["encoder"]
    batch_size = settings["batch_size"] if request.batch_size is None else request.batch_size
    workers = settings["workers"] if request.workers is None else request.workers
    if batch_size <= 0 or workers < 0:
        raise VlkgeError("--batch-size must be positive and --workers not negative")
    kg = load_dataset(
        request.dataset or cfg["dataset"]["name"],
        data_dir=request.data_dir or cfg["dataset"]["data_dir"],
        inductive=True,  # every entity with triples or modal inputs, seen in train or not
        image_root=request.image_root,
        unseen="keep",
        quiet=True,  # the data's findings are reported where it is trained on
    )
    manifest = encoder_manifest(cfg, kg)
    cache = FeatureCache(_cache_folder(cfg, request, kg))
    main = distributed.is_main()
    reports = []
    for modality, path in request.imports.items() if main else ():
        features = read_features(path, ids=request.ids, entities=kg.entities)
        reports.append(cache.import_features(modality, features))
    wanted = request.modalities
    if wanted is not None:
        wanted = [m for m in dict.fromkeys(wanted) if m not in request.imports]
    run_encoder = (
        bool(wanted) if wanted is not None else bool(request.encoder) or not request.imports
    )
    if run_encoder and manifest is None:
        raise VlkgeError(
            f"dataset {kg.name} has no texts or images to encode (no manifest.tsv); "
            "import features with --text-features / --image-features instead"
        )
    if run_encoder:
        name = request.encoder or settings["name"]
        encoder = build_encoder(name, kind=request.kind, device=device, batch_size=batch_size)
        if wanted is None:
            wanted = [m for m in encoder.modalities if m not in request.imports]
        absent = [m for m in wanted if not (manifest.texts if m == "text" else manifest.images)]
        if absent and request.modalities is None:
            for m in absent:
                log.info("dataset %s has no %s inputs; skipping that modality", kg.name, m)
            wanted = [m for m in wanted if m not in absent]
        if wanted:
            result = encode_sharded(
                cache, encoder, manifest, kg.entities, wanted, workers=workers, progress=progress
            )
            reports.extend(result.values() if result else ())
    return (cache, reports) if main else None


def _cache_folder(cfg: dict, request: EncodeRequest, kg: KnowledgeGraph) -> Path:
    """``--out``, else ``features.cache_dir``, else the default folder of the dataset and the
    encoder (of the imported file when only features are imported)."""
    if request.out or cfg["features"]["cache_dir"]:
        return Path(request.out or cfg["features"]["cache_dir"])
    name = request.encoder or cfg["encoder"]["name"]
    imports = request.imports
    source = name if request.encoder or not imports else next(iter(imports.values()))
    source = Path(source).name if Path(source).exists() else source
    return default_cache_dir(kg.name, source, cfg["encoder"]["text_template"])
