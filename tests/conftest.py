"""Session fixtures: artifacts that take minutes to make are made once per test session and shared.

* ``demo_cuda``: demo-cuda built by ``invoke build`` with the real nvcc, once per arch that any test asks
  for (the CLI's output test, the variants and doctor tests all use the same wheels).
* ``llama_cpu_wheels``: llama-cpp-python 0.3.36 built CPU-only from the pinned sdist, stock and with our
  patch (tests/integration/test_real_patches.py; any test that needs a real llama-cpp-python wheel).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
sys.path.insert(0, str(TESTS))
from build_support import cuda_build_root  # noqa: E402


@dataclass
class DemoCudaBuilds:
    """One wheelhouse; ``run(arch)`` builds demo-cuda for ``arch`` the first time it is asked, through the CLI.

    12.0, the default target, is built as a user's first build is (a build venv, then the post-build suite);
    the other archs, which tests need only as wheels with known device code, with this interpreter's build
    tools (--no-isolation) and no suite: filling a build venv is most of a demo-cuda build."""

    wheelhouse: Path
    runs: dict[str, subprocess.CompletedProcess] = field(default_factory=dict)

    def argv(self, arch: str) -> list[str]:
        return [sys.executable, "-m", "invoke", "build", "demo-cuda", "--cuda", "13.0", "--arch", arch,
                "--wheelhouse", str(self.wheelhouse), *(() if arch == "12.0" else ("--no-isolation", "--no-verify"))]

    def run(self, arch: str) -> subprocess.CompletedProcess:
        if arch not in self.runs:
            proc = subprocess.run(self.argv(arch), cwd=REPO, capture_output=True, text=True, timeout=1800)
            assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
            self.runs[arch] = proc
        return self.runs[arch]

    def entry(self, arch: str) -> Path:
        """The entry folder of ``arch`` (written as entry.json records it: 12.0, 9.0, 9.0+PTX)."""
        self.run(arch)
        for manifest in self.wheelhouse.glob("entries/*/entry.json"):
            if json.loads(manifest.read_text())["target"]["archs"] == [arch]:
                return manifest.parent
        raise AssertionError(f"no demo-cuda entry for {arch} in {self.wheelhouse}")

    def wheel(self, arch: str) -> Path:
        (wheel,) = self.entry(arch).glob("demo_cuda-*.whl")
        return wheel

    def copy(self, dest: Path, archs: list[str]) -> Path:
        """A wheelhouse of its own at ``dest`` holding these archs' entries (and their logs)."""
        for arch in archs:
            entry = self.entry(arch)
            shutil.copytree(entry, dest / "entries" / entry.name)
            log = self.wheelhouse / "logs" / f"{entry.name}.log"
            if log.is_file():
                (dest / "logs").mkdir(parents=True, exist_ok=True)
                shutil.copy2(log, dest / "logs" / log.name)
        return dest


@pytest.fixture(scope="session")
def demo_cuda(tmp_path_factory: pytest.TempPathFactory) -> DemoCudaBuilds:
    return DemoCudaBuilds(cuda_build_root(tmp_path_factory, "demo-cuda") / "wheelhouse")


@pytest.fixture(scope="session")
def sdist_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """WHEELFORGE_CACHE keeps the downloads across sessions; else one download per session."""
    root = os.environ.get("WHEELFORGE_CACHE")
    if root:
        return Path(root) / "test-sdists"
    return tmp_path_factory.mktemp("sdists")


@pytest.fixture(scope="session")
def xformers_sdist(sdist_cache: Path) -> Path:
    from patch_support import download_sdist

    return download_sdist("xformers", sdist_cache)


@pytest.fixture(scope="session")
def llama_sdist(sdist_cache: Path) -> Path:
    from patch_support import download_sdist

    return download_sdist("llama-cpp-python", sdist_cache)


@pytest.fixture(scope="session")
def flash_attn_sdist(sdist_cache: Path) -> Path:
    from patch_support import download_sdist

    return download_sdist("flash-attn", sdist_cache)


@dataclass(frozen=True)
class LlamaWheels:
    stock: Path  # the pristine sdist's wheel
    patched: Path  # with patches/llama-cpp-python/0001-install-each-library-once.patch
    stock_seconds: float
    patched_seconds: float


def _build_llama(root: Path, build_dir: Path, out: Path) -> tuple[Path, float]:
    """A CPU-only wheel of the llama-cpp-python tree, reusing one CMake build folder."""
    from patch_support import run

    env = dict(os.environ)
    # CPU only: the layout under test does not depend on CUDA.  -O0, and without llamafile's sgemm and the
    # Q4_0 repack kernels (two of the largest files), because the tests check packaging, not speed.
    cmake_args = ("-DGGML_CUDA=OFF -DGGML_NATIVE=OFF -DGGML_LLAMAFILE=OFF -DGGML_CPU_REPACK=OFF "
                  "-DCMAKE_C_FLAGS_RELEASE=-O0 -DCMAKE_CXX_FLAGS_RELEASE=-O0")
    if shutil.which("ccache"):
        # Objects outlive the session in ccache (WHEELFORGE_CACHE/test-ccache, else ccache's own folder):
        # a second run of the suite compiles nothing.  Paths below the session's folder are hashed relative.
        cmake_args += " -DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache"
        env.update(CCACHE_BASEDIR=str(root.parent.parent), CCACHE_NOHASHDIR="1")
        if os.environ.get("WHEELFORGE_CACHE"):
            env.setdefault("CCACHE_DIR", str(Path(os.environ["WHEELFORGE_CACHE"]) / "test-ccache"))
    env.update(CMAKE_ARGS=cmake_args, CMAKE_BUILD_PARALLEL_LEVEL=str(os.cpu_count() or 2))
    start = time.monotonic()
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "-C", f"build-dir={build_dir}", "-w", out, root], cwd=root.parent, env=env)
    (wheel,) = out.glob("llama_cpp_python-*.whl")
    return wheel, time.monotonic() - start


@pytest.fixture(scope="session")
def llama_cpu_wheels(llama_sdist: Path, tmp_path_factory: pytest.TempPathFactory) -> LlamaWheels:
    """Both wheels from one CMake build folder: the patched build recompiles nothing, it relinks and installs."""
    pytest.importorskip("scikit_build_core")
    from patch_support import PATCH_DIR, extract_sdist, git_apply

    tmp = tmp_path_factory.mktemp("llama")
    root = extract_sdist(llama_sdist, tmp / "src")
    build_dir = tmp / "build"
    assert not (root / "llama_cpp" / "lib").exists()
    stock, stock_s = _build_llama(root, build_dir, tmp / "stock")
    # The stock build also installed into the source tree; that copy is build output, not source
    # (the sdist has no llama_cpp/lib), so drop it.
    for leftover in (root / "llama_cpp" / "lib").glob("*"):
        leftover.unlink()
    git_apply(root, PATCH_DIR / "llama-cpp-python" / "0001-install-each-library-once.patch")
    patched, patched_s = _build_llama(root, build_dir, tmp / "patched")
    print(f"llama-cpp-python CPU wheels: stock {stock_s:.0f} s, patched {patched_s:.0f} s", flush=True)
    return LlamaWheels(stock, patched, stock_s, patched_s)
