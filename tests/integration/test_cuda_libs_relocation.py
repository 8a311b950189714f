"""cuBLAS and cuDNN from NVIDIA's pip wheels: compiled against, required, found through RPATH.

examples/cuda-libs-demo is built through the real pipeline for CUDA 13.0 (nvcc here), its build env
filled with the wheels that ``[build] nvidia = ["cublas", "cudnn"]`` names for CUDA 13
(``nvidia-cublas``, ``nvidia-cudnn-cu13``).  The wheel is then installed into a fresh venv (pip
fetches the two nvidia wheels, about 940 MB, from its cache after the build's download), and with
LD_LIBRARY_PATH unset every library the extension needs must resolve from that venv's
``site-packages/nvidia/...``.  The one library left to the machine is the driver's ``libcuda.so.1``,
which the statically linked CUDA runtime opens itself (it is no DT_NEEDED entry).  No GPU here: the
kernels run in tests/postbuild/test_cuda_libs_demo.py on the GPU machine.

About 2.5 minutes on a 2-core machine (`pytest tests/integration/test_cuda_libs_relocation.py`: 149 s
with pip's cache already holding the nvidia wheels; installing and unpacking them twice, into the build
env and the test venv, is most of it, the nvcc compile about 19 s).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from build_support import cuda_build_root, entries, finish, start_build

from wheelforge.binaries.relocate import analyze, read_dynamic

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LIBRARY = "cuda_libs_demo/libcuda_libs_demo.so"
#: The versions recipes/cuda-libs-demo.toml pins for CUDA 13 (its [nvidia_versions.cu13]).
PINS = {"nvidia-cublas": "13.1.0.3", "nvidia-cudnn-cu13": "9.26.0.51"}


def _clean_env() -> dict[str, str]:
    """No LD_LIBRARY_PATH, no CUDA_HOME: only RPATHs and the system's default search path."""
    env = {k: v for k, v in os.environ.items() if k not in ("LD_LIBRARY_PATH", "LD_PRELOAD", "CUDA_HOME", "CUDA_PATH")}
    return env


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = cuda_build_root(tmp_path_factory, "cudalibs")
    log = root / "build.log"
    rc, text, results = finish(start_build(log, root / "wheelhouse", root / "cache", recipe="cuda-libs-demo",
                                           compiler_cache="none"), log)
    assert rc == 0, text[-4000:]
    (entry,) = entries(root / "wheelhouse")
    manifest = json.loads((entry / "entry.json").read_text())
    build_log = (root / "wheelhouse" / "logs" / f"{manifest['key']}.log").read_text()  # commands and compiler lines
    return {"root": root, "log": build_log, "wheel": entry / manifest["wheel"], "manifest": manifest}


