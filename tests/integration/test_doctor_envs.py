"""`invoke doctor` on real environments: venvs filled by pip with demo-cuda wheels built by the real nvcc,
PyPI's xformers wheel, and small projects built on the spot by setuptools.

No GPU here: the GPUs are given with --arch and the driver (where checked) with --driver, which is what
doctor does on a machine without nvidia-smi.  The environments are read through the CLI
(`python -m invoke doctor ...` from the repository root) and through the library.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from wheelforge.binaries.audit import audit_path
from wheelforge.verify.doctor import diagnose

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
NVCC = Path("/usr/local/cuda/bin/nvcc")
XFORMERS_WHEEL = "xformers-0.0.35-py39-none-manylinux_2_28_x86_64.whl"
#: sha256 of that file as PyPI's simple API (JSON) lists it, re-checked on the download
XFORMERS_SHA256 = "ccc73c7db9890224ab05f5fb60e2034f9e6c8672a10be0cf00e95cbbae3eda7c"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHEELFORGE_")}
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run(*cmd: object, cwd: Path = REPO, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    argv = [str(c) for c in cmd]
    print("$", " ".join(argv))
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=_env(), check=False)


def doctor(*args: str) -> tuple[int, dict | None, subprocess.CompletedProcess[str]]:
    """`python -m invoke doctor ARGS --json` from the repository root: exit code, report, the process."""
    proc = run(sys.executable, "-m", "invoke", "doctor", *args, "--json", timeout=120)
    report = json.loads(proc.stdout) if proc.stdout.strip() else None
    return proc.returncode, report, proc


def package(report: dict, name: str) -> dict:
    return next(p for p in report["packages"] if p["name"] == name)


def make_venv(dest: Path, *wheels: Path) -> Path:
    """A fresh venv with ``wheels`` installed by pip (no dependencies, no index)."""
    proc = run(sys.executable, "-m", "venv", "--without-pip", dest)
    assert proc.returncode == 0, proc.stderr
    python = dest / "bin" / "python"
    if wheels:
        proc = run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", *wheels)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return python


def setuptools_wheel(root: Path, name: str, version: str, files: dict[str, str], deps: list[str] = ()) -> Path:
    """A real wheel built by setuptools (pip wheel, no build isolation) from a project written here."""
    src = root / f"{name}-src"
    for rel, text in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(text)
    (src / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n\n'
        f'[project]\nname = "{name}"\nversion = "{version}"\ndependencies = {json.dumps(list(deps))}\n\n'
        f'[tool.setuptools]\npackages = ["{name}"]\n'
    )
    out = root / "dist"
    proc = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", out, src)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (wheel,) = out.glob(f"{name}-*.whl")
    return wheel


@pytest.fixture(scope="module")
def demo_wheels(demo_cuda) -> dict[str, Path]:
    """demo-cuda built by `invoke build` with the real nvcc (the session's builds, tests/conftest.py), for 9.0
    (SASS sm_90) and 9.0+PTX (SASS sm_90 and PTX compute_90)."""
    return {arch: demo_cuda.wheel(arch) for arch in ("9.0", "9.0+PTX")}


@pytest.fixture(scope="module")
def v90(demo_wheels: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_venv(tmp_path_factory.mktemp("v90") / "venv", demo_wheels["9.0"])


def test_sm90_wheel_has_no_kernel_for_12_0(v90: Path) -> None:
    rc, report, proc = doctor("--python", str(v90), "--arch", "12.0")
    assert rc == 5, proc.stderr
    assert proc.stderr.startswith("error[doctor.would-fail]: 1 of 1 CUDA packages would fail here: demo-cuda (no-kernel)")
    demo = package(report, "demo-cuda")
    assert demo["verdict"] == "no-kernel" and demo["verdicts"] == {"12.0": "no-kernel"}
    assert demo["version"] == "0.1.0+cu130.sm90"
    assert demo["cuda"] == {"version": "13.0", "source": "version label 0.1.0+cu130.sm90"}
    (binary,) = demo["binaries"]
    assert binary["path"] == "demo_cuda/libdemo_cuda_kernels.so" and binary["sass"] == ["sm_90"] and binary["ptx"] == []
    assert "no kernel for sm_120" in demo["problems"][0]["message"]
    assert demo["fixes"] == ["python3 -m invoke build demo-cuda --arch 12.0"]
    assert report["gpus"] == [{"name": "sm_120", "capability": "12.0", "source": "--arch", "count": 1}]
    assert report["summary"]["failing"] == ["demo-cuda"]


def test_sm90_wheel_is_native_on_9_0(v90: Path) -> None:
    rc, report, proc = doctor("--python", str(v90), "--arch", "9.0")
    assert rc == 0, proc.stderr
    assert package(report, "demo-cuda")["verdict"] == "native"


def test_cuda_13_wheel_on_a_cuda_12_9_driver(v90: Path) -> None:
    """575.51.03 is CUDA 12.9.0's runfile driver: a +cu130 build needs the R580 branch."""
    rc, report, proc = doctor("--python", str(v90), "--arch", "9.0", "--driver", "575.51.03")
    assert rc == 5, proc.stderr
    demo = package(report, "demo-cuda")
    assert demo["verdict"] == "driver-too-old" and demo["verdicts"] == {"9.0": "native"}
    assert report["driver"]["cuda"] == "12.9"
    assert demo["fixes"][0] == "python3 -m invoke build demo-cuda --arch 9.0 --cuda 12.9"
    assert "R580" in demo["fixes"][1]


def test_people_table_and_library_agree(v90: Path) -> None:
    proc = run(sys.executable, "-m", "invoke", "doctor", "--python", v90, "--arch", "9.0;12.0", timeout=120)
    assert proc.returncode == 5
    assert "demo-cuda" in proc.stdout and "no-kernel" in proc.stdout and "native" in proc.stdout
    assert 'fix: python3 -m invoke build demo-cuda --arch "9.0;12.0"' in proc.stdout  # the rebuild serves both GPUs
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[1].startswith("hint: ") and "Traceback" not in proc.stderr

    report = diagnose(v90, archs=["9.0", "12.0"])
    (demo,) = report.packages
    assert demo.verdicts == {"9.0": "native", "12.0": "no-kernel"} and demo.verdict == "no-kernel"
    assert report.failing == [demo] and report.elf_files == 1


def test_ptx_wheel_is_jit_on_newer_and_no_kernel_on_older(demo_wheels: dict[str, Path], tmp_path: Path) -> None:
    python = make_venv(tmp_path / "venv", demo_wheels["9.0+PTX"])
    rc, report, proc = doctor("--python", str(python), "--arch", "8.9;9.0;12.0")
    demo = package(report, "demo-cuda")
    (binary,) = demo["binaries"]
    assert binary["sass"] == ["sm_90"] and binary["ptx"] == ["compute_90"]
    # compute_90 PTX JITs for 12.0; nothing runs on 8.9 (SASS of another major, PTX newer than the GPU)
    assert demo["verdicts"] == {"8.9": "no-kernel", "9.0": "native", "12.0": "ptx-jit"}
    assert rc == 5 and demo["verdict"] == "no-kernel"
    rc, report, proc = doctor("--python", str(python), "--arch", "12.0")
    assert rc == 0, proc.stderr  # ptx-jit works: a warning, not a failure
    assert package(report, "demo-cuda")["verdict"] == "ptx-jit"


@pytest.fixture(scope="module")
def xformers_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """PyPI's xformers 0.0.35 Linux wheel, measured first (the test asserts it again):

        python3 -m invoke inspect xformers-0.0.35-py39-none-manylinux_2_28_x86_64.whl --arch 12.0
        xformers/_C.so: SASS sm_75 x11, sm_80 x11, sm_90a x11; PTX sm_80 x11 -> "FAIL: sm_120 PTX only"

    and its xformers/cpp_lib.json: {"version": {"cuda": 1208, "torch": "2.10.0+cu128", ...},
    "env": {"TORCH_CUDA_ARCH_LIST": "7.5 8.0+PTX 8.0 9.0a", ...}}: PyPI serves the CUDA 12.8 build.
    """
    out = tmp_path_factory.mktemp("xformers")
    proc = run(sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--dest", out,
               "xformers==0.0.35", "--platform", "manylinux_2_28_x86_64")
    if proc.returncode != 0:
        pytest.skip(f"cannot download xformers 0.0.35 from PyPI: {proc.stderr.strip()[-300:]}")
    wheel = out / XFORMERS_WHEEL
    assert hashlib.sha256(wheel.read_bytes()).hexdigest() == XFORMERS_SHA256
    return wheel


@pytest.fixture(scope="module")
def torch_env(xformers_wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A venv with xformers, a stand-in torch 2.11.0+cu130 and an extension pinned to torch 2.0.0.

    The stand-in is a real wheel built by setuptools and installed by pip, named torch, version
    2.11.0+cu130, whose torch/version.py says cuda = '13.0' as torch's does: what doctor reads of torch is
    its dist-info and that file (the real torch is gigabytes).  Its __init__ raises on import, and a .pth
    file with an import line would write a marker: doctor must do neither.  A second site folder, named by
    a .pth path line, holds another real pip install.
    """
    root = tmp_path_factory.mktemp("torchenv")
    marker = root / "imported"
    torch_whl = setuptools_wheel(root, "torch", "2.11.0+cu130", {
        "torch/__init__.py": "raise ImportError('stand-in torch: doctor must not import it')\n",
        "torch/version.py": "__version__ = '2.11.0+cu130'\ncuda = '13.0'\n",
    })
    pinned_whl = setuptools_wheel(root, "wfpinned", "1.0", {"wfpinned/__init__.py": ""}, deps=["torch==2.0.0"])
    python = make_venv(root / "venv", xformers_wheel, torch_whl)
    extra = root / "extra-site"
    proc = run(sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", extra, pinned_whl)
    assert proc.returncode == 0, proc.stderr
    (site,) = (root / "venv" / "lib").glob("python*/site-packages")
    (site / "zz_wheelforge_test.pth").write_text(f"import pathlib; pathlib.Path({str(marker)!r}).write_text('ran')\n{extra}\n")
    return {"python": python, "marker": marker, "extra": extra, "xformers_wheel": xformers_wheel}


def test_pypi_xformers_verdicts_follow_its_archs(torch_env: dict) -> None:
    (xf,) = audit_path(torch_env["xformers_wheel"], ["120"]).device_files  # what the docstring says was measured
    assert xf.path == "xformers/_C.so" and xf.archs_sass == ("sm_75", "sm_80", "sm_90a") and xf.archs_ptx == ("sm_80",)

    rc, report, proc = doctor("--python", str(torch_env["python"]), "--arch", "7.0;8.6;9.0;10.0;12.0")
    xformers = package(report, "xformers")
    # sm_80 SASS runs on 8.6, sm_90a on exactly 9.0; compute_80 PTX JITs for 10.0 and 12.0; nothing for 7.0
    assert xformers["verdicts"] == {"7.0": "no-kernel", "8.6": "native", "9.0": "native", "10.0": "ptx-jit",
                                    "12.0": "ptx-jit"}
    (binary,) = xformers["binaries"]
    assert binary["sass"] == ["sm_75", "sm_80", "sm_90a"] and binary["ptx"] == ["compute_80"]
    assert xformers["cuda"] == {"version": "12.8", "source": "xformers/cpp_lib.json"}
    assert rc == 5


def test_extensions_built_for_another_torch(torch_env: dict) -> None:
    rc, report, proc = doctor("--python", str(torch_env["python"]), "--arch", "12.0")
    assert rc == 5, proc.stderr
    assert report["torch"] == {"version": "2.11.0+cu130", "cuda": "13.0"}

    xformers = package(report, "xformers")
    assert xformers["verdict"] == "torch-mismatch" and xformers["verdicts"] == {"12.0": "ptx-jit"}
    assert xformers["torch"] == {"built_for": "2.10.0+cu128", "source": "xformers/cpp_lib.json",
                                 "rule": "this or later (stable ABI)"}
    mismatch = next(p for p in xformers["problems"] if p["verdict"] == "torch-mismatch")
    assert "CUDA 12.8" in mismatch["message"] and "CUDA 13.0" in mismatch["message"]
    assert xformers["fixes"] == ["python3 -m invoke build xformers --arch 12.0 --cuda 13.0 --with torch==2.11.0+cu130"]

    pinned = package(report, "wfpinned")  # found through the .pth path line
    assert pinned["location"] == str(torch_env["extra"])
    assert pinned["verdict"] == "torch-mismatch" and pinned["torch"]["source"] == "Requires-Dist: torch==2.0.0"
    assert "no wheelforge recipe" not in " ".join(pinned["fixes"]) and "torch 2.11.0+cu130" in pinned["fixes"][0]

    torch = package(report, "torch")
    assert torch["verdict"] == "host-only" and torch["cuda"] == {"version": "13.0", "source": "torch/version.py"}
    assert sorted(report["summary"]["failing"]) == ["wfpinned", "xformers"]
    assert not torch_env["marker"].exists(), "a .pth import line ran: doctor must not run the environment's code"


def test_missing_interpreter_is_bad_input(tmp_path: Path) -> None:
    rc, report, proc = doctor("--python", str(tmp_path / "nope" / "python"))
    assert rc == 2 and report is None
    assert proc.stderr.startswith("error[doctor.no-python]: ") and "Traceback" not in proc.stderr


def test_build_target_spelling_is_refused_as_a_gpu(v90: Path) -> None:
    rc, _, proc = doctor("--python", str(v90), "--arch", "12.0a")
    assert rc == 2 and proc.stderr.startswith("error[doctor.arch]")


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has a GPU: the GPUs found are used")
def test_no_gpu_judges_the_configured_arch(v90: Path) -> None:
    rc, report, proc = doctor("--python", str(v90))
    assert rc == 5, proc.stderr  # demo-cuda for 9.0 has no kernel for the configured 12.0
    assert [(g["capability"], g["source"]) for g in report["gpus"]] == [("12.0", "configured")]  # pyproject's arch
    assert any("no GPU found" in n for n in report["notes"])
