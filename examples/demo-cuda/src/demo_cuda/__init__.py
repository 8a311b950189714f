"""A vector add on the GPU, through ctypes: ``add(a, b)`` and ``arch_info()``."""

from __future__ import annotations

import ctypes
import os
from array import array
from collections.abc import Sequence

from . import _build_info

__all__ = ["add", "arch_info", "device_count"]

_LIB: ctypes.CDLL | None = None


def _lib() -> ctypes.CDLL:
    # Loaded lazily so arch_info() works where no CUDA driver is installed.
    global _LIB
    if _LIB is None:
        lib = ctypes.CDLL(os.path.join(os.path.dirname(__file__), "libdemo_cuda_kernels.so"))
        lib.demo_cuda_add.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
        lib.demo_cuda_add.restype = ctypes.c_int
        lib.demo_cuda_error_name.argtypes = [ctypes.c_int]
        lib.demo_cuda_error_name.restype = ctypes.c_char_p
        lib.demo_cuda_device_count.restype = ctypes.c_int
        _LIB = lib
    return _LIB


def arch_info() -> dict[str, object]:
    """What the kernel library was compiled for; needs no GPU."""
    archs = [a for a in _build_info.CUDA_ARCHITECTURES.split(";") if a]
    return {"cuda_architectures": archs, "cuda_version": _build_info.CUDA_VERSION,
            "library": os.path.join(os.path.dirname(__file__), "libdemo_cuda_kernels.so")}


def device_count() -> int:
    """Visible CUDA devices (0 without a driver or GPU)."""
    try:
        return int(_lib().demo_cuda_device_count())
    except OSError:
        return 0


def add(a: Sequence[float], b: Sequence[float]) -> list[float]:
    """Element-wise ``a + b`` computed by the CUDA kernel (float32)."""
    if len(a) != len(b):
        raise ValueError(f"length mismatch: {len(a)} != {len(b)}")
    xa, xb = array("f", a), array("f", b)
    out = array("f", bytes(4 * len(xa)))
    if len(xa) == 0:
        return []
    err = _lib().demo_cuda_add(xa.buffer_info()[0], xb.buffer_info()[0], out.buffer_info()[0], len(xa))
    if err:
        raise RuntimeError(f"CUDA error {err}: {_lib().demo_cuda_error_name(err).decode()}")
    return out.tolist()
