"""Two runners build demo-cuda through `invoke build`, sharing compiled objects only through Redis.

The sccache backend comes from wheelforge's own config (`[tool.wheelforge.sccache]` in the runner's
pyproject), as a farm runner would set it; each runner has its own sccache dir, server port and
wheelhouse, built at the same absolute path (identically provisioned runners).
"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.figures.farm import RedisServer, free_port

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
HITS = re.compile(r"compiler cache: sccache, (\d+)/(\d+) hits")
COMPILE = re.compile(r"built .* in [\d.]+ s \(compile ([\d.]+) s\)")


def _runner(ws: Path, redis_url: str, name: str) -> dict:
    ws.mkdir(parents=True)
    port = free_port()
    (ws / "pyproject.toml").write_text(
        f'[tool.wheelforge.sccache]\nredis = "{redis_url}"\ndir = "{ws.parent / ("sccache-" + name)}"\nport = "{port}"\n')
    cmd = [sys.executable, "-m", "invoke", "-r", str(REPO), "build", "demo-cuda", "--cuda", "auto",
           "--wheelhouse", str(ws / "wheelhouse"), "--no-verify", "--compiler-cache", "sccache",
           "--no-isolation"]  # the shared objects are the subject, not the build venv: skip filling one per runner
    out = subprocess.run(cmd, cwd=ws, capture_output=True, text=True, timeout=600)
    subprocess.run([shutil.which("sccache"), "--stop-server"], env={"SCCACHE_SERVER_PORT": str(port), "PATH": "/usr/bin:/bin"},
                   capture_output=True, check=False)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    hits, total = map(int, HITS.search(text).groups())
    return {"hits": hits, "total": total, "compile": float(COMPILE.search(text).group(1))}


def test_second_runner_reuses_the_first_runners_objects_through_wheelforge_config(tmp_path):
    if shutil.which("redis-server") is None or shutil.which("sccache") is None:
        pytest.fail("redis-server and sccache are needed: bash scripts/bootstrap.sh --test")
    server = RedisServer(tmp_path / "redis").start()
    try:
        ws = tmp_path / "workspace"
        first = _runner(ws, server.url, "a")
        ws.rename(tmp_path / "workspace-a")  # runner A's tree is gone; B starts at the same path with nothing local
        second = _runner(ws, server.url, "b")
    finally:
        server.stop()
    print(f"runner A {first}, runner B {second}")
    assert first["hits"] == 0 and first["total"] > 0
    assert second["total"] == first["total"]
    assert second["hits"] / second["total"] >= 0.90, second
    assert second["compile"] < first["compile"], (first, second)
