"""Trained representations out of vlkge: entity and relation tables as safetensors and TSV
(with the dataset's ids), and nearest neighbours of an entity in the fused space.

The entity table is what the backbone scores: the fused multimodal vector of each entity (its
structural row for a structural model); for ComplEx and RotatE the real part followed by the
imaginary part. Relations are the backbone's relation table (with reciprocal relations, the
inverse of relation ``r`` is row ``r + R``, named ``r^-1``).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

from vlkge.data.graph import KnowledgeGraph
from vlkge.errors import VlkgeError, echo
from vlkge.models.model import KGEModel


@torch.no_grad()
def tables(model: KGEModel, kg: KnowledgeGraph) -> dict[str, tuple[list[str], torch.Tensor]]:
    """``{"entities": (ids, [E, w]), "relations": (ids, [R', w'])}`` as float32 on the CPU."""
    model.eval()
    entities = model.entity_table().detach().float().cpu().contiguous()
    relations = model.relations().detach().float().cpu().contiguous()
    names = list(kg.relations)
    if len(relations) == 2 * len(names):  # reciprocal relations
        names += [f"{r}^-1" for r in kg.relations]
    if len(relations) != len(names) or len(entities) != kg.num_entities:
        raise VlkgeError("the run's model does not match its graph (entity or relation count)")
    return {"entities": (list(kg.entities), entities), "relations": (names, relations)}


def export_embeddings(
    cfg: dict, kg: KnowledgeGraph, model: KGEModel, out: str | Path
) -> list[Path]:
    """Write ``embeddings.safetensors`` (tensors ``entities`` and ``relations``; their ids and
    the model's settings in the metadata) and ``entities.tsv`` / ``relations.tsv`` (a header,
    then ``index, id, values...`` per row) into ``out``; returns the paths written."""
    from safetensors.torch import save_file

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise VlkgeError(f"{out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    data = tables(model, kg)
    settings = cfg["model"]
    metadata = {
        "format": "vlkge embeddings 1",
        "dataset": str(cfg["dataset"]["name"]),
        "backbone": settings["backbone"],
        "modalities": json.dumps(settings["modalities"]),
        "fusion": settings["fusion"],
        "entity_layout": (
            "real|imaginary" if settings["backbone"] in ("complex", "rotate") else "real"
        ),
        **{f"{kind}_ids": json.dumps(ids) for kind, (ids, _) in data.items()},
    }
    paths = [out / "embeddings.safetensors"]
    save_file({kind: table for kind, (_, table) in data.items()}, paths[0], metadata=metadata)
    for kind, (ids, table) in data.items():
        path = out / f"{kind}.tsv"
        with open(path, "w", encoding="utf-8") as handle:
            columns = "\t".join(f"x{i}" for i in range(table.shape[1]))
            handle.write(f"index\tid\t{columns}\n")
            for i, (label, row) in enumerate(zip(ids, table.tolist(), strict=True)):
                handle.write(f"{i}\t{label}\t" + "\t".join(f"{v:.7g}" for v in row) + "\n")
        paths.append(path)
    return paths


@torch.no_grad()
def nearest_entities(
    model: KGEModel,
    kg: KnowledgeGraph,
    entity: str,
    k: int = 10,
    table: torch.Tensor | None = None,
) -> list[dict]:
    """The ``k`` entities whose vectors in the fused space (the table the backbone scores) are
    most cosine-similar to ``entity``'s; ``table`` is that table when already computed."""
    index = kg.entity_id(entity)
    model.eval()
    unit = unit_rows(model.entity_table() if table is None else table)
    return nearest_to(kg, unit[index], unit, k, exclude=index)


def unit_rows(table: torch.Tensor) -> torch.Tensor:
    """``table`` as float32 on the CPU with every row L2-normalised (cosines become products)."""
    return F.normalize(table.detach().float().cpu(), dim=-1)


def nearest_to(
    kg: KnowledgeGraph,
    vector: torch.Tensor,
    unit_table: torch.Tensor,
    k: int = 10,
    exclude: int | None = None,
) -> list[dict]:
    """The ``k`` rows of ``unit_table`` (``[E, w]``, :func:`unit_rows`) most cosine-similar to
    ``vector`` (``[w]``), as ranked entities of ``kg``; ``exclude`` (the vector's own row) is
    never one of them."""
    if k < 1:
        raise VlkgeError(f"--top-k must be positive, not {echo(k)}")
    similarity = unit_table @ F.normalize(vector.detach().float().cpu(), dim=-1)
    if exclude is not None:
        similarity[exclude] = float("-inf")
    best = torch.topk(similarity, min(k, kg.num_entities - (exclude is not None)))
    return [
        {
            "rank": rank,
            "entity": kg.entities[int(e)],
            "name": kg.display_name(int(e)),
            "similarity": float(s),
        }
        for rank, (s, e) in enumerate(zip(best.values, best.indices, strict=True), start=1)
    ]
