"""The JSON API of ``vlkge serve`` (``/api/...``; the table is in README.md, "Serving").

Every answer comes from a run loaded once (:class:`~vlkge.serving.state.ServedRun`); an
unknown run, entity or relation is a 404 and a bad input a 422, each with one message. Routes
that take a few milliseconds of CPU (a top-k, neighbours, summaries) are ``async``: they run on
the event loop without a trip through the thread pool, which costs more than they do; searches,
entity pages, images and new entities run on the thread pool (docs/serving.md, "Speed")."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse

from vlkge.errors import VlkgeError, echo
from vlkge.serving.inputs import (
    DEFAULT_K,
    Limits,
    NotFound,
    check_k,
    check_query,
    check_text,
    image_file,
    media_type,
)
from vlkge.serving.state import DEFAULT_SIDE, ServedRun

router = APIRouter(prefix="/api", tags=["api"])


async def served(request: Request, run: str) -> ServedRun:
    """The run named ``run`` in the URL (``async``: no trip through the thread pool)."""
    runs: dict[str, ServedRun] = request.app.state.runs
    if run not in runs:
        raise NotFound(f"unknown run {echo(run)} (served: {', '.join(runs)})")
    return runs[run]


async def limits(request: Request) -> Limits:
    return request.app.state.limits


Run = Annotated[ServedRun, Depends(served)]
Caps = Annotated[Limits, Depends(limits)]
K = Annotated[int, Query(description="how many answers or neighbours")]
EntityId = Annotated[str, Query(alias="id", description="an entity id, as in the dataset")]


def answer(payload: dict | list) -> JSONResponse:
    """``payload`` (plain dicts, lists, strings and numbers) as JSON, without the walk through
    FastAPI's ``jsonable_encoder``, which costs more than a top-k (docs/serving.md, "Speed")."""
    return JSONResponse(payload)


def query_side(head: str | None, tail: str | None) -> tuple[str, str]:
    """``(side predicted, anchor)`` of a query given, as ``vlkge predict``, by its head or
    tail."""
    if (head is None) == (tail is None):
        raise VlkgeError("give exactly one of head (predict tails) or tail (predict heads)")
    return ("tail", head) if head is not None else ("head", tail)


@router.get("/runs", summary="the runs served")
async def runs(request: Request) -> list[dict]:
    return [run.summary() for run in request.app.state.runs.values()]


@router.get("/runs/{run}", summary="one run: dataset, model, relations, test MRR")
async def run_summary(run: Run) -> dict:
    return run.summary()


@router.get("/runs/{run}/metrics", summary="the run's metrics.json (per split and relation)")
async def metrics(run: Run) -> dict:
    if run.metrics is None:
        raise NotFound(f"run {run.slug} has no metrics.json (its training has not finished)")
    return run.metrics


@router.get("/runs/{run}/search", summary="entities whose id, name or text holds q")
def search(run: Run, caps: Caps, q: str, limit: int = DEFAULT_K) -> JSONResponse:
    return answer(run.search(check_query(q, caps), check_k(limit, caps)))


@router.get("/runs/{run}/entity", summary="an entity: name, texts, images that show, triples")
def entity(run: Run, entity_id: EntityId) -> JSONResponse:
    return answer(
        {
            **run.card(entity_id),
            "texts": run.texts(entity_id),
            "images": run.pictures(entity_id),
            "seen_in_train": bool(run.seen[run.entity_id(entity_id)]),
            "triples": run.triples(entity_id),
        }
    )


@router.get("/runs/{run}/neighbours", summary="nearest entities in the fused space (cosine)")
async def neighbours(run: Run, caps: Caps, entity_id: EntityId, k: K = DEFAULT_K) -> JSONResponse:
    return answer(run.neighbours(entity_id, check_k(k, caps)))


@router.get("/runs/{run}/image", summary="an entity's image file (i: which one)")
def image(run: Run, entity_id: EntityId, i: int = 0) -> FileResponse:
    paths = run.images(entity_id)
    if not 0 <= i < len(paths):
        raise NotFound(f"entity {echo(entity_id)} has no image {i} (it has {len(paths)})")
    kind = media_type(paths[i])
    if kind is None:
        raise NotFound(f"image {i} of {echo(entity_id)} is missing, unreadable or not an image")
    return FileResponse(paths[i], media_type=kind)


@router.get("/runs/{run}/predict", summary="top-k for (head, relation, ?) or (?, relation, tail)")
async def predict(
    run: Run,
    caps: Caps,
    relation: str,
    head: str | None = None,
    tail: str | None = None,
    k: K = DEFAULT_K,
    filtered: Annotated[bool, Query(description="drop triples already known")] = False,
) -> JSONResponse:
    side, anchor = query_side(head, tail)
    return answer(await run.predict_batched(side, anchor, relation, check_k(k, caps), filtered))


@router.post("/runs/{run}/new", summary="top-k and neighbours of a new entity's text/image")
def new_entity(
    run: Run,
    caps: Caps,
    relation: Annotated[str, Form()],
    text: Annotated[str | None, Form()] = None,
    image: Annotated[UploadFile | None, File()] = None,
    direction: Annotated[str, Form(description="tail: (new, relation, ?)")] = DEFAULT_SIDE,
    k: Annotated[int, Form()] = DEFAULT_K,
    name: Annotated[str | None, Form(description="read by the lexical baseline")] = None,
) -> JSONResponse:
    return answer(answer_new_entity(run, caps, relation, text, image, direction, k, name))


def answer_new_entity(
    run: ServedRun,
    caps: Limits,
    relation: str,
    text: str | None,
    image: UploadFile | None,
    direction: str,
    k: int,
    name: str | None = None,
) -> dict:
    """A new-entity request as the API and the page receive it (an empty file input sends a
    part without a file name, an empty name field an empty name: none)."""
    data = image.file.read() if image is not None and image.filename else None
    name = check_text((name or "").strip(), caps)
    with image_file(data, caps) as path:
        text = check_text(text, caps)
        return run.new_entity(text, path, relation, direction, check_k(k, caps), name)