@pytest.fixture(scope="module")
def venv(built: dict) -> dict:
    """A fresh venv with the wheel and, through its Requires-Dist, the nvidia wheels from PyPI."""
    root = built["root"] / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True)
    python = root / "bin" / "python"
    proc = subprocess.run([str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", str(built["wheel"])],
                          capture_output=True, text=True, env=_clean_env(), check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    return {"python": python, "site": Path(site)}


def _ldd(path: Path) -> dict[str, str]:
    """soname -> resolved file ("not found" when the loader could not find it)."""
    out = subprocess.run(["ldd", str(path)], capture_output=True, text=True, env=_clean_env(), check=True).stdout
    found = {}
    for line in out.splitlines():
        m = re.match(r"^\s*(\S+)\s+=>\s+(not found|\S+)", line)
        if m:
            found[m.group(1)] = m.group(2) if m.group(2) == "not found" else os.path.realpath(m.group(2))
    return found


def test_compiled_against_the_wheels_of_the_cuda_major(built: dict) -> None:
    log = built["log"]
    # the build env got the CUDA 13 names, chosen by wheelforge.model.nvidia_wheels from [build] nvidia and
    # locked with their hashes in recipes/locks/cuda-libs-demo/cpXY-cu13.txt ...
    assert re.search(r"--require-hashes --no-deps -r \S+/locks/cuda-libs-demo/cp3\d+-cu13\.txt", log), log[-3000:]
    assert re.search(r"Successfully installed .*nvidia-cublas-13\.1\.0\.3 .*nvidia-cudnn-cu13-9\.26\.0\.51", log), log[-3000:]
    # ... and nvcc / the linker were given their folders and files (build.verbose shows the command lines)
    site = r"\S+/env/lib/python3\.\d+/site-packages/nvidia"
    assert re.search(rf"nvcc .*-I{site}/cu13/include -I{site}/cudnn/include ", log), log[-3000:]
    assert re.search(rf" {site}/cu13/lib/libcublas\.so\.13 +{site}/cudnn/lib/libcudnn\.so\.9", log), log[-3000:]
    with zipfile.ZipFile(built["wheel"]) as zf:
        info = zf.read("cuda_libs_demo/_build_info.py").decode()
    # the headers compiled against are the wheels' (this toolkit has no cuBLAS or cuDNN of its own)
    assert 'CUBLAS_HEADER_VERSION = "13.1.0.3"' in info and 'CUDNN_HEADER_VERSION = "9.26.0"' in info, info


def test_relocation_report_and_metadata(built: dict) -> None:
    report = analyze(built["wheel"], "13.0")
    by_soname = {n.soname: n for n in report.needs if n.file == LIBRARY}
    assert by_soname["libcublas.so.13"].source == "pip" and by_soname["libcudnn.so.9"].source == "pip"
    assert not report.unknown, report.lines()
    assert not report.fixes, "the built wheel still lacks RPATH entries"  # relocation already applied them
    assert {n.source for n in report.needs} <= {"pip", "system"}, report.lines()
    with zipfile.ZipFile(built["wheel"]) as zf:
        data = zf.read(LIBRARY)
        meta = next(zf.read(n).decode() for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
    needed, paths = read_dynamic(data)
    assert "libcuda.so.1" not in needed  # static cudart opens the driver itself ...
    assert b"libcuda.so.1" in data  # ... by this name: the one library left to the machine
    assert "$ORIGIN/../nvidia/cu13/lib" in paths and "$ORIGIN/../nvidia/cudnn/lib" in paths, paths
    requires = re.findall(r"^Requires-Dist: (.+)$", meta, re.M)
    assert sorted(requires) == sorted(f"{d}=={v}" for d, v in PINS.items()), requires
    assert "# needs: cuda_libs_demo/libcuda_libs_demo.so: libcublas.so.13 <- pip (nvidia-cublas==13.1.0.3)" in built["log"]


def test_every_needed_library_resolves_from_the_venv(venv: dict) -> None:
    lib = venv["site"] / LIBRARY
    resolved = _ldd(lib)
    assert not [k for k, v in resolved.items() if v == "not found"], resolved
    nvidia = venv["site"] / "nvidia"
    for soname, where in {"libcublas.so.13": "cu13", "libcublasLt.so.13": "cu13", "libcudnn.so.9": "cudnn"}.items():
        assert resolved[soname] == str(nvidia / where / "lib" / soname), resolved
    # nothing from a CUDA toolkit (this machine has /usr/local/cuda-13.0/lib in ld.so.conf) or elsewhere
    outside = {k: v for k, v in resolved.items() if not v.startswith(str(venv["site"])) and "/cuda" in v}
    assert not outside, outside
    # the cuDNN sub-libraries libcudnn.so.9 opens at run time resolve as well
    for sub in sorted((nvidia / "cudnn" / "lib").glob("libcudnn_*.so.9")):
        missing = [k for k, v in _ldd(sub).items() if v == "not found"]
        assert not missing, (sub.name, missing)


def test_loads_in_a_clean_process_and_reports_the_pinned_versions(venv: dict) -> None:
    code = ("import json, cuda_libs_demo as d\n"
            "print(json.dumps({'versions': d.library_versions(), 'maps': d.loaded_libraries(), 'info': d.build_info()}))")
    proc = subprocess.run([str(venv["python"]), "-c", code], capture_output=True, text=True, env=_clean_env(),
                          cwd=str(venv["site"].parent), check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["versions"] == {"cublas": "13.1.0", "cudnn": "9.26.0"}, out["versions"]
    assert out["info"]["cublas_header_version"].startswith(out["versions"]["cublas"])
    for name in ("libcublas.so.13", "libcublasLt.so.13", "libcudnn.so.9"):
        assert out["maps"][name].startswith(str(venv["site"] / "nvidia")), (name, out["maps"].get(name))
    assert not any(n.startswith("libcuda.so") for n in out["maps"]), "the driver is loaded only at the first CUDA call"

