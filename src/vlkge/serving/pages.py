"""The pages of ``vlkge serve``: server-rendered, autoescaped Jinja2 templates over the same
loaded runs as the API, with plain forms, so the only script is the search box's
autocomplete (``static/vlkge.js``); nothing is loaded from outside (docs/serving.md)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from vlkge.reports.templating import environment
from vlkge.serving.api import Caps, EntityId, Run, answer_new_entity
from vlkge.serving.inputs import DEFAULT_K, NotFound, check_k
from vlkge.serving.state import DEFAULT_SIDE, ServedRun
from vlkge.terms import SIDES, SPLITS

router = APIRouter(include_in_schema=False)
#: the reports' environment (autoescaped; their base layout) with this package's templates
templates = Jinja2Templates(env=environment(__package__))
#: pages run only the server's own script, take styles only from the page itself (the shared
#: layout inlines them), and are never framed
PAGE_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'unsafe-inline'; script-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
#: the run's report.html: inline styles and data: images, no script
REPORT_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
METRIC_ROWS = ("both", *SIDES)


def render(request: Request, name: str, title: str, code: int = 200, **context) -> Response:
    """The page ``name`` (a template here) titled ``title``."""
    response = templates.TemplateResponse(
        request,
        name,
        {"runs": request.app.state.runs, "run": None, "title": f"{title} · vlkge serve", **context},
        status_code=code,
    )
    response.headers["Content-Security-Policy"] = PAGE_POLICY
    return response


def error(request: Request, status: int, message: str) -> Response:
    """One message: JSON under ``/api`` (and for clients that do not ask for HTML), else a
    page."""
    wants_page = "text/html" in request.headers.get("accept", "")
    if request.url.path.startswith("/api/") or not wants_page:
        return JSONResponse({"detail": message}, status_code=status)
    return render(request, "error.html.j2", str(status), status, status=status, message=message)


def about(run: ServedRun) -> dict:
    """What every page of a run shows: its header, its summary, the forms' default k."""
    return {"run": run, "summary": run.summary(), "default_k": DEFAULT_K}


def metric_tables(run: ServedRun) -> list[dict]:
    """Per evaluated split: the both/head/tail rows and the per-relation rows (most queries
    first)."""
    metrics = run.metrics or {}
    tables = []
    for split in SPLITS:
        block = metrics.get(split)
        if not isinstance(block, dict):
            continue
        relations = sorted(
            block.get("per_relation", {}).items(), key=lambda item: -item[1]["count"]
        )
        rows = [(key, block[key]) for key in METRIC_ROWS if key in block]
        tables.append({"split": split, "rows": rows, "relations": relations})
    return tables


@router.get("/")
def home(request: Request) -> Response:
    runs = request.app.state.runs
    if len(runs) == 1:
        return RedirectResponse(f"/runs/{next(iter(runs))}", status_code=303)
    return render(
        request, "runs.html.j2", "runs", summaries=[run.summary() for run in runs.values()]
    )


@router.get("/runs/{run}")
def run_page(request: Request, run: Run) -> Response:
    return render(
        request,
        "run.html.j2",
        run.slug,
        **about(run),
        tables=metric_tables(run),
        anchor="",
    )


@router.get("/runs/{run}/entity")
def entity_page(request: Request, run: Run, entity_id: EntityId) -> Response:
    return render(
        request,
        "entity.html.j2",
        f"{run.kg.display_name(run.entity_id(entity_id))} · {run.slug}",
        **about(run),
        card=run.card(entity_id),
        texts=run.texts(entity_id),
        pictures=run.pictures(entity_id),
        seen=bool(run.seen[run.entity_id(entity_id)]),
        triples=run.triples(entity_id),
        neighbours=run.neighbours(entity_id, DEFAULT_K),
        anchor=entity_id,
    )


@router.get("/runs/{run}/query")
def query_page(
    request: Request,
    run: Run,
    caps: Caps,
    anchor: str,
    relation: str,
    side: str = DEFAULT_SIDE,
    k: int = DEFAULT_K,
    filtered: bool = False,
) -> Response:
    result = run.predict(side, anchor, relation, check_k(k, caps), filtered)
    return render(
        request,
        "query.html.j2",
        f"query · {run.slug}",
        **about(run),
        result=result,
        k=k,
        filtered=filtered,
        anchor=anchor,
    )


@router.post("/runs/{run}/new")
def new_entity_page(
    request: Request,
    run: Run,
    caps: Caps,
    relation: Annotated[str, Form()],
    text: Annotated[str | None, Form()] = None,
    image: Annotated[UploadFile | None, File()] = None,
    direction: Annotated[str, Form()] = DEFAULT_SIDE,
    k: Annotated[int, Form()] = DEFAULT_K,
    name: Annotated[str | None, Form()] = None,
) -> Response:
    result = answer_new_entity(run, caps, relation, text, image, direction, k, name)
    return render(
        request,
        "new.html.j2",
        f"new entity · {run.slug}",
        **about(run),
        result=result,
        text=text or "",
        new_name=(name or "").strip(),
        image=image.filename if image is not None and image.filename else "",
    )


@router.get("/favicon.ico")
def favicon() -> Response:
    return Response(status_code=204)  # no icon, and no 404 in a browser's console


@router.get("/runs/{run}/report.html")
def report(run: Run) -> Response:
    path = run.report()
    if path is None:
        raise NotFound(f"run {run.slug} has no report.html (`vlkge report` writes one)")
    return FileResponse(
        path, media_type="text/html", headers={"Content-Security-Policy": REPORT_POLICY}
    )
