"""demo-cuda built end to end with the real nvcc (CUDA 13.0 here) for sm_120.

One module-scoped wheelhouse: the first build is started twice at once (the concurrency
test), the later tests reuse its entry.  A second arch (9.0) is the kill -9 victim.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import zipfile
from pathlib import Path

import pytest
from build_support import build_args, child_env, entries, finish, start_build

pytestmark = pytest.mark.integration

NVCC = Path("/usr/local/cuda/bin/nvcc")


@pytest.fixture(scope="module")
def house(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two builders of one key started together on an empty wheelhouse, with sccache in its own dir/port."""
    if not NVCC.exists():
        pytest.skip("needs the CUDA toolkit at /usr/local/cuda")
    root = tmp_path_factory.mktemp("house")
    wh, cache = root / "wheelhouse", root / "cache"
    scc = {"dir": str(root / "sccache"), "port": "4391", "idle_timeout": "120"}
    procs = [start_build(root / f"b{i}.log", wh, cache, sccache=scc) for i in range(2)]
    outs = [finish(p, root / f"b{i}.log") for i, p in enumerate(procs)]
    return {"root": root, "wheelhouse": wh, "cache": cache, "sccache": scc, "outs": outs}


def test_concurrent_builds_make_one_build_and_one_wheel(house: dict) -> None:
    outs = house["outs"]
    for rc, text, _ in outs:
        assert rc == 0, text[-3000:]
    results = [r for _, _, rs in outs for r in rs]
    assert sorted(r["noop"] for r in results) == [False, True], results
    assert results[0]["key"] == results[1]["key"] and results[0]["wheel"] == results[1]["wheel"]
    assert len(entries(house["wheelhouse"])) == 1
    assert sum("$ " in t and "pip wheel" in t for _, t, _ in outs) == 1  # only one ran the backend


def test_entry_follows_the_contract(house: dict) -> None:
    (entry,) = entries(house["wheelhouse"])
    manifest = json.loads((entry / "entry.json").read_text())
    wheel = entry / manifest["wheel"]
    assert manifest["wheel"] == "demo_cuda-0.1.0+cu130.sm120-cp311-cp311-linux_x86_64.whl"
    assert manifest["key"] == entry.name and manifest["size"] == wheel.stat().st_size
    assert manifest["target"] == {"archs": ["12.0"], "cuda": "13.0", "python": "cp311", "label": "cu130.sm120"}
    assert manifest["archs_found"] == ["sm_120"]
    assert manifest["verify"] is None
    prov = json.loads((entry / "provenance.json").read_text())
    assert prov["subject"][0]["digest"]["sha256"] == manifest["sha256"]
    assert prov["predicate"]["runDetails"]["metadata"]["invocationId"] == manifest["key"]
    with zipfile.ZipFile(wheel) as zf:
        assert "demo_cuda/libdemo_cuda_kernels.so" in zf.namelist()
        assert b"120-real" in zf.read("demo_cuda/_build_info.py")
    log = (house["wheelhouse"] / "logs" / f"{entry.name}.log").read_text()
    assert "[1/2]" in log and "jobs = min(" in log
    assert not list((house["wheelhouse"] / "scratch").iterdir())


def test_sccache_is_the_launcher_and_reports_hit_rate(house: dict) -> None:
    built = next(t for _, t, rs in house["outs"] if rs and not rs[0]["noop"])
    assert "compiler cache: sccache (" in built
    cache_line = next(r["cache"] for _, _, rs in house["outs"] for r in rs if not r["noop"])
    assert cache_line.startswith("compiler cache: sccache, ") and "hits (" in cache_line
    key = house["outs"][0][2][0]["key"]
    log = (house["wheelhouse"] / "logs" / f"{key}.log").read_text()
    assert "sccache" in log.split("[1/2]", 1)[1].splitlines()[0]  # nvcc ran behind the launcher


def test_noop_rebuild_prints_where_the_wheel_is(house: dict) -> None:
    root = house["root"]
    rc, text, results = finish(start_build(root / "noop.log", house["wheelhouse"], house["cache"], sccache=house["sccache"]), root / "noop.log")
    assert rc == 0 and results[0]["noop"], text
    assert "up to date -> " + results[0]["wheel"] in text
    assert "pip wheel" not in text


