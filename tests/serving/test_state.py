"""A served run: loaded once, then only read: the run folder is never written, and requests
on many threads get what one thread gets."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from fastapi.testclient import TestClient

from serving.conftest import png
from vlkge.serving import create_app, load_served_runs


def snapshot(folder):
    return {
        path: (stat.st_size, stat.st_mtime_ns)
        for path in folder.rglob("*")
        for stat in [path.stat()]
    }


def same(a, b, tolerance: float = 1e-5) -> bool:
    """``a == b``, floats within ``tolerance``: new entities of concurrent requests are encoded
    in one batch, whose products round differently from one at a time."""
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= tolerance * max(1.0, abs(a))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k], tolerance) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y, tolerance) for x, y in zip(a, b, strict=True))
    return a == b


def requests(client, i: int) -> list:
    """A mix of every kind of request, varied by ``i``."""
    entity = ["monet", "picasso", "cezanne", "degas"][i % 4]
    relation = ["movement", "influenced", "born_in"][i % 3]
    return [
        client.get("/api/runs/vl/predict", params={"head": entity, "relation": relation}).json(),
        client.get("/api/runs/vl/predict", params={"tail": entity, "relation": relation}).json(),
        client.get("/api/runs/vl/neighbours", params={"id": entity}).json(),
        client.get("/api/runs/vl/search", params={"q": entity[:3]}).json(),
        client.get("/api/runs/vl/entity", params={"id": entity}).json(),
        client.post(
            "/api/runs/vl/new",
            data={"text": f"painter number {i}", "relation": relation},
            files={"image": ("p.png", png((i * 20 % 256, 90, 40)), "image/png")},
        ).json(),
    ]


def test_concurrent_requests_match_sequential_ones_and_write_nothing(runs):
    before = snapshot(runs.multimodal)
    app = create_app(load_served_runs([runs.multimodal]))
    with TestClient(app) as client:
        sequential = [requests(client, i) for i in range(8)]
        with ThreadPoolExecutor(8) as pool:
            concurrent = list(pool.map(lambda i: requests(client, i), range(8)))
    assert same(concurrent, sequential)
    assert not same(concurrent, sequential[::-1])  # the comparison can fail
    assert snapshot(runs.multimodal) == before


def test_the_encoder_loads_on_the_first_new_entity(runs):
    (run,) = load_served_runs([runs.multimodal]).values()
    assert run.encoders.built == {}  # nothing loaded for runs that are only queried
    run.new_entity("a painter", None, "movement", "tail", 3)
    (encoder,) = run.encoders.built.values()
    run.new_entity("another painter", None, "movement", "head", 3)
    assert list(run.encoders.built.values()) == [encoder]  # loaded once


def test_queries_read_in_one_turn_share_one_product_and_answer_as_alone(runs, monkeypatch):
    import asyncio

    (run,) = load_served_runs([runs.multimodal]).values()
    queries = [
        (side, entity, relation)
        for side in ("tail", "head")
        for entity in ("monet", "picasso", "degas")
        for relation in ("movement", "influenced")
    ]
    alone = [run.predict(*query, 5, False) for query in queries]
    products = []
    score_against = run.model.score_against
    monkeypatch.setattr(
        run.model,
        "score_against",
        lambda side, anchors, *a, **kw: (
            products.append(len(anchors)) or score_against(side, anchors, *a, **kw)
        ),
    )

    async def together():
        return await asyncio.gather(*(run.predict_batched(*query, 5, False) for query in queries))

    assert same(asyncio.run(together()), alone)
    assert products == [6, 6]  # one product per side for all twelve queries
