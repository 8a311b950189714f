"""PEP 825 variants end to end: demo-cuda built by nvcc for 9.0 and 12.0, indexed with --variants,
served, and installed by real uv (preview feature on and off) and pip into fresh venvs.

The GPU uv sees is set with the overrides of NVIDIA's provider, which uv's built-in copy reads:
NV_VARIANT_PROVIDER_FORCE_SM_ARCH and NV_VARIANT_PROVIDER_FORCE_CUDA_DRIVER_VERSION
(wheelnext/nvidia-variant-provider README, "DEBUG - Overwrite Detection").  What got installed is
read from the venv: the version, the dist-info's variant.json, and a static audit of the installed
library (the bytes, not only the label).
"""

from __future__ import annotations

import contextlib
import json
import shlex
import subprocess
import sys
import venv
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from docs_support import docs_snippet  # noqa: E402
from index_support import child_env, free_port, running_server, wait_http  # noqa: E402

from wheelforge.binaries.audit import audit_path  # noqa: E402
from wheelforge.serving.index import build_index  # noqa: E402

pytestmark = pytest.mark.integration

NVCC = Path("/usr/local/cuda/bin/nvcc")
PLAIN = "0.1.0+cu130.sm90"  # the highest plain version: what pip picks, and uv when no variant fits
TWIN = "0.1.0+variants"
DRIVER = "13.0"


