"""Reading a release's Requires-Dist without downloading it: real PyPI, and a local server for the range reader."""

from __future__ import annotations

import http.server
import io
import threading
import zipfile
from pathlib import Path

import pytest
import requests

from wheelforge.build.deps import cuda_from_requires_dist, resolve_pin
from wheelforge.host.index_client import RangeFile, requires_dist
from wheelforge.model.errors import PlanError

pytestmark = pytest.mark.integration


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves byte ranges (the standard library's handler does not)."""

    ranges_served: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        rng = self.headers.get("Range")
        path = Path(self.translate_path(self.path))
        if not rng or not path.is_file():
            return super().do_GET()
        data = path.read_bytes()
        lo, hi = (int(x) for x in rng.removeprefix("bytes=").split("-"))
        body = data[lo:hi + 1]
        self.ranges_served.append(rng)
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {lo}-{lo + len(body) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def range_server(tmp_path):
    handler = lambda *a, **kw: _RangeHandler(*a, directory=str(tmp_path), **kw)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", tmp_path
    server.shutdown()


def test_range_file_reads_one_member_of_a_large_zip_in_a_few_requests(range_server):
    base, root = range_server
    wheel = root / "big-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("big/payload.bin", bytes(range(256)) * 32768)  # 8 MiB the reader must not fetch
        zf.writestr("big-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: big\nVersion: 1.0\nRequires-Dist: cuda-toolkit==12.8.1\n")
    _RangeHandler.ranges_served.clear()
    remote = RangeFile(requests.Session(), f"{base}/{wheel.name}", wheel.stat().st_size)
    with zipfile.ZipFile(io.BufferedReader(remote)) as zf:
        text = zf.read("big-1.0.dist-info/METADATA").decode()
    assert "Requires-Dist: cuda-toolkit==12.8.1" in text
    fetched = sum(len(b) for b in remote.blocks.values())
    assert remote.requests == len(_RangeHandler.ranges_served) <= 3 and fetched < wheel.stat().st_size / 10


def test_range_file_refuses_a_server_without_ranges(tmp_path):
    (tmp_path / "f.bin").write_bytes(b"x" * 1000)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a, **kw: http.server.SimpleHTTPRequestHandler(
        *a, directory=str(tmp_path), **kw))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        remote = RangeFile(requests.Session(), f"http://127.0.0.1:{server.server_address[1]}/f.bin", 1000)
        with pytest.raises(OSError, match="byte ranges"):
            remote.read(10)
    finally:
        server.shutdown()


def test_pypi_torch_releases_name_their_cuda():
    """Real PyPI: 2.11.0 is a CUDA 13.0 build, 2.15.0 a CUDA 13.2 build (from their Linux wheels' pins)."""
    lines: list[str] = []
    assert cuda_from_requires_dist(requires_dist("torch", "2.11.0", echo=lines.append)) == "13.0"
    assert cuda_from_requires_dist(requires_dist("torch", "2.15.0", echo=lines.append)) == "13.2"
    assert any("linux" in ln and "x86_64" in ln for ln in lines if "files.pythonhosted.org" in ln), lines


def test_pin_of_a_release_that_does_not_exist_names_it():
    with pytest.raises(PlanError) as err:
        resolve_pin("torch==2.99.0")
    assert err.value.id == "plan.with-unknown" and "torch 2.99.0" in err.value.message
