"""Where each DT_NEEDED library would come from, and the pip pins for the build's CUDA."""

from __future__ import annotations

from wheelforge.binaries.relocate import RelocationReport, classify, pip_lib_for, requirement_for
from wheelforge.build.deps import cuda_from_label, cuda_from_requires_dist, parse_pin

FILES = ["pkg/_C.so", "pkg/lib/libhelper.so", "pkg/lib/libother.so"]


def test_classify_every_source() -> None:
    needs = classify("pkg/_C.so", ["libhelper.so", "libother.so", "libc.so.6", "libstdc++.so.6", "libcuda.so.1",
                                   "libcudart.so.13", "libc10.so", "libweird.so.3"],
                     ["$ORIGIN/lib"], FILES, "13.0")
    got = {n.soname: (n.source, n.detail, n.rpath) for n in needs}
    assert got["libhelper.so"] == ("wheel", "pkg/lib/libhelper.so", "")
    assert got["libc.so.6"][0] == got["libstdc++.so.6"][0] == "system"
    assert got["libcuda.so.1"][0] == "driver"
    assert got["libcudart.so.13"] == ("pip", "nvidia-cuda-runtime==13.0.*", "$ORIGIN/../nvidia/cu13/lib")
    assert got["libc10.so"] == ("python-dep", "torch", "")
    assert got["libweird.so.3"][0] == "unknown"


def test_unreachable_in_wheel_library_gets_an_origin_rpath() -> None:
    (need,) = classify("pkg/_C.so", ["libhelper.so"], [], FILES, "12.8")
    assert (need.source, need.rpath) == ("wheel-unreachable", "$ORIGIN/lib")
    report = RelocationReport([need])
    assert report.fixes == {"pkg/_C.so": ["$ORIGIN/lib"]} and report.requirements == []


def test_cuda12_names_and_folders_like_pytorch() -> None:
    lib = pip_lib_for("libcublasLt.so.12", "12.8")
    assert (lib.package, lib.libdir) == ("nvidia-cublas-cu12", "nvidia/cublas/lib")
    assert requirement_for(lib, "12.8") == "nvidia-cublas-cu12"  # cuBLAS keeps its own version line: only the -cu12 name binds it
    (need,) = classify("torch/lib/libtorch_cuda.so", ["libcudnn.so.9"], [], [], "12.8")
    assert need.detail == "nvidia-cudnn-cu12" and need.rpath == "$ORIGIN/../../nvidia/cudnn/lib"


def test_pin_and_cuda_resolution_helpers() -> None:
    assert parse_pin("torch==2.15.0") == ("torch", "2.15.0")
    assert cuda_from_label("2.11.0+cu130") == "13.0" and cuda_from_label("2.10.0+cu128.sm120") == "12.8"
    assert cuda_from_label("2.15.0") is None
    assert cuda_from_requires_dist(["filelock", "nvidia-cuda-runtime-cu12==12.8.90; platform_system == 'Linux'"]) == "12.8"
    assert cuda_from_requires_dist(["nvidia-cuda-runtime==13.2.51; platform_system == 'Linux'"]) == "13.2"
    assert cuda_from_requires_dist(["numpy"]) is None


def test_cuda13_layout_cudnn_keeps_its_folder_and_suffix() -> None:
    needs = classify("pkg/_C.so", ["libcublas.so.13", "libcublasLt.so.13", "libcudnn.so.9", "libnccl.so.2",
                                   "libcusparseLt.so.0", "libnvshmem_host.so.3"], [], [], "13.0")
    got = {n.soname: (n.detail, n.rpath) for n in needs}
    assert got["libcublas.so.13"] == ("nvidia-cublas", "$ORIGIN/../nvidia/cu13/lib")
    assert got["libcublasLt.so.13"] == ("nvidia-cublas", "$ORIGIN/../nvidia/cu13/lib")
    assert got["libcudnn.so.9"] == ("nvidia-cudnn-cu13", "$ORIGIN/../nvidia/cudnn/lib")
    assert got["libnccl.so.2"] == ("nvidia-nccl-cu13", "$ORIGIN/../nvidia/nccl/lib")
    assert got["libcusparseLt.so.0"] == ("nvidia-cusparselt-cu13", "$ORIGIN/../nvidia/cusparselt/lib")
    assert got["libnvshmem_host.so.3"] == ("nvidia-nvshmem-cu13", "$ORIGIN/../nvidia/nvshmem/lib")
    report = RelocationReport(needs)
    assert report.fixes == {"pkg/_C.so": ["$ORIGIN/../nvidia/cu13/lib", "$ORIGIN/../nvidia/cudnn/lib",
                                          "$ORIGIN/../nvidia/nccl/lib", "$ORIGIN/../nvidia/cusparselt/lib",
                                          "$ORIGIN/../nvidia/nvshmem/lib"]}