def run(cmd, env, **kw) -> subprocess.CompletedProcess:
    print("+", " ".join(map(str, cmd)), flush=True)
    return subprocess.run([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, **kw)


@pytest.fixture(scope="module")
def house(tmp_path_factory, demo_cuda):
    """The session's demo-cuda builds for 9.0 and 12.0 (tests/conftest.py), in a wheelhouse of this module's own."""
    root = tmp_path_factory.mktemp("variants")
    wh = demo_cuda.copy(root / "wheelhouse", ["9.0", "12.0"])
    # the session's 9.0 build skipped its suite (no GPU to run it here): this module is about variant twins
    result = build_index(wh, variants=True, include_unverified=True)
    assert result.warnings == [] and result.variant_files == 3, result
    print(run([uv_bin(), "--version"], child_env()).stdout, flush=True)
    return {"root": root, "wheelhouse": wh}


@pytest.fixture(scope="module")
def base(house):
    with running_server(house["wheelhouse"]) as url:
        yield url


def gpu_env(root: Path, gpu: str | None, **extra: str) -> dict[str, str]:
    env = child_env(UV_CACHE_DIR=str(root / "uv-cache"), UV_PYTHON_DOWNLOADS="never", **extra)
    for k in ("NV_VARIANT_PROVIDER_FORCE_SM_ARCH", "NV_VARIANT_PROVIDER_FORCE_CUDA_DRIVER_VERSION", "UV_PREVIEW", "UV_PREVIEW_FEATURES"):
        env.pop(k, None)
    if gpu:
        env["NV_VARIANT_PROVIDER_FORCE_SM_ARCH"] = gpu
        env["NV_VARIANT_PROVIDER_FORCE_CUDA_DRIVER_VERSION"] = DRIVER
    return env


def fresh_venv(root: Path, name: str) -> Path:
    path = root / "venvs" / name
    venv.EnvBuilder(clear=True, with_pip=False).create(path)
    return path


def installed(env_dir: Path) -> dict:
    """Version, variant.json and the SASS of what demo-cuda put into ``env_dir``."""
    site = next(env_dir.glob("lib/python3*/site-packages"))
    (info,) = site.glob("demo_cuda-*.dist-info")
    variant = info / "variant.json"
    report = audit_path(site / "demo_cuda")
    return {
        "version": info.name[len("demo_cuda-"):-len(".dist-info")],
        "variant": json.loads(variant.read_text())["variants"] if variant.exists() else None,
        "sass": report.archs_found,
    }


def uv_bin() -> str:
    # The binary itself: `python -m uv` would install into the interpreter running it, not VIRTUAL_ENV.
    from uv import find_uv_bin

    return find_uv_bin()


def uv_pip_install(root: Path, base: str, name: str, gpu: str | None, *, preview: bool = True) -> dict:
    env_dir = fresh_venv(root, name)
    cmd = [uv_bin(), "pip", "install", "--python", env_dir / "bin/python", "--index-url", f"{base}/simple/"]
    cmd += ["--preview-features", "wheel-variants"] if preview else []
    out = run([*cmd, "demo-cuda==0.1.0"], gpu_env(root, gpu))
    assert out.returncode == 0, out.stdout
    return installed(env_dir)


@pytest.mark.parametrize("gpu, label, sass", [("12.0", "cu130.sm120", ["sm_120"]), ("9.0", "cu130.sm90", ["sm_90"])])
def test_uv_installs_the_build_for_the_reported_gpu(house, base, gpu, label, sass):
    # The command is the one docs/index.md shows, pointed at this index and this venv.
    cmd = shlex.split(docs_snippet("uv-variants").replace("https://wheels.example.com", base))
    assert cmd[:2] == ["uv", "pip"] and "--preview-features" in cmd
    env_dir = fresh_venv(house["root"], f"uv-{gpu}")
    out = run([uv_bin(), *cmd[1:]], gpu_env(house["root"], gpu, VIRTUAL_ENV=str(env_dir)))
    assert out.returncode == 0, out.stdout
    got = installed(env_dir)
    assert got["version"] == TWIN and got["sass"] == sass
    arch = sass[0].removeprefix("sm_")
    assert got["variant"] == {label: {"nvidia": {"cuda_version_lower_bound": [DRIVER], "sm_arch": [f"{arch}_real"]}}}


@pytest.mark.parametrize("gpu", ["8.0", None], ids=["gpu-without-a-build", "no-gpu"])
def test_uv_falls_back_to_the_plain_wheel(house, base, gpu):
    if gpu is None and Path("/proc/driver/nvidia/version").exists():
        pytest.skip("this machine has an NVIDIA driver: uv would detect its GPU (bench/device/variants_gpu.sh covers that)")
    got = uv_pip_install(house["root"], base, f"uv-fallback-{gpu}", gpu)
    assert got == {"version": PLAIN, "variant": None, "sass": ["sm_90"]}


def test_uv_without_the_preview_feature_ignores_variants(house, base):
    got = uv_pip_install(house["root"], base, "uv-stable", "12.0", preview=False)
    assert got["version"] == PLAIN and got["variant"] is None


@pytest.mark.parametrize("gpu", [None, "12.0", "9.0"])
def test_pip_installs_the_plain_wheel_whatever_the_gpu(house, base, gpu):
    env_dir = fresh_venv(house["root"], f"pip-{gpu}")
    # pip >= 26 (the test extras) drives the fresh venv with --python; the venv's own pip is not used.
    out = run([sys.executable, "-m", "pip", "--python", env_dir / "bin/python", "install", "--no-cache-dir",
               "--index-url", f"{base}/simple/", "demo-cuda==0.1.0"], gpu_env(house["root"], gpu))
    assert out.returncode == 0, out.stdout
    assert installed(env_dir) == {"version": PLAIN, "variant": None, "sass": ["sm_90"]}


def test_static_html_hosting_serves_variants_too(house):
    """A static host answers HTML only: uv must find the variants file through the anchors."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                            cwd=house["wheelhouse"] / "index", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/", proc=proc)
        got = uv_pip_install(house["root"], f"http://127.0.0.1:{port}", "uv-static", "12.0")
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
    assert got["version"] == TWIN and got["sass"] == ["sm_120"]


def test_twin_properties_match_the_audit_of_its_own_bytes(house):
    files = house["wheelhouse"] / "index/files"
    index_doc = json.loads((files / "demo_cuda-0.1.0+variants-variants.json").read_text())
    twins = sorted(files.glob("demo_cuda-0.1.0+variants-*-cu130.*.whl"))
    assert [t.name.rsplit("-", 1)[1][:-4] for t in twins] == sorted(index_doc["variants"])
    for twin in twins:
        label = twin.name.rsplit("-", 1)[1][:-4]
        report = audit_path(twin)
        want = [f"{a.removeprefix('sm_')}_real" for a in report.archs_found] + [f"{a.removeprefix('sm_')}_virtual" for a in report.archs_ptx]
        assert sorted(index_doc["variants"][label]["nvidia"]["sm_arch"]) == sorted(want)
        assert index_doc["variants"][label]["nvidia"]["cuda_version_lower_bound"] == [DRIVER]
    # entries written by this wheelforge record the PTX the audit found (none here: -real only)
    for entry in (house["wheelhouse"] / "entries").iterdir():
        assert json.loads((entry / "entry.json").read_text())["archs_ptx"] == []
