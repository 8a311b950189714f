"""NVIDIA's CUDA libraries as pip wheels: which distribution, which folder, which file, per CUDA major.

A CUDA wheel that needs only the driver on the target machine takes cuBLAS, cuDNN, NCCL, ...
from NVIDIA's wheels on PyPI, the way PyTorch's own wheels do: it is compiled against their
headers and libraries in the build environment, requires them (``Requires-Dist``) and finds
them through an ``$ORIGIN``-relative RPATH.  This module is the one table of where those
wheels put things, used by the planner (build requirements, placeholders such as
``{nvidia_cudnn_include}``) and by ``wheelforge.relocate`` (``DT_NEEDED`` -> distribution).

Two layouts, read from the wheels' file lists on PyPI (2026-12; docs/pytorch-family.md lists
each wheel read):

* CUDA 12: ``nvidia-<lib>-cu12`` installs ``nvidia/<folder>/{include,lib}``
  (``nvidia-cublas-cu12`` 12.8.4.1: ``nvidia/cublas/lib/libcublas.so.12``).
* CUDA 13: the toolkit's own libraries drop the suffix and share one folder,
  ``nvidia/cu13/{include,lib}`` (``nvidia-cublas`` 13.1.0.3: ``nvidia/cu13/lib/libcublas.so.13``);
  cuDNN, NCCL, cuSPARSELt and NVSHMEM keep ``-cu13`` and their own folder
  (``nvidia-cudnn-cu13`` 9.26.0.51: ``nvidia/cudnn/lib/libcudnn.so.9``).  cuDSS keeps the
  suffix but uses the shared folder (``nvidia-cudss-cu12``: ``nvidia/cu12/lib``).

The wheels hold only the versioned file (``libcudnn.so.9``), no ``libcudnn.so`` link, so a
build must be given the file's full path (CMake's ``find_library(cudnn)`` finds nothing).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from wheelforge.model.errors import PlanError

#: CUDA majors whose wheel layout is known (CUDA 11's ``-cu11`` wheels are not used by any recipe).
MAJORS = (12, 13)


@dataclass(frozen=True)
class NvidiaLib:
    """One library family as NVIDIA ships it on PyPI."""

    key: str  # recipe spelling: "cublas", "cudnn", "cuda_runtime"
    stem: str  # distribution name without the CUDA suffix: "nvidia-cublas"
    folder: str  # its folder under nvidia/ in the CUDA 12 layout
    files: Mapping[int, str]  # CUDA major -> the main library's file name (= its SONAME)
    sonames: tuple[str, ...]  # SONAME stems (before ".so") the wheel provides
    own_folder: bool = False  # keeps nvidia/<folder> and the -cuXX suffix on CUDA 13 as well
    shared_folder_suffix: bool = False  # keeps -cuXX but installs into nvidia/cuXX (cuDSS)
    tracks_cuda: bool = False  # its version is the toolkit's (12.8.x for CUDA 12.8)


def _lib(key: str, stem: str, folder: str, files: Mapping[int, str], sonames: Iterable[str], **kw: bool) -> NvidiaLib:
    return NvidiaLib(key, stem, folder, dict(files), tuple(sonames), **kw)


#: Every file name below was read in the wheel named in the comment (PyPI, manylinux x86_64).
LIBS: Mapping[str, NvidiaLib] = {lib.key: lib for lib in (
    # nvidia-cuda-runtime-cu12 12.8.90 / nvidia-cuda-runtime 13.0.96
    _lib("cuda_runtime", "nvidia-cuda-runtime", "cuda_runtime", {12: "libcudart.so.12", 13: "libcudart.so.13"},
         ["libcudart"], tracks_cuda=True),
    # nvidia-cuda-nvrtc-cu12 12.8.93 / nvidia-cuda-nvrtc 13.0.88 (libnvrtc-builtins.so.12.8 / .so.13.0 beside it)
    _lib("nvrtc", "nvidia-cuda-nvrtc", "cuda_nvrtc", {12: "libnvrtc.so.12", 13: "libnvrtc.so.13"},
         ["libnvrtc", "libnvrtc-builtins", "libnvrtc.alt", "libnvrtc-builtins.alt"], tracks_cuda=True),
    # nvidia-cuda-cupti-cu12 12.8.90 / nvidia-cuda-cupti 13.0.85
    _lib("cupti", "nvidia-cuda-cupti", "cuda_cupti", {12: "libcupti.so.12", 13: "libcupti.so.13"},
         ["libcupti", "libnvperf_host", "libnvperf_target", "libcheckpoint", "libpcsamplingutil"], tracks_cuda=True),
    # nvidia-nvjitlink-cu12 12.8.93 / nvidia-nvjitlink 13.0.88
    _lib("nvjitlink", "nvidia-nvjitlink", "nvjitlink", {12: "libnvJitLink.so.12", 13: "libnvJitLink.so.13"},
         ["libnvJitLink"], tracks_cuda=True),
    # nvidia-nvtx-cu12 12.8.90 (libnvToolsExt.so.1) / nvidia-nvtx 13.0.85 (only libnvtx3interop.so.1)
    _lib("nvtx", "nvidia-nvtx", "nvtx", {12: "libnvToolsExt.so.1", 13: "libnvtx3interop.so.1"},
         ["libnvToolsExt", "libnvtx3interop"], tracks_cuda=True),
    # cuBLAS, cuFFT, cuRAND, cuSOLVER, cuSPARSE, cuFile, nvJPEG have version lines of their own
    # (cuBLAS 13.1.0.3 ships with CUDA 13.0 update 2: cuda-toolkit 13.0.2's METADATA).
    # nvidia-cublas-cu12 12.8.4.1 / nvidia-cublas 13.1.0.3
    _lib("cublas", "nvidia-cublas", "cublas", {12: "libcublas.so.12", 13: "libcublas.so.13"},
         ["libcublas", "libcublasLt", "libnvblas"]),
    # nvidia-cufft-cu12 11.3.3.83 / nvidia-cufft 12.0.0.61
    _lib("cufft", "nvidia-cufft", "cufft", {12: "libcufft.so.11", 13: "libcufft.so.12"}, ["libcufft", "libcufftw"]),
    # nvidia-curand-cu12 10.3.9.90 / nvidia-curand 10.4.0.35
    _lib("curand", "nvidia-curand", "curand", {12: "libcurand.so.10", 13: "libcurand.so.10"}, ["libcurand"]),
    # nvidia-cusolver-cu12 11.7.3.90 / nvidia-cusolver 12.0.4.66
    _lib("cusolver", "nvidia-cusolver", "cusolver", {12: "libcusolver.so.11", 13: "libcusolver.so.12"},
         ["libcusolver", "libcusolverMg"]),
    # nvidia-cusparse-cu12 12.5.8.93 / nvidia-cusparse 12.6.3.3
    _lib("cusparse", "nvidia-cusparse", "cusparse", {12: "libcusparse.so.12", 13: "libcusparse.so.12"}, ["libcusparse"]),
    # nvidia-cufile-cu12 1.13.1.3 / nvidia-cufile 1.15.1.6
    _lib("cufile", "nvidia-cufile", "cufile", {12: "libcufile.so.0", 13: "libcufile.so.0"}, ["libcufile", "libcufile_rdma"]),
    # nvidia-nvjpeg-cu12 12.3.5.92 / nvidia-nvjpeg 13.0.1.86
    _lib("nvjpeg", "nvidia-nvjpeg", "nvjpeg", {12: "libnvjpeg.so.12", 13: "libnvjpeg.so.13"}, ["libnvjpeg"]),
    # nvidia-cudnn-cu12 9.26.0.51 / nvidia-cudnn-cu13 9.26.0.51: nvidia/cudnn/lib on both
    _lib("cudnn", "nvidia-cudnn", "cudnn", {12: "libcudnn.so.9", 13: "libcudnn.so.9"},
         ["libcudnn", "libcudnn_adv", "libcudnn_cnn", "libcudnn_engines_precompiled", "libcudnn_engines_runtime_compiled",
          "libcudnn_engines_tensor_ir", "libcudnn_ext", "libcudnn_graph", "libcudnn_heuristic", "libcudnn_ops"],
         own_folder=True),
    # nvidia-nccl-cu12 2.30.7 / nvidia-nccl-cu13 2.30.7
    _lib("nccl", "nvidia-nccl", "nccl", {12: "libnccl.so.2", 13: "libnccl.so.2"}, ["libnccl"], own_folder=True),
    # nvidia-cusparselt-cu12 0.8.1 / nvidia-cusparselt-cu13 0.8.1
    _lib("cusparselt", "nvidia-cusparselt", "cusparselt", {12: "libcusparseLt.so.0", 13: "libcusparseLt.so.0"},
         ["libcusparseLt"], own_folder=True),
    # nvidia-nvshmem-cu12 3.7.2 / nvidia-nvshmem-cu13 3.7.2 (bootstrap/transport plugins beside it)
    _lib("nvshmem", "nvidia-nvshmem", "nvshmem", {12: "libnvshmem_host.so.3", 13: "libnvshmem_host.so.3"},
         ["libnvshmem_host"], own_folder=True),
    # nvidia-cudss-cu12 0.7.1.4: nvidia/cu12/lib; nvidia-cudss-cu13 0.7.1.4: nvidia/cu13/lib
    _lib("cudss", "nvidia-cudss", "cudss", {12: "libcudss.so.0", 13: "libcudss.so.0"},
         ["libcudss", "libcudss_commlayer_nccl", "libcudss_commlayer_openmpi", "libcudss_mtlayer_gomp"],
         shared_folder_suffix=True),
)}

_BY_SONAME: Mapping[str, NvidiaLib] = {stem: lib for lib in LIBS.values() for stem in lib.sonames}
_PLACEHOLDER_PARTS = ("root", "include", "lib", "library")


def _error(key: str) -> PlanError:
    return PlanError("plan.nvidia-unknown", f"no NVIDIA wheel is known for library {key!r}",
                     f"use one of: {', '.join(sorted(LIBS))} (wheelforge.nvidia_wheels.LIBS)")


def cuda_major(cuda_version: str) -> int:
    try:
        major = Version(cuda_version).major
    except InvalidVersion:
        raise PlanError("plan.cuda-version", f"{cuda_version!r} is not a CUDA version", "write it as 12.8 or 13.0") from None
    if major not in MAJORS:
        raise PlanError("plan.nvidia-major", f"NVIDIA's pip wheels for CUDA {major} are not mapped (CUDA {cuda_version})",
                        f"use a CUDA {' or '.join(map(str, MAJORS))} toolkit")
    return major


@dataclass(frozen=True)
class NvidiaWheel:
    """One library's wheel for one CUDA major; paths are relative to site-packages."""

    lib: NvidiaLib
    major: int
    distribution: str
    root: str  # "nvidia/cublas" (CUDA 12) or "nvidia/cu13" (CUDA 13)

    @property
    def include(self) -> str:
        return f"{self.root}/include"

    @property
    def libdir(self) -> str:
        return f"{self.root}/lib"

    @property
    def library(self) -> str:
        return f"{self.libdir}/{self.lib.files[self.major]}"