def test_kill_9_mid_build_leaves_no_entry_and_rerun_succeeds(house: dict) -> None:
    root, wh = house["root"], house["wheelhouse"]
    log = root / "victim.log"
    proc = start_build(log, wh, house["cache"], arch="9.0", sccache=house["sccache"])
    deadline = time.monotonic() + 600
    while "pip wheel" not in log.read_text() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert proc.poll() is None, log.read_text()[-2000:]
    os.killpg(proc.pid, signal.SIGKILL)  # wheelforge and the backend it started
    proc.wait()
    assert len(entries(wh)) == 1  # only the sm_120 entry
    assert list((wh / "scratch").iterdir())  # the dead attempt's garbage...
    rc, text, results = finish(start_build(root / "rerun.log", wh, house["cache"], arch="9.0", sccache=house["sccache"]), root / "rerun.log")
    assert rc == 0, text[-3000:]
    assert not results[0]["noop"]
    assert not list((wh / "scratch").iterdir())  # ...swept by the next start
    manifest = json.loads((Path(results[0]["wheel"]).parent / "entry.json").read_text())
    assert manifest["archs_found"] == ["sm_90"]
    assert manifest["wheel"].startswith("demo_cuda-0.1.0+cu130.sm90-")
    assert len(entries(wh)) == 2


def test_failed_build_is_recorded_with_repro_and_no_entry(tmp_path: Path) -> None:
    """A configure error: first error lines, log path and a by-hand command; failures/<key>.json; no entry."""
    repo = Path(__file__).resolve().parents[2]
    broken = tmp_path / "recipes"
    broken.mkdir()
    text = (repo / "recipes" / "demo-cuda.toml").read_text()
    # an arch CMake does not know fails the configure step, before any nvcc compile
    text = text.replace("{cmake_cuda_architectures}", "bogus").replace("../examples/demo-cuda", str(repo / "examples" / "demo-cuda"))
    (broken / "demo-cuda.toml").write_text(text)
    env = child_env()
    env["WHEELFORGE_RECIPE_PATH"] = str(broken)
    argv = build_args(tmp_path / "wh", tmp_path / "cache", compiler_cache="none", no_isolation=True)  # configure fails either way
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 3, out[-3000:]
    assert "error[build.failed]" in out and "reproduce by hand" in out and "env -i" in out
    assert "CMAKE_ARGS=-DCMAKE_CUDA_ARCHITECTURES=bogus" in out
    (failure,) = (tmp_path / "wh" / "failures").glob("*.json")
    data = json.loads(failure.read_text())
    assert data["error_id"] == "build.failed" and Path(data["log"]).is_file()
    assert not entries(tmp_path / "wh")
    assert not list((tmp_path / "wh" / "scratch").iterdir())


def test_uv_installer_fills_the_build_venv(tmp_path: Path) -> None:
    """--installer uv: the build venv is made and filled by the real uv; the wheel is the same recipe's."""
    import shutil
    import sys

    if not NVCC.exists() or not shutil.which("uv"):
        pytest.skip("needs the CUDA toolkit at /usr/local/cuda and uv")
    wh = tmp_path / "wheelhouse"
    out = subprocess.run([sys.executable, "-m", "invoke", "build", "demo-cuda", "--cuda", "13.0", "--installer", "uv", "-v",
                          "--compiler-cache", "none", "--no-verify", "--wheelhouse", str(wh)],
                         cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, env=child_env(), timeout=900)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    (entry,) = entries(wh)
    log = (wh / "logs" / f"{entry.name}.log").read_text()
    assert " venv --seed --python " in log and " pip install --python " in log and "-m venv" not in log
    shown = out.stdout + out.stderr  # -v: every command as it runs, and what it printed
    assert "\n$ " in shown and " pip install --python " in shown and "[1/2]" in shown
    manifest = json.loads((entry / "entry.json").read_text())
    assert manifest["archs_found"] == ["sm_120"]