def test_torch_layout_cuda12_rpaths_match_the_official_wheels() -> None:
    # torch/lib/*.so sit two folders below site-packages: $ORIGIN/../../nvidia/<lib>/lib, as
    # .ci/manywheel/repair_wheel.py cuda_rpaths() writes them for CUDA 12 (pytorch/pytorch)
    needs = classify("torch/lib/libtorch_cuda.so", ["libcudart.so.12", "libcusparseLt.so.0", "libnvToolsExt.so.1"],
                     [], [], "12.8")
    assert [n.rpath for n in needs] == ["$ORIGIN/../../nvidia/cuda_runtime/lib", "$ORIGIN/../../nvidia/cusparselt/lib",
                                        "$ORIGIN/../../nvidia/nvtx/lib"]


def test_already_reachable_pip_folder_needs_no_rpath() -> None:
    (need,) = classify("pkg/_C.so", ["libcudnn.so.9"], ["$ORIGIN/../nvidia/cudnn/lib"], [], "13.0")
    assert (need.source, need.detail, need.rpath) == ("pip", "nvidia-cudnn-cu13", "")
    assert RelocationReport([need]).fixes == {}


def test_with_versions_pins_what_the_build_env_had() -> None:
    needs = classify("pkg/_C.so", ["libcublas.so.13", "libcudnn.so.9", "libcudart.so.13"], [], [], "13.0")
    pinned = RelocationReport(needs).with_versions({"nvidia-cublas": "13.1.0.3", "NVIDIA_cudnn_cu13": "9.26.0.51"})
    assert pinned.requirements == ["nvidia-cublas==13.1.0.3", "nvidia-cuda-runtime==13.0.*", "nvidia-cudnn-cu13==9.26.0.51"]
    assert pinned.fixes == RelocationReport(needs).fixes  # RPATHs unchanged


def test_fix_adds_no_requirement_the_metadata_already_declares(tmp_path) -> None:
    import zipfile

    from wheelforge.binaries.relocate import _undeclared

    wheel = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("pkg-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: pkg\nVersion: 1.0\n"
                    "Requires-Dist: nvidia-cudnn-cu12==9.26.0.51; platform_system == \"Linux\"\n"
                    "Requires-Dist: nvidia-nccl-cu12; extra == \"dist\"\n\n")
    assert _undeclared(wheel, ["nvidia-cudnn-cu12==9.26.0.51", "nvidia-nccl-cu12==2.30.7"]) == ["nvidia-nccl-cu12==2.30.7"]


def test_analyze_reads_executables_too(tmp_path) -> None:
    """A CMake project's programs (<package>/bin/*, mode 755) are checked like its libraries; a non-executable ELF is not."""
    import shutil
    import zipfile

    from wheelforge.binaries.relocate import analyze

    elf = open(shutil.which("true"), "rb").read()
    wheel = tmp_path / "demo-1.0-py3-none-linux_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, mode in (("pkg/bin/true", 0o755), ("pkg/data/true-copy", 0o644)):
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o100000 | mode) << 16
            zf.writestr(info, elf)
    needs = analyze(wheel, "12.8").needs
    assert {n.file for n in needs} == {"pkg/bin/true"}
    assert any(n.soname == "libc.so.6" and n.source == "system" for n in needs)
