"""NVIDIA's pip wheels by CUDA major: names, folders, files; what [build] nvidia expands into."""

from __future__ import annotations

import pytest

from wheelforge.model.errors import PlanError
from wheelforge.model.nvidia_wheels import (
    LIBS,
    expand,
    nvidia_wheel,
    placeholder_names,
    requirement,
    requirement_name,
    runtime_requirements,
    versions_for,
    wheel_for_soname,
)

# (library, CUDA) -> (distribution, main library path in site-packages); each read in the wheel's file
# list on PyPI (the versions in wheelforge/nvidia_wheels.py's comments).
LAYOUT = [
    ("cublas", "12.8", "nvidia-cublas-cu12", "nvidia/cublas/lib/libcublas.so.12"),
    ("cublas", "13.0", "nvidia-cublas", "nvidia/cu13/lib/libcublas.so.13"),
    ("cudnn", "12.8", "nvidia-cudnn-cu12", "nvidia/cudnn/lib/libcudnn.so.9"),
    ("cudnn", "13.0", "nvidia-cudnn-cu13", "nvidia/cudnn/lib/libcudnn.so.9"),
    ("nccl", "12.8", "nvidia-nccl-cu12", "nvidia/nccl/lib/libnccl.so.2"),
    ("nccl", "13.2", "nvidia-nccl-cu13", "nvidia/nccl/lib/libnccl.so.2"),
    ("cusparselt", "12.8", "nvidia-cusparselt-cu12", "nvidia/cusparselt/lib/libcusparseLt.so.0"),
    ("cusparselt", "13.0", "nvidia-cusparselt-cu13", "nvidia/cusparselt/lib/libcusparseLt.so.0"),
    ("nvshmem", "12.8", "nvidia-nvshmem-cu12", "nvidia/nvshmem/lib/libnvshmem_host.so.3"),
    ("nvshmem", "13.0", "nvidia-nvshmem-cu13", "nvidia/nvshmem/lib/libnvshmem_host.so.3"),
    ("cuda_runtime", "12.8", "nvidia-cuda-runtime-cu12", "nvidia/cuda_runtime/lib/libcudart.so.12"),
    ("cuda_runtime", "13.0", "nvidia-cuda-runtime", "nvidia/cu13/lib/libcudart.so.13"),
    ("cusolver", "12.8", "nvidia-cusolver-cu12", "nvidia/cusolver/lib/libcusolver.so.11"),
    ("cusolver", "13.0", "nvidia-cusolver", "nvidia/cu13/lib/libcusolver.so.12"),
    ("cufile", "12.8", "nvidia-cufile-cu12", "nvidia/cufile/lib/libcufile.so.0"),
    ("cufile", "13.0", "nvidia-cufile", "nvidia/cu13/lib/libcufile.so.0"),
    ("cudss", "12.8", "nvidia-cudss-cu12", "nvidia/cu12/lib/libcudss.so.0"),
    ("cudss", "13.0", "nvidia-cudss-cu13", "nvidia/cu13/lib/libcudss.so.0"),
]


@pytest.mark.parametrize("key,cuda,dist,library", LAYOUT, ids=[f"{k}-{c}" for k, c, _, _ in LAYOUT])
def test_layout_per_cuda_major(key: str, cuda: str, dist: str, library: str) -> None:
    wheel = nvidia_wheel(key, cuda)
    assert (wheel.distribution, wheel.library) == (dist, library)
    assert wheel.include == library.rsplit("/lib/", 1)[0] + "/include"


def test_every_soname_maps_back_to_its_library() -> None:
    for lib in LIBS.values():
        for major in (12, 13):
            wheel = wheel_for_soname(lib.files[major], f"{major}.0")
            assert wheel is not None and wheel.lib.key == lib.key, (lib.key, major)
    assert wheel_for_soname("libcudnn_engines_precompiled.so.9", "13.0").distribution == "nvidia-cudnn-cu13"
    assert wheel_for_soname("libcublasLt.so.12", "12.8").libdir == "nvidia/cublas/lib"
    assert wheel_for_soname("libfoo.so.1", "12.8") is None and wheel_for_soname("libcuda.so.1", "12.8") is None


def test_requirement_pins() -> None:
    assert requirement(nvidia_wheel("cudnn", "13.0"), "13.0", "9.26.0.51") == "nvidia-cudnn-cu13==9.26.0.51"
    assert requirement(nvidia_wheel("cuda_runtime", "12.8"), "12.8") == "nvidia-cuda-runtime-cu12==12.8.*"
    assert requirement(nvidia_wheel("cublas", "13.0"), "13.0") == "nvidia-cublas"  # own version line: no minor pin
    assert requirement_name("nvidia-cudnn-cu12==9.26.0.51; platform_system == 'Linux'") == "nvidia-cudnn-cu12"


def test_expand_chooses_the_wheels_of_the_target_major() -> None:
    pins = {"cu12": {"cublas": "12.8.4.1", "cudnn": "9.26.0.51"}, "cu13": {"cublas": "13.1.0.3", "cudnn": "9.26.0.51"}}
    site = "/b/env/lib/python3.11/site-packages"
    cu13 = expand(["cublas", "cudnn"], "13.0", versions_for(pins, "13.0"), site)
    assert cu13.requirements == ("nvidia-cublas==13.1.0.3", "nvidia-cudnn-cu13==9.26.0.51")
    assert cu13.placeholders["nvidia_cublas_include"] == f"{site}/nvidia/cu13/include"
    assert cu13.placeholders["nvidia_cublas_library"] == f"{site}/nvidia/cu13/lib/libcublas.so.13"
    assert cu13.placeholders["nvidia_cudnn_library"] == f"{site}/nvidia/cudnn/lib/libcudnn.so.9"
    assert cu13.versions == {"nvidia-cublas": "13.1.0.3", "nvidia-cudnn-cu13": "9.26.0.51"}
    cu12 = expand(["cublas", "cudnn"], "12.8", versions_for(pins, "12.8"), site)
    assert cu12.requirements == ("nvidia-cublas-cu12==12.8.4.1", "nvidia-cudnn-cu12==9.26.0.51")
    assert cu12.placeholders["nvidia_cublas_lib"] == f"{site}/nvidia/cublas/lib"
    assert cu12.placeholders["build_env_site"] == site
    assert set(cu12.placeholders) == placeholder_names(["cublas", "cudnn"])


def test_expand_without_a_site_gives_requirements_only() -> None:
    out = expand(["nccl"], "12.8", {}, None)
    assert out.requirements == ("nvidia-nccl-cu12",) and out.placeholders == {}


def test_runtime_requirements_cover_every_pin() -> None:
    pins = {"cudnn": "9.26.0.51", "cuda_runtime": "12.8.90"}
    assert runtime_requirements(pins, "12.8") == ["nvidia-cuda-runtime-cu12==12.8.90", "nvidia-cudnn-cu12==9.26.0.51"]


@pytest.mark.parametrize("call,error", [
    (lambda: nvidia_wheel("cudart", "12.8"), "plan.nvidia-unknown"),
    (lambda: nvidia_wheel("cublas", "11.8"), "plan.nvidia-major"),
    (lambda: expand(["cublas"], "12.8", {"magma": "2.9"}, None), "plan.nvidia-unknown"),
    (lambda: versions_for({}, "twelve"), "plan.cuda-version"),
])
def test_errors_name_the_fix(call, error: str) -> None:
    with pytest.raises(PlanError) as exc:
        call()
    assert exc.value.id == error and exc.value.hint
