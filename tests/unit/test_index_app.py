"""The serve app called in-process through ASGI: negotiation, normalization, 404s, read-only."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from index_support import make_wheelhouse  # noqa: E402

from wheelforge.serving.index import SIMPLE_HTML, SIMPLE_JSON  # noqa: E402
from wheelforge.serving.index import build_index as serve_verified_only


def build_index(wheelhouse, **kw):
    """The fixture wheelhouse holds a verified, a failed and an unverified entry; these tests check how each is
    rendered, so they index all three (the default serves verified wheels only: test_index_gating.py)."""
    return serve_verified_only(wheelhouse, include_unverified=True, **kw)
from wheelforge.serving.server import App, negotiate  # noqa: E402


@pytest.mark.parametrize(
    "accept, expected",
    [
        (None, "text/html; charset=utf-8"),
        ("*/*", "text/html; charset=utf-8"),
        (SIMPLE_JSON, SIMPLE_JSON),
        (f"{SIMPLE_JSON}, {SIMPLE_HTML};q=0.2, text/html;q=0.01", SIMPLE_JSON),  # pip's header
        (f"{SIMPLE_JSON};q=0.5, text/html", "text/html; charset=utf-8"),
        (f"{SIMPLE_HTML}, {SIMPLE_JSON}", SIMPLE_HTML),  # tie: HTML
        ("application/vnd.pypi.simple.latest+json", SIMPLE_JSON),
        ("image/png", None),
        (f"{SIMPLE_JSON};q=0, image/png", None),
    ],
)
def test_negotiate(accept, expected):
    assert negotiate(accept) == expected


def call(app, path, method="GET", headers=()):
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(msg):
        sent.append(msg)

    scope = {"type": "http", "method": method, "path": path, "headers": [(k.encode(), v.encode()) for k, v in headers]}
    asyncio.run(app(scope, receive, send))
    start = sent[0]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], {k.decode().lower(): v.decode() for k, v in start["headers"]}, body


@pytest.fixture
def app(tmp_path):
    wh = make_wheelhouse(tmp_path / "wh")
    build_index(wh)
    os.symlink("/etc/passwd", wh / "index/files/passwd.whl")
    return App(wh / "index")


def test_pages_are_negotiated_with_vary(app):
    status, h, body = call(app, "/simple/demo-pkg/")
    assert status == 200 and h["content-type"].startswith("text/html") and h["vary"] == "Accept"
    status, h, body = call(app, "/simple/demo-pkg/", headers=[("accept", SIMPLE_JSON)])
    assert h["content-type"] == SIMPLE_JSON and json.loads(body)["name"] == "demo-pkg"
    assert call(app, "/simple/demo-pkg/", headers=[("accept", "image/png")])[0] == 406


def test_non_normalized_names_redirect_and_unknown_are_404(app):
    for path in ("/simple/Some_Name", "/simple/Some_Name/", "/simple/SOME.name/", "/simple/some-name"):
        status, h, _ = call(app, path)
        assert (status, h.get("location")) == (301, "/simple/some-name/"), path
    for path in ("/simple/nope/", "/simple/Nope", "/simple/demo-pkg/index.json", "/files/", "/files", "/simple/demo-pkg/x/"):
        assert call(app, path)[0] == 404, path


def test_traversal_symlinks_and_writes_are_refused(app):
    # The server hands us the path decoded once; %2e%2e arrives as "..".
    for path in ("/files/../generation.json", "/simple/../files/", "/../../etc/passwd", "/files/passwd.whl", "/files/..%2f..%2fentries", "/files\\..\\x"):
        assert call(app, path)[0] == 404, path
    for method in ("POST", "PUT", "DELETE"):
        status, h, _ = call(app, "/simple/", method=method)
        assert status == 405 and h["allow"] == "GET, HEAD"


def test_files_and_head(app):
    name = "demo_pkg-1.0.0+cu128.sm120-py3-none-any.whl"
    status, h, body = call(app, f"/files/{name}")
    assert status == 200 and h["content-type"] == "application/octet-stream" and int(h["content-length"]) == len(body) > 0
    status, h, body = call(app, f"/files/{name}", method="HEAD")
    assert status == 200 and body == b"" and int(h["content-length"]) > 0
    status, h, body = call(app, "/")
    assert status == 200 and b"<table" in body
