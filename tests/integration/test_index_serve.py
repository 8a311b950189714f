"""The real server over real sockets: negotiation, keep-alive, 404s, traversal, read-only, reload."""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from index_support import WheelSpec, add_entry, make_wheelhouse, running_server  # noqa: E402

from wheelforge.serving.index import SIMPLE_JSON, build_index  # noqa: E402

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    wh = make_wheelhouse(tmp_path_factory.mktemp("serve") / "wh")
    build_index(wh, include_unverified=True)  # the fixture holds failed and unverified entries too
    # A symlink planted in the tree must not be followed.
    os.symlink("/etc/passwd", wh / "index/files/passwd.whl")
    with running_server(wh) as base:
        yield wh, base


def request(base, path, method="GET", headers=None, conn=None):
    u = urlsplit(base)
    c = conn or http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    c.request(method, path, headers=headers or {})
    r = c.getresponse()
    body = r.read()
    return r, body


def test_html_and_json_pages_list_the_same_files(served):
    wh, base = served
    r, body = request(base, "/simple/demo-pkg/")
    assert r.status == 200 and r.getheader("Content-Type").startswith("text/html") and r.getheader("Vary") == "Accept"
    html_files = dict(re.findall(r'href="[^"#]*#sha256=([0-9a-f]{64})"[^>]*>([^<]+)</a>', body.decode()))
    r, body = request(base, "/simple/demo-pkg/", headers={"Accept": f"{SIMPLE_JSON}, text/html;q=0.1"})
    assert r.status == 200 and r.getheader("Content-Type") == SIMPLE_JSON and r.getheader("Vary") == "Accept"
    doc = json.loads(body)
    assert {f["hashes"]["sha256"]: f["filename"] for f in doc["files"]} == html_files and len(html_files) == 2
    r, _ = request(base, "/simple/demo-pkg/", headers={"Accept": "image/png"})
    assert r.status == 406


def test_keep_alive_serves_many_requests_on_one_connection(served):
    _, base = served
    u = urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    conn.connect()
    sock = conn.sock
    for path in ("/simple/", "/simple/demo-pkg/", "/simple/some-name/", "/"):
        r, body = request(base, path, conn=conn)
        assert r.status == 200 and body and r.version == 11
        assert conn.sock is sock  # same TCP connection reused
    conn.close()


def test_unnormalized_name_reaches_the_project(served):
    _, base = served
    r, _ = request(base, "/simple/Some_Name")
    assert r.status == 301 and r.getheader("Location") == "/simple/some-name/"
    r, body = request(base, r.getheader("Location"))
    assert r.status == 200 and b"some_name-2.0.0" in body


def raw_status(base: str, target: str) -> int:
    """Send the request line byte for byte, so no client library normalizes the path."""
    u = urlsplit(base)
    with socket.create_connection((u.hostname, u.port), timeout=10) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: {u.netloc}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1])


@pytest.mark.parametrize(
    "target",
    [
        "/simple/unknown-project/",
        "/simple/Unknown_Project",
        "/files/%2e%2e/entries/",
        "/files/%2e%2e%2fgeneration.json",
        "/simple/%2e%2e/%2e%2e/etc/passwd",
        "/files/..%2f..%2f..%2fetc%2fpasswd",
        "/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/files/passwd.whl",
        "/files/",
        "/logs/",
        "/simple/demo-pkg/index.json",
    ],
)
def test_unknown_traversal_symlink_and_listing_are_404(served, target):
    _, base = served
    assert raw_status(base, target) == 404


def test_read_only_and_head(served):
    _, base = served
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        r, _ = request(base, "/simple/", method=method)
        assert r.status == 405 and r.getheader("Allow") == "GET, HEAD"
    r, body = request(base, "/files/demo_pkg-1.0.0%2Bcu128.sm120-py3-none-any.whl", method="HEAD")
    assert r.status == 200 and body == b"" and int(r.getheader("Content-Length")) > 0
    assert r.getheader("Content-Type") == "application/octet-stream"
    r, body = request(base, "/files/demo_pkg-1.0.0%2Bcu128.sm120-py3-none-any.whl.metadata")
    assert r.status == 200 and body.startswith(b"Metadata-Version:")


def test_regenerated_index_is_picked_up(served):
    wh, base = served
    add_entry(wh, WheelSpec(name="late-comer", version="1.0"))
    build_index(wh, include_unverified=True)  # the fixture holds failed and unverified entries too
    deadline = time.monotonic() + 15
    while request(base, "/simple/late-comer/")[0].status != 200:
        assert time.monotonic() < deadline, "server did not reload the regenerated index"
        time.sleep(0.2)
