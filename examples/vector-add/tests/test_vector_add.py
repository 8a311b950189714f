"""Post-build test of the vector-add recipe.

It runs in a fresh venv into which only the wheel under test (and pytest) is installed, so it
never imports wheelforge.  The fixtures come from the suite's ``conftest.py``, which verify copies
beside this file: ``target`` (the archs, CUDA and label the build asked for), ``gpu`` (tests that
take it are skipped without a GPU; mark them ``gpu``) and ``seed``.
"""

from __future__ import annotations

import random
import struct

import pytest

pytestmark = pytest.mark.postbuild


@pytest.fixture(scope="module")
def demo_cuda():
    import demo_cuda  # an ImportError fails the test: the wheel must import

    return demo_cuda


def _f32(x: float) -> float:
    return struct.unpack("f", struct.pack("f", x))[0]


def test_kernel_library_built_for_the_target_archs(demo_cuda, target) -> None:
    built = sorted(a.split("-")[0] for a in demo_cuda.arch_info()["cuda_architectures"])  # "120-real" -> "120"
    wanted = sorted(f"{major}{minor}{suffix}" for major, minor, suffix in target.archs)
    assert built == wanted, f"kernel library built for {built}, the target asks {wanted}"


@pytest.mark.gpu
def test_add_runs_the_kernel_in_the_wheel(demo_cuda, gpu, seed) -> None:
    """``add`` launches the kernel compiled into the wheel's own ``libdemo_cuda_kernels.so``."""
    rng = random.Random(seed)
    n = 4099  # not a multiple of the block size: the last block's bounds check runs
    a = [rng.uniform(-1e3, 1e3) for _ in range(n)]
    b = [rng.uniform(-1e3, 1e3) for _ in range(n)]
    # float32 inputs summed in double then rounded once: exactly the float32 sum the kernel computes
    want = [_f32(_f32(a[i]) + _f32(b[i])) for i in range(n)]
    assert demo_cuda.add(a, b) == want, f"seed {seed}: the kernel's sums differ from float32 addition"
