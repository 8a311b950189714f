"""demo-cuda wheel: imports, reports its archs without a GPU, and on a GPU adds like numpy.

The GPU test runs the wheel's own code: ``demo_cuda.add`` launches the vector-add kernel compiled into
the wheel's ``demo_cuda/libdemo_cuda_kernels.so`` (examples/demo-cuda/csrc/add.cu); without SASS for the
GPU it fails with a CUDA error, not a skip.
"""

from __future__ import annotations

import random

import pytest
from postbuild_support import assert_built_for_target, assert_has_local_label, import_or_fail

pytestmark = pytest.mark.postbuild


@pytest.fixture(scope="module")
def demo_cuda():
    return import_or_fail("demo_cuda")


def test_arch_info_matches_target(demo_cuda, target) -> None:
    assert_built_for_target(demo_cuda.arch_info(), target)


def test_version_has_local_label(target) -> None:
    from importlib.metadata import version

    assert_has_local_label(version("demo-cuda"), target)


@pytest.mark.gpu
def test_add_matches_numpy(demo_cuda, gpu, seed) -> None:
    np = pytest.importorskip("numpy")
    rng = random.Random(seed)
    n = 100_003  # not a multiple of the block size: exercises the bounds check
    a = [rng.uniform(-1e3, 1e3) for _ in range(n)]
    b = [rng.uniform(-1e3, 1e3) for _ in range(n)]
    got = np.asarray(demo_cuda.add(a, b), dtype=np.float32)
    want = np.asarray(a, dtype=np.float32) + np.asarray(b, dtype=np.float32)
    assert np.array_equal(got, want), f"seed {seed}: max diff {np.abs(got - want).max()}"
    assert demo_cuda.device_count() >= 1
