"""The page for people in headless Chromium (Debian's): rows render, JS runs without console errors, phone width."""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from index_support import child_env, make_wheelhouse, running_server  # noqa: E402

from wheelforge.serving.index import build_index  # noqa: E402

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--window-size=390,844"]


def chromium(tmp_path: Path, name: str, *args: str) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / ('profile-' + name)}", *args]
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, env=child_env(), capture_output=True, text=True, timeout=120)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install -y chromium); CI installs it")
def test_page_renders_rows_without_console_errors(tmp_path):
    wh = make_wheelhouse(tmp_path / "wh")
    build_index(wh, include_unverified=True)  # the fixture holds failed and unverified entries too
    with running_server(wh) as base:
        shot = tmp_path / "page.png"
        r = chromium(tmp_path, "shot", "--enable-logging=stderr", "--v=0", f"--screenshot={shot}", base + "/")
        dom = chromium(tmp_path, "dom", "--enable-logging=stderr", "--v=0", "--dump-dom", base + "/?q=demo")
    assert shot.is_file(), r.stderr[-2000:]
    assert png_size(shot) == (390, 844)
    assert shot.stat().st_size > 10_000  # a blank page compresses to a few hundred bytes
    # Every console message (errors, uncaught exceptions) is logged as INFO:CONSOLE; the page logs nothing.
    console = [line for line in (r.stderr + dom.stderr).splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    assert console == []
    html = dom.stdout
    assert 'data-ready="1"' in html  # page.js ran to its end
    rows = [line for line in html.split("<tr") if 'data-label="Project"' in line]
    assert len(rows) == 3
    # ?q=demo filtered the table: two demo-pkg rows shown, some-name hidden.
    assert sum(" hidden" in r.split(">", 1)[0] for r in rows) == 1
    assert '<span id="count">2</span>' in html
