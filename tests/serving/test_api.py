"""The JSON API through the ASGI test client: every endpoint, the bad inputs a user or a
stranger sends (each one status and one message), and the same answers as the CLI."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import pytest

from serving.conftest import png
from vlkge.cli import main


def cli_json(capsys, *argv) -> list[dict]:
    capsys.readouterr()
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` pixels and holds none: a bomb's header."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        body = tag + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def one_message(response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["detail"] and isinstance(body["detail"], str)
    assert "\n" not in body["detail"]
    return body["detail"]


# --- runs, metrics, search, entities --------------------------------------------------------
def test_runs_and_their_summaries(client):
    runs = client.get("/api/runs").json()
    assert [r["run"] for r in runs] == ["vl", "structural"]
    vl = client.get("/api/runs/vl").json()
    assert vl == runs[0]
    assert vl["modalities"] == ["image", "text"] and vl["report"] is True
    assert vl["blends"] == []  # ranked with the model alone, as it was evaluated
    assert vl["relations"] == ["movement", "influenced", "born_in"]
    assert vl["triples"] == {"train": 11, "valid": 2, "test": 2}
    assert runs[1]["modalities"] == [] and runs[1]["report"] is False
    assert "served: vl, structural" in one_message(client.get("/api/runs/nope"), 404)


def test_metrics_per_relation(client, runs):
    metrics = client.get("/api/runs/vl/metrics").json()
    saved = json.loads((runs.multimodal / "metrics.json").read_text())
    assert metrics == saved
    assert set(metrics["test"]["per_relation"]) == {"movement", "influenced"}


def test_search_ids_names_and_texts(client):
    hits = client.get("/api/runs/vl/search", params={"q": "MON"}).json()
    assert hits[0]["entity"] == "monet" and hits[0]["name"] == "Claude Monet"
    assert client.get("/api/runs/vl/search", params={"q": "cubism"}).json()[0]["entity"] == (
        "cubism"
    )  # the exact name before the texts that mention it
    by_text = client.get("/api/runs/vl/search", params={"q": "history of", "limit": 3}).json()
    assert len(by_text) == 3
    assert client.get("/api/runs/vl/search", params={"q": "   "}).json() == []
    assert client.get("/api/runs/vl/search", params={"q": "zzzz"}).json() == []
    assert "more than 200" in one_message(
        client.get("/api/runs/vl/search", params={"q": "x" * 201}), 413
    )
    assert "k must be between" in one_message(
        client.get("/api/runs/vl/search", params={"q": "a", "limit": 0}), 422
    )


def test_entity_modalities_and_triples(client):
    monet = client.get("/api/runs/vl/entity", params={"id": "monet"}).json()
    assert monet["name"] == "Claude Monet" and monet["images"] == [0]
    assert monet["thumbnail"] == 0
    assert monet["texts"] == ["Claude Monet is part of the history of painting"]
    assert monet["seen_in_train"] is True
    as_head = monet["triples"]["train"]["head"]
    assert as_head["count"] == 3
    assert {(t["relation"], t["tail"]) for t in as_head["triples"]} == {
        ("movement", "impressionism"),
        ("influenced", "cezanne"),
        ("born_in", "paris"),
    }
    assert monet["triples"]["train"]["tail"]["count"] == 0
    message = one_message(client.get("/api/runs/vl/entity", params={"id": "nobody"}), 404)
    assert message == "unknown entity 'nobody' in run vl"
    assert "id: Field required" in one_message(client.get("/api/runs/vl/entity"), 422)


def test_neighbours_equal_the_cli(client, runs, capsys):
    found = client.get("/api/runs/vl/neighbours", params={"id": "monet", "k": 4}).json()
    expected = cli_json(capsys, "neighbours", str(runs.multimodal), "monet", "--top-k", "4")
    assert [n["entity"] for n in found] == [n["entity"] for n in expected]
    assert [n["similarity"] for n in found] == pytest.approx([n["similarity"] for n in expected])
    assert "monet" not in [n["entity"] for n in found]
    one_message(client.get("/api/runs/vl/neighbours", params={"id": "nobody"}), 404)


def test_only_images_that_show_are_offered(client):
    degas = client.get("/api/runs/vl/entity", params={"id": "degas"}).json()
    assert (degas["images"], degas["thumbnail"]) == ([], None)  # its one image is corrupt


def test_images(client):
    image = client.get("/api/runs/vl/image", params={"id": "monet"})
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert image.headers["x-content-type-options"] == "nosniff"
    assert image.content.startswith(b"\x89PNG")
    for entity, i in (("degas", 0), ("cezanne", 0), ("monet", 1), ("paris", 0)):
        one_message(client.get("/api/runs/vl/image", params={"id": entity, "i": i}), 404)


# --- queries ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "given, flags",
    [
        ({"head": "monet", "relation": "movement"}, ["--head", "monet", "--relation", "movement"]),
        (
            {"tail": "picasso", "relation": "influenced"},
            ["--tail", "picasso", "--relation", "influenced"],
        ),
        (
            {"head": "cezanne", "relation": "influenced", "filtered": "true"},
            ["--head", "cezanne", "--relation", "influenced", "--exclude-known"],
        ),
    ],
)
def test_top_k_equals_vlkge_predict(client, runs, capsys, given, flags):
    result = client.get("/api/runs/vl/predict", params={**given, "k": 5}).json()
    expected = cli_json(capsys, "predict", str(runs.multimodal), *flags, "--top-k", "5")
    got = result["answers"]
    assert [(a["rank"], a["entity"], a["known"]) for a in got] == [
        (a["rank"], a["entity"], a["known"]) for a in expected
    ]
    assert [a["score"] for a in got] == pytest.approx([a["score"] for a in expected])
    assert all({"name", "text", "thumbnail"} <= set(a) for a in got)


def test_true_answers_of_a_query_from_a_split(client):
    result = client.get(
        "/api/runs/vl/predict", params={"head": "braque", "relation": "movement", "k": 11}
    ).json()
    (answer,) = result["true_answers"]
    assert (answer["entity"], answer["split"]) == ("cubism", "test")
    assert answer["rank_filtered"] <= answer["rank_raw"]
    ranked = {a["entity"]: a for a in result["answers"]}
    assert ranked["cubism"]["split"] == "test" and ranked["cubism"]["known"] is True
    assert ranked["cubism"]["rank"] == answer["rank_raw"]  # no ties among 11 float scores


@pytest.mark.parametrize(
    "params, status, words",
    [
        ({"relation": "movement"}, 422, "exactly one of head"),
        ({"head": "monet", "tail": "paris", "relation": "movement"}, 422, "exactly one of head"),
        ({"head": "nobody", "relation": "movement"}, 404, "unknown entity 'nobody'"),
        ({"head": "monet", "relation": "painted"}, 404, "unknown relation 'painted'"),
        ({"head": "monet", "relation": "movement", "k": 0}, 422, "k must be between 1 and"),
        ({"head": "monet", "relation": "movement", "k": "ten"}, 422, "k: Input should be"),
        ({"head": "monet"}, 422, "relation: Field required"),
    ],
)
def test_bad_queries(client, params, status, words):
    assert words in one_message(client.get("/api/runs/vl/predict", params=params), status)


# --- new entities -------------------------------------------------------------------------------
def test_new_text_equals_vlkge_predict(client, runs, capsys):
    text = "a painter of water lilies near Paris"
    form = {"text": text, "relation": "movement", "k": "5"}
    result = client.post("/api/runs/vl/new", data=form).json()
    expected = cli_json(
        capsys,
        "predict",
        str(runs.multimodal),
        "--new-text",
        text,
        "--relation",
        "movement",
        "--top-k",
        "5",
    )
    assert [a["entity"] for a in result["answers"]] == [a["entity"] for a in expected]
    assert [a["score"] for a in result["answers"]] == pytest.approx([a["score"] for a in expected])
    assert len(result["neighbours"]) == 5
    assert result["query"] == {"direction": "tail", "relation": "movement"}


def test_new_image_and_text_equal_vlkge_predict(client, runs, capsys, tmp_path):
    picture = tmp_path / "new.png"
    picture.write_bytes(png((90, 140, 220)))
    result = client.post(
        "/api/runs/vl/new",
        data={"text": "water lilies", "relation": "influenced", "direction": "head", "k": "4"},
        files={"image": ("new.png", picture.read_bytes(), "image/png")},
    ).json()
    expected = cli_json(
        capsys,
        "predict",
        str(runs.multimodal),
        "--new-text",
        "water lilies",
        "--new-image",
        str(picture),
        "--relation",
        "influenced",
        "--direction",
        "head",
        "--top-k",
        "4",
    )
    assert [a["entity"] for a in result["answers"]] == [a["entity"] for a in expected]
    assert [a["score"] for a in result["answers"]] == pytest.approx([a["score"] for a in expected])
    image_only = client.post(
        "/api/runs/vl/new",
        data={"relation": "influenced"},
        files={"image": ("new.png", picture.read_bytes(), "image/png")},
    )
    assert image_only.status_code == 200 and len(image_only.json()["answers"]) == 10


def test_a_new_entity_is_ranked_by_the_runs_stages_as_vlkge_predict_ranks_it(
    runs, capsys, tmp_path
):
    """A run recording a structural partner, the prompt and the lexical baselines: a new
    entity is ranked by the model and both baselines (reading its name), the partner left out
    and named, as ``vlkge predict --new-text --new-name`` ranks it; the page says so."""
    import shutil

    from fastapi.testclient import TestClient

    from serving.test_state import snapshot
    from vlkge.config import dump, load_config
    from vlkge.serving import create_app, load_served_runs

    folder = shutil.copytree(runs.multimodal, tmp_path / "staged")
    cfg = load_config(folder / "config.yaml", overrides=[f"encoder.name={runs.clip}"])
    cfg["zero_shot"]["templates"] = {"movement": "a painter of {}", "influenced": "a pupil of {}"}
    (folder / "config.yaml").write_text(dump(cfg))
    metrics = json.loads((folder / "metrics.json").read_text())
    weights = {"split": "valid", "weights": {"tail": {"movement": 1.0, "influenced": 2.0}}}
    metrics |= {key: weights for key in ("zero_shot_blend", "lexical_blend")}
    metrics["run_blend"] = {**weights, "run": str(runs.structural)}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    text, name = "a painter of Paris, a friend of Claude Monet", "Berthe Morisot"
    form = {"text": text, "name": name, "relation": "influenced", "k": "5"}
    cache = Path(cfg["features"]["cache_dir"])
    with TestClient(create_app(load_served_runs([folder]))) as client:
        loaded = snapshot(cache)  # the prompts of every relation's template encoded: at start
        result = client.post("/api/runs/staged/new", data=form).json()
        page = client.post("/runs/staged/new", data=form, headers={"accept": "text/html"}).text
        for relation in ("movement", "influenced", "born_in"):
            client.get("/api/runs/staged/predict", params={"head": "monet", "relation": relation})
        assert snapshot(cache) == loaded  # requests read them, on any thread
    assert result["blends"] == ["zero_shot_blend", "lexical_blend"]
    assert result["left_out"] == {"run_blend": "its model is structural"}
    argv = ["predict", str(folder), "--new-text", text, "--new-name", name]
    expected = cli_json(capsys, *argv, "--relation", "influenced", "--top-k", "5")
    assert [a["entity"] for a in result["answers"]] == [a["entity"] for a in expected]
    assert [a["score"] for a in result["answers"]] == pytest.approx([a["score"] for a in expected])
    alone = cli_json(capsys, *argv, "--relation", "influenced", "--top-k", "5", "--model-only")
    assert [a["score"] for a in alone] != pytest.approx([a["score"] for a in expected])
    assert "ranked by the model + zero_shot_blend + lexical_blend; left out: run_blend" in page


@pytest.mark.parametrize(
    "form, files, status, words",
    [
        ({"relation": "movement"}, None, 422, "needs a text"),
        ({"relation": "movement", "text": " \n "}, None, 422, "the text is blank"),
        ({"relation": "movement", "text": "x" * 1_000_000}, None, 413, "more than 10,000"),
        ({"relation": "painted", "text": "a painter"}, None, 404, "unknown relation"),
        ({"relation": "movement", "text": "a", "direction": "up"}, None, 422, "head or tail"),
        ({"relation": "movement", "text": "a", "k": "-1"}, None, 422, "k must be between"),
        ({"text": "a painter"}, None, 422, "relation: Field required"),
        (
            {"relation": "movement"},
            {"image": ("x.jpg", b"\xff\xd8\xffnot a jpeg", "image/jpeg")},
            422,
            "not an image",
        ),
        ({"relation": "movement"}, {"image": ("x.png", png()[:60], "image/png")}, 422, "corrupt"),
        (
            {"relation": "movement"},
            {"image": ("x.png", png_header(6_000, 6_000), "image/png")},
            413,
            "6000 x 6000 pixels",
        ),
        (
            {"relation": "movement"},
            {"image": ("x.png", png_header(60_000, 60_000), "image/png")},
            413,
            "more pixels than PIL",
        ),
        ({"relation": "movement"}, {"image": ("x.png", b"", "image/png")}, 422, "empty"),
    ],
)
def test_bad_new_entities(client, form, files, status, words):
    response = client.post("/api/runs/vl/new", data=form, files=files)
    assert words in one_message(response, status)


def test_a_structural_run_refuses_new_entities(client):
    response = client.post("/api/runs/structural/new", data={"text": "a", "relation": "movement"})
    assert "structural model" in one_message(response, 422)


def test_an_oversized_body_is_refused(runs):
    from fastapi.testclient import TestClient

    from vlkge.serving import Limits, create_app, load_served_runs

    app = create_app(load_served_runs([runs.multimodal]), limits=Limits(max_upload_bytes=4096))
    with TestClient(app) as small:
        big = png((1, 2, 3), size=(300, 300)) + b"\0" * 8192
        response = small.post(
            "/api/runs/vl/new",
            data={"relation": "movement"},
            files={"image": ("big.png", big, "image/png")},
        )
    assert response.status_code == 413
