"""The one Simple API client reads both page forms (PEP 503 HTML, PEP 691 JSON) from a real server."""

from __future__ import annotations

import http.server
import json
import threading

import pytest

from wheelforge.host.index_client import IndexClient, IndexClientError

pytestmark = pytest.mark.integration

HTML = '<html><body><a href="/files/demo-1.0-py3-none-any.whl#sha256={h}" data-requires-python="&gt;=3.9">demo-1.0-py3-none-any.whl</a>\n</body></html>'
JSON = {"meta": {"api-version": "1.1"}, "name": "x", "versions": ["1"],
        "files": [{"filename": "x-1-py3-none-any.whl", "url": "../../files/x-1-py3-none-any.whl", "hashes": {"sha256": "cd" * 32},
                   "size": 12, "upload-time": "2026-11-30T10:00:00.000000Z"}]}


class _Pages(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if self.path == "/simple/demo/":
            body, ctype = HTML.format(h="ab" * 32).encode(), "text/html"
        elif self.path == "/simple/x/":
            body, ctype = json.dumps(JSON).encode(), "application/vnd.pypi.simple.v1+json"
        elif self.path == "/simple/locked/":
            self.send_response(401)
            self.end_headers()
            return
        else:
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def index_url():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Pages)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/simple/"
    server.shutdown()


def test_html_and_json_pages_give_the_same_fields(index_url):
    client = IndexClient(index_url)
    (html_file,) = client.files("demo")
    assert html_file.filename == "demo-1.0-py3-none-any.whl" and html_file.sha256 == "ab" * 32
    assert html_file.url.endswith("/files/demo-1.0-py3-none-any.whl") and html_file.requires_python == ">=3.9"
    (json_file,) = client.files("X")  # names are normalized before asking
    assert json_file.filename == "x-1-py3-none-any.whl" and json_file.sha256 == "cd" * 32 and json_file.size == 12
    assert json_file.url == index_url.replace("/simple/", "/files/") + "x-1-py3-none-any.whl"


def test_unknown_project_is_none_and_refusals_are_errors(index_url):
    client = IndexClient(index_url)
    assert client.files("nothing-here") is None and client.filenames("nothing-here") == set()
    with pytest.raises(IndexClientError) as err:
        client.files("locked")
    assert err.value.id == "index-client.auth"