def nvidia_wheel(key: str, cuda_version: str) -> NvidiaWheel:
    """The wheel that provides library ``key`` for the CUDA of ``cuda_version``."""
    lib = LIBS.get(key)
    if lib is None:
        raise _error(key)
    major = cuda_major(cuda_version)
    suffixed = major <= 12 or lib.own_folder or lib.shared_folder_suffix
    dist = f"{lib.stem}-cu{major}" if suffixed else lib.stem
    root = f"nvidia/{lib.folder}" if (major <= 12 and not lib.shared_folder_suffix) or lib.own_folder else f"nvidia/cu{major}"
    return NvidiaWheel(lib, major, dist, root)


def wheel_for_soname(soname: str, cuda_version: str) -> NvidiaWheel | None:
    """``libcublasLt.so.13`` -> the ``nvidia-cublas`` wheel; None when no NVIDIA wheel ships it."""
    stem = soname.split(".so", 1)[0]
    lib = _BY_SONAME.get(stem)
    return None if lib is None else nvidia_wheel(lib.key, cuda_version)


def requirement(wheel: NvidiaWheel, cuda_version: str, version: str | None = None) -> str:
    """``==<version>`` when one is given; toolkit-versioned libraries follow the CUDA minor; else the bare name
    (the ``-cuXX`` name, or for CUDA 13 the major in the library's SONAME, binds the major)."""
    if version:
        return f"{wheel.distribution}=={version}"
    if wheel.lib.tracks_cuda:
        v = Version(cuda_version)
        return f"{wheel.distribution}=={v.major}.{v.minor}.*"
    return wheel.distribution


