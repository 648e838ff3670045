"""The app around the routes: the token guard, the headers every response carries, one-line
errors of the command, and the warning when bound beyond this machine."""

from __future__ import annotations

import logging
import socket

import pytest
from fastapi.testclient import TestClient

from vlkge.cli import main
from vlkge.errors import VlkgeError
from vlkge.serving import app as app_mod
from vlkge.serving import create_app, load_served_runs

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def guarded(runs):
    with TestClient(create_app(load_served_runs([runs.structural]), token=TOKEN)) as client:
        yield client


def test_a_token_is_required_everywhere_but_the_static_files(guarded):
    for url in ("/api/runs", "/runs/structural", "/docs", "/api/runs/structural/search?q=a"):
        refused = guarded.get(url)
        assert refused.status_code == 401 and "a valid token is needed" in refused.json()["detail"]
    assert guarded.get("/api/runs", headers={"X-Vlkge-Token": "wrong-token"}).status_code == 401
    assert guarded.get("/api/runs", params={"token": "s3cret-tokeN"}).status_code == 401
    assert guarded.get("/static/vlkge.js").status_code == 200


def test_the_token_in_a_header_a_query_or_the_cookie(guarded):
    assert guarded.get("/api/runs", headers={"X-Vlkge-Token": TOKEN}).status_code == 200
    assert "set-cookie" not in guarded.get("/api/runs", headers={"X-Vlkge-Token": TOKEN}).headers
    page = guarded.get("/runs/structural", params={"token": TOKEN})
    assert page.status_code == 200
    cookie = page.headers["set-cookie"]
    assert cookie.startswith(f"vlkge_token={TOKEN};") and "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert guarded.get("/api/runs").status_code == 200  # the client kept the cookie
    guarded.cookies.clear()
    assert guarded.get("/api/runs").status_code == 401


def test_every_response_says_nosniff_and_no_referrer(client):
    for url in ("/api/runs", "/runs/vl", "/static/vlkge.js", "/api/runs/nope"):
        headers = client.get(url).headers
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"


def test_openapi_documents_the_api(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert {
        "/api/runs",
        "/api/runs/{run}",
        "/api/runs/{run}/metrics",
        "/api/runs/{run}/search",
        "/api/runs/{run}/entity",
        "/api/runs/{run}/neighbours",
        "/api/runs/{run}/image",
        "/api/runs/{run}/predict",
        "/api/runs/{run}/new",
    } == set(paths)
    assert client.get("/docs").status_code == 200


@pytest.mark.parametrize("token", ["short", "has space in it", "semi;colon;token"])
def test_unusable_tokens_are_refused(token):
    with pytest.raises(VlkgeError, match="--token must be"):
        create_app({}, token=token)


def test_serve_errors_are_one_line(runs, tmp_path, capsys):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = str(taken.getsockname()[1])
    cases = [
        (["serve", str(runs.structural), "--port", port], "cannot listen on 127.0.0.1:"),
        (["serve", str(tmp_path), "--port", "0"], "not a run folder"),
        (["serve", str(runs.structural), "--token", "x y"], "--token must be"),
        (["serve", str(runs.structural), "--max-pixels", "0"], "max pixels must be positive"),
    ]
    try:
        for argv, words in cases:
            assert main(argv) == 2
            err = capsys.readouterr().err
            assert err.startswith("vlkge: error: ") and words in err and err.count("\n") == 1
    finally:
        taken.close()


def test_binding_beyond_this_machine_warns(runs, monkeypatch, caplog, capsys):
    started = []
    monkeypatch.setattr(
        app_mod.uvicorn.Server, "run", lambda self, sockets: started.append(sockets)
    )
    with caplog.at_level(logging.WARNING, logger="vlkge.serving.app"):
        app_mod.serve([str(runs.structural)], host="0.0.0.0", port=0)
    assert "anyone who can reach this machine" in caplog.text and "no --token" in caplog.text
    assert len(started) == 1
    for sock in started[0]:
        sock.close()
    assert "1 run(s) at http://0.0.0.0:" in capsys.readouterr().out
    caplog.clear()
    app_mod.serve([str(runs.structural)], port=0)
    assert "anyone" not in caplog.text
    for sock in started[1]:
        sock.close()


def test_the_listening_socket_is_tcp_so_responses_are_not_delayed():
    sock = app_mod.listen("127.0.0.1", 0)
    try:  # asyncio sets TCP_NODELAY on connections of IPPROTO_TCP sockets only
        assert sock.proto == socket.IPPROTO_TCP and sock.getsockname()[1] > 0
    finally:
        sock.close()
