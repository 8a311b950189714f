"""Where each DT_NEEDED library would come from, and the pip pins for the build's CUDA."""

from __future__ import annotations

from wheelforge.pipeline import cuda_from_label, cuda_from_requires_dist, parse_pin
from wheelforge.relocate import RelocationReport, classify, pip_lib_for, requirement_for

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


def test_analyze_reads_executables_too(tmp_path) -> None:
    """A CMake project's programs (<package>/bin/*, mode 755) are checked like its libraries; a non-executable ELF is not."""
    import shutil
    import zipfile

    from wheelforge.relocate import analyze

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