def versions_for(pins: Mapping[str, Mapping[str, str]], cuda_version: str) -> dict[str, str]:
    """The recipe's ``[nvidia_versions.cuXX]`` table for this CUDA major, keyed by library."""
    return dict(pins.get(f"cu{cuda_major(cuda_version)}", {}))


def placeholder_names(keys: Iterable[str]) -> set[str]:
    """Placeholders that ``[build] nvidia = [...]`` makes available to ``[env]``."""
    names = {"build_env_site"}
    for key in keys:
        names.update(f"nvidia_{key}_{part}" for part in _PLACEHOLDER_PARTS)
    return names


@dataclass(frozen=True)
class NvidiaBuild:
    """What ``[build] nvidia`` adds to a plan."""

    requirements: tuple[str, ...]  # into the build env, next to [build] requires
    placeholders: Mapping[str, str]  # for the [env] template
    versions: Mapping[str, str] = field(default_factory=dict)  # distribution -> pinned version (Requires-Dist)

    def to_json(self) -> dict[str, object]:
        return {"requirements": list(self.requirements), "versions": dict(sorted(self.versions.items()))}


def expand(keys: Sequence[str], cuda_version: str, versions: Mapping[str, str], site_packages: str | None) -> NvidiaBuild:
    """Pure: ``[build] nvidia`` + ``[nvidia_versions.cuXX]`` -> build requirements, placeholders, runtime pins.

    ``versions`` maps library keys to exact versions (the recipe's table for this CUDA major);
    a library without one is installed unpinned (toolkit libraries: ``==<major>.<minor>.*``).
    ``site_packages`` is where the build env's packages land; without it (planning a
    ``--no-isolation`` build before its interpreter was asked) the path placeholders stay
    unresolved, which the planner reports.
    """
    unknown = sorted(k for k in (*keys, *versions) if k not in LIBS)
    if unknown:
        raise _error(unknown[0])
    reqs: list[str] = []
    values: dict[str, str] = {}
    if site_packages:
        values["build_env_site"] = site_packages
    for key in keys:
        wheel = nvidia_wheel(key, cuda_version)
        req = requirement(wheel, cuda_version, versions.get(key))
        if req not in reqs:
            reqs.append(req)
        if site_packages:
            base = site_packages.rstrip("/")
            values[f"nvidia_{key}_root"] = f"{base}/{wheel.root}"
            values[f"nvidia_{key}_include"] = f"{base}/{wheel.include}"
            values[f"nvidia_{key}_lib"] = f"{base}/{wheel.libdir}"
            values[f"nvidia_{key}_library"] = f"{base}/{wheel.library}"
    pins = {nvidia_wheel(k, cuda_version).distribution: v for k, v in versions.items()}
    return NvidiaBuild(tuple(reqs), values, pins)


def runtime_requirements(versions: Mapping[str, str], cuda_version: str) -> list[str]:
    """``dist==version`` for every library pinned for this CUDA major (a wheel's full ``Requires-Dist`` set)."""
    return sorted(requirement(nvidia_wheel(k, cuda_version), cuda_version, v) for k, v in versions.items())


_REQ_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def requirement_name(req: str) -> str:
    m = _REQ_NAME.match(req)
    return canonicalize_name(m.group(1)) if m else ""
