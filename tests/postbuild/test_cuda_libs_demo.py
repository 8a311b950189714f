"""cuda-libs-demo wheel: cuBLAS and cuDNN come from the nvidia-* wheels it requires; on a GPU its GEMM and
convolution match numpy.

The GEMM test also runs the wheel's own kernel: the bias is added by ``add_bias``, compiled into the
wheel's library (examples/cuda-libs-demo/csrc/cuda_libs.cu), after cuBLAS's product; a wrong or missing
kernel leaves the bias out.

Inputs are fresh random normals every run (the seed is in the failure message).  References are
computed in float64 from the same float32 inputs; the library computes in exact FP32 (cuBLAS
pedantic math, cuDNN FMA math: no TF32), so the error is FP32 accumulation only.
"""

from __future__ import annotations

import re
from importlib.metadata import requires, version

import pytest
from postbuild_support import assert_built_for_target, import_or_fail

pytestmark = pytest.mark.postbuild


@pytest.fixture(scope="module")
def demo():
    return import_or_fail("cuda_libs_demo")


@pytest.fixture(scope="module")
def np():
    return pytest.importorskip("numpy")


def _pins() -> dict[str, str]:
    """The nvidia-* wheels the installed wheel requires, name -> pinned version."""
    pins = {}
    for req in requires("cuda-libs-demo") or []:
        m = re.match(r"^(nvidia-[a-z0-9-]+)==([0-9][^;\s]*)", req)
        if m:
            pins[m.group(1)] = m.group(2)
    return pins


def test_arch_info_matches_target(demo, target) -> None:
    assert_built_for_target(demo.build_info(), target)


def test_requires_the_nvidia_wheels_it_was_compiled_against(demo) -> None:
    pins = _pins()
    cublas = next((v for k, v in pins.items() if k.startswith("nvidia-cublas")), None)
    cudnn = next((v for k, v in pins.items() if k.startswith("nvidia-cudnn")), None)
    assert cublas and cudnn, f"Requires-Dist lacks pinned cuBLAS/cuDNN wheels: {requires('cuda-libs-demo')}"
    info = demo.build_info()
    assert info["cublas_header_version"] == cublas, (info, pins)  # 13.1.0.3 == 13.1.0.3
    assert cudnn.startswith(info["cudnn_header_version"] + "."), (info, pins)  # 9.26.0 ~ 9.26.0.51
    for name, pinned in pins.items():
        assert version(name) == pinned, f"{name} {version(name)} is installed, the wheel pins {pinned}"


def test_loads_cublas_and_cudnn_from_the_nvidia_wheels(demo) -> None:
    import pathlib

    beside = pathlib.Path(demo.__file__).resolve().parent.parent / "nvidia" / "cudnn" / "lib"
    if not beside.is_dir():
        # A test venv that sees a parent environment's packages (verify --system-site-packages on a machine whose
        # torch cannot be reinstalled) has the nvidia wheels in another site folder, which the wheel's
        # $ORIGIN/../nvidia RPATH cannot reach; a user's single environment has them side by side.
        pytest.skip(f"the nvidia wheels are not beside the package ({beside} is missing): the RPATH premise does not hold here")
    versions = demo.library_versions()
    info = demo.build_info()
    assert info["cublas_header_version"].startswith(versions["cublas"] + "."), (versions, info)
    assert versions["cudnn"] == info["cudnn_header_version"], (versions, info)
    maps = demo.loaded_libraries()
    for name in ("libcublas", "libcublasLt", "libcudnn"):
        path = next((p for n, p in maps.items() if n.startswith(name + ".so")), None)
        assert path and "/nvidia/" in path and "site-packages" in path, f"{name} loaded from {path}"


@pytest.mark.gpu
@pytest.mark.parametrize("m,n,k", [(64, 48, 96), (257, 129, 67)])
def test_gemm_matches_numpy(demo, np, gpu, seed, m, n, k) -> None:
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((m, k), dtype=np.float32) / np.sqrt(k).astype(np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    bias = rng.standard_normal(n, dtype=np.float32)
    got = np.asarray(demo.gemm_bias(a.ravel(), b.ravel(), bias, m, n, k), dtype=np.float32).reshape(m, n)
    want = a.astype(np.float64) @ b.astype(np.float64) + bias
    # O(1) outputs, k-term FP32 sums: ~k * 2^-24 worst case; 1e-4 leaves room for split-K orderings.
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, err_msg=f"seed {seed}")


def _conv2d_reference(np, x, w, pad):
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    r, s = w.shape[2:]
    windows = np.lib.stride_tricks.sliding_window_view(xp, (r, s), axis=(2, 3))  # N C H' W' R S
    return np.einsum("nchwrs,kcrs->nkhw", windows, w.astype(np.float64))


@pytest.mark.gpu
@pytest.mark.parametrize("pad", [0, 1])
def test_conv2d_matches_numpy(demo, np, gpu, seed, pad) -> None:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 8, 17, 19), dtype=np.float32)
    w = rng.standard_normal((16, 8, 3, 3), dtype=np.float32) / np.float32(np.sqrt(8 * 9))
    out, shape = demo.conv2d(x.ravel(), w.ravel(), x.shape, w.shape, pad=pad)
    want = _conv2d_reference(np, x, w, pad)
    assert shape == want.shape, (shape, want.shape)
    got = np.asarray(out, dtype=np.float32).reshape(shape)
    # 72-term FP32 dot products with O(1) outputs: 1e-4 absolute and relative.
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, err_msg=f"seed {seed}")
    assert demo.device_count() >= 1
