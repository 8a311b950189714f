"""A cuBLAS GEMM and a cuDNN convolution through ctypes, the libraries taken from NVIDIA's pip wheels.

``build_info()`` and ``library_versions()`` need no GPU (the second loads the libraries);
``gemm_bias`` and ``conv2d`` run on the first GPU.  Inputs are flat float32 sequences (any
object ``array('f', ...)`` accepts, a numpy array included).
"""

from __future__ import annotations

import ctypes
import glob
import os
import sys
from array import array
from collections.abc import Sequence

from . import _build_info

__all__ = ["build_info", "conv2d", "device_count", "gemm_bias", "library_versions", "loaded_libraries"]

_HERE = os.path.dirname(os.path.abspath(__file__))
_LIBRARY = os.path.join(_HERE, "libcuda_libs_demo.so")
#: What the library's RPATH points at, in load order (cuBLASLt before cuBLAS, as torch/__init__.py does).
_NVIDIA_FILES = ("libcublasLt.so.*[0-9]", "libcublas.so.*[0-9]", "libcudnn.so.*[0-9]")
_LIB: ctypes.CDLL | None = None


def _preload_from_sys_path() -> None:
    """Load cuBLAS and cuDNN from whichever sys.path entry holds the nvidia wheels.

    The RPATH ``$ORIGIN/../nvidia/...`` finds them when they share this package's site-packages
    (a plain venv).  A venv made with ``--system-site-packages`` may hold them in the parent's
    site-packages instead; PyTorch's ``_preload_cuda_deps`` covers the same case the same way.
    """
    for pattern in _NVIDIA_FILES:
        for entry in sys.path:
            hits = sorted(glob.glob(os.path.join(entry, "nvidia", "*", "lib", pattern)))
            if hits:
                ctypes.CDLL(hits[0], mode=ctypes.RTLD_GLOBAL)
                break


def _lib() -> ctypes.CDLL:
    global _LIB
    if _LIB is None:
        try:
            lib = ctypes.CDLL(_LIBRARY)
        except OSError as first:
            if "libcublas" not in str(first) and "libcudnn" not in str(first):
                raise
            _preload_from_sys_path()
            lib = ctypes.CDLL(_LIBRARY)
        lib.cld_error_text.restype = ctypes.c_char_p
        lib.cld_library_versions.argtypes = [ctypes.POINTER(ctypes.c_int)] * 3 + [ctypes.POINTER(ctypes.c_ulonglong)]
        lib.cld_gemm_bias.argtypes = [ctypes.c_int] * 3 + [ctypes.c_void_p] * 4
        lib.cld_conv2d.argtypes = [ctypes.c_int] * 8 + [ctypes.c_void_p] * 4
        _LIB = lib
    return _LIB


def _check(rc: int) -> None:
    if rc:
        raise RuntimeError(f"cuda_libs_demo error {rc}: {_lib().cld_error_text().decode(errors='replace')}")


def build_info() -> dict[str, object]:
    """What the library was compiled for and against (read from CMake's record; loads nothing)."""
    return {
        "cuda_architectures": [a for a in _build_info.CUDA_ARCHITECTURES.split(";") if a],
        "cuda_version": _build_info.CUDA_VERSION,
        "cublas_header_version": _build_info.CUBLAS_HEADER_VERSION,
        "cudnn_header_version": _build_info.CUDNN_HEADER_VERSION,
        "library": _LIBRARY,
    }


def library_versions() -> dict[str, str]:
    """Versions reported by the cuBLAS and cuDNN that were loaded (no GPU needed)."""
    major, minor, patch, cudnn = ctypes.c_int(), ctypes.c_int(), ctypes.c_int(), ctypes.c_ulonglong()
    _check(_lib().cld_library_versions(ctypes.byref(major), ctypes.byref(minor), ctypes.byref(patch), ctypes.byref(cudnn)))
    v = cudnn.value  # cuDNN 9: major * 10000 + minor * 100 + patch
    return {"cublas": f"{major.value}.{minor.value}.{patch.value}", "cudnn": f"{v // 10000}.{v // 100 % 100}.{v % 100}"}


def loaded_libraries() -> dict[str, str]:
    """Shared object name -> file this process mapped it from (``/proc/self/maps``), after loading the library."""
    _lib()
    found: dict[str, str] = {}
    with open("/proc/self/maps", encoding="utf-8") as maps:
        for line in maps:
            path = line.split(maxsplit=5)[-1].strip() if line.count(" ") >= 5 else ""
            if ".so" in path:
                found.setdefault(os.path.basename(path), path)
    return found


def device_count() -> int:
    try:
        return int(_lib().cld_device_count())
    except OSError:
        return 0


def _floats(values: Sequence[float], size: int, name: str) -> array:
    out = array("f", values)
    if len(out) != size:
        raise ValueError(f"{name} holds {len(out)} values, expected {size}")
    return out


def gemm_bias(a: Sequence[float], b: Sequence[float], bias: Sequence[float], m: int, n: int, k: int) -> list[float]:
    """Row-major ``a[m, k] @ b[k, n] + bias[n]`` by cublasSgemm (exact FP32) and a bias kernel."""
    xa, xb, xbias = _floats(a, m * k, "a"), _floats(b, k * n, "b"), _floats(bias, n, "bias")
    out = array("f", bytes(4 * m * n))
    _check(_lib().cld_gemm_bias(m, n, k, xa.buffer_info()[0], xb.buffer_info()[0], xbias.buffer_info()[0], out.buffer_info()[0]))
    return out.tolist()


def conv2d(x: Sequence[float], w: Sequence[float], x_shape: Sequence[int], w_shape: Sequence[int],
           pad: int = 0) -> tuple[list[float], tuple[int, int, int, int]]:
    """cudnnConvolutionForward (cross-correlation, stride 1, FMA math) of NCHW ``x`` with KCRS ``w``."""
    n, c, h, wd = x_shape
    k, c2, r, s = w_shape
    if c != c2:
        raise ValueError(f"x has {c} channels, w expects {c2}")
    xx, xw = _floats(x, n * c * h * wd, "x"), _floats(w, k * c * r * s, "w")
    oh, ow = h + 2 * pad - r + 1, wd + 2 * pad - s + 1
    out = array("f", bytes(4 * n * k * max(oh, 0) * max(ow, 0)))
    shape = (ctypes.c_int * 4)()
    _check(_lib().cld_conv2d(n, c, h, wd, k, r, s, pad, xx.buffer_info()[0], xw.buffer_info()[0], out.buffer_info()[0],
                             ctypes.addressof(shape)))
    return out.tolist(), (shape[0], shape[1], shape[2], shape[3])
