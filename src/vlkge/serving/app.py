"""The ASGI app of ``vlkge serve``: the JSON API, the pages, the token guard, one-message
errors, and the uvicorn server that binds 127.0.0.1 unless told otherwise (docs/serving.md)."""

from __future__ import annotations

import logging
import re
import secrets
import socket
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vlkge import __version__
from vlkge.errors import VlkgeError, echo
from vlkge.serving import api, pages
from vlkge.serving.inputs import Limits, NotFound, TooLarge
from vlkge.serving.state import ServedRun, load_served_runs

log = logging.getLogger(__name__)

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
TOKEN_HEADER = "X-Vlkge-Token"
TOKEN_QUERY = "token"
TOKEN_COOKIE = "vlkge_token"
TOKEN_CHARS = re.compile(r"[A-Za-z0-9._~-]{8,200}")  # URL- and cookie-safe, not guessable short
STATIC = Path(__file__).parent / "static"


class Guard:
    """Every response gets ``nosniff`` and ``no-referrer``; with a token, every request but
    the static files must carry it (header, ``?token=`` or the cookie a page visit with
    ``?token=`` sets), else 401."""

    def __init__(self, app: ASGIApp, token: str | None):
        self.app, self.token = app, token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        remember = False
        if self.token is not None and not scope["path"].startswith("/static/"):
            request = Request(scope)
            by_query = request.query_params.get(TOKEN_QUERY)
            given = (
                request.headers.get(TOKEN_HEADER) or by_query or request.cookies.get(TOKEN_COOKIE)
            )
            if not given or not secrets.compare_digest(given.encode(), self.token.encode()):
                refused = JSONResponse(
                    {
                        "detail": f"a valid token is needed (header {TOKEN_HEADER}, "
                        f"?{TOKEN_QUERY}=, or the cookie a page visit with ?{TOKEN_QUERY}= sets)"
                    },
                    status_code=401,
                )
                await refused(scope, receive, send)
                return
            remember = by_query is not None

        async def send_guarded(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["X-Content-Type-Options"] = "nosniff"
                headers["Referrer-Policy"] = "no-referrer"  # a ?token= never leaves in a link
                if remember:
                    headers.append(
                        "Set-Cookie",
                        f"{TOKEN_COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/",
                    )
            await send(message)

        await self.app(scope, receive, send_guarded)


def check_token(token: str | None) -> None:
    if token is not None and not TOKEN_CHARS.fullmatch(token):
        raise VlkgeError(
            "--token must be 8 to 200 characters of letters, digits and . _ ~ - "
            f"(it travels in URLs and a cookie), not {echo(token)}"
        )


def _status(exc: VlkgeError) -> int:
    return 404 if isinstance(exc, NotFound) else 413 if isinstance(exc, TooLarge) else 422


def create_app(
    runs: dict[str, ServedRun], token: str | None = None, limits: Limits | None = None
) -> FastAPI:
    """The app over loaded ``runs`` (:func:`load_served_runs`)."""
    limits = limits or Limits()
    check_token(token)
    app = FastAPI(
        title="vlkge serve",
        version=__version__,
        description="Query trained vlkge runs: top-k answers, entities, new entities.",
        max_body_size=limits.max_upload_bytes,
    )
    app.state.runs, app.state.limits = runs, limits
    app.include_router(api.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(Guard, token=token)

    @app.exception_handler(VlkgeError)
    async def user_error(request: Request, exc: VlkgeError):
        return pages.error(request, _status(exc), str(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(
            str(part) for part in first.get("loc", ()) if part not in ("query", "body")
        )
        message = f"{where}: {first.get('msg', 'invalid request')}" if where else "invalid request"
        return pages.error(request, 422, message)

    return app


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (0: any free port), or a one-line error. Its protocol is
    TCP by name: asyncio sets TCP_NODELAY only on such sockets' connections, and without it a
    keep-alive client waits about 40 ms for every response (Nagle against delayed ACKs)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        raise VlkgeError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    return sock


def serve(
    folders: list[str],
    host: str = LOCAL_HOSTS[0],
    port: int = 8000,
    token: str | None = None,
    limits: Limits | None = None,
) -> None:
    """Load every run once and answer requests until Ctrl-C or SIGTERM."""
    if host not in LOCAL_HOSTS:
        log.warning(
            "serving on %s: anyone who can reach this machine on port %d can query the runs%s",
            host,
            port,
            "" if token else " (no --token given)",
        )
    check_token(token)
    sock = listen(host, port)
    app = create_app(load_served_runs(folders), token, limits)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{bound}/" + (f"?{TOKEN_QUERY}={token}" if token else "")
    print(f"vlkge serve: {len(app.state.runs)} run(s) at {url} (Ctrl-C stops)", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    server.run(sockets=[sock])
