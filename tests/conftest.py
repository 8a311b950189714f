"""Session fixtures: artifacts that take minutes to make are made once per test session and shared.

* ``llama_cpu_wheels``: llama-cpp-python 0.3.36 built CPU-only from the pinned sdist, stock and with our
  patch (tests/integration/test_real_patches.py; any test that needs a real llama-cpp-python wheel).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


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
    env.update({
        # CPU only: the layout under test does not depend on CUDA.  -O0 because
        # the tests check packaging, not speed, and it cuts compile time.
        "CMAKE_ARGS": "-DGGML_CUDA=OFF -DGGML_NATIVE=OFF "
                      "-DCMAKE_C_FLAGS_RELEASE=-O0 -DCMAKE_CXX_FLAGS_RELEASE=-O0",
        "CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count() or 2),
    })
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
