"""doctor's pure parts: CUDA's kernel compatibility rules, the driver table, and the evidence readers."""

from __future__ import annotations

import pytest

from wheelforge.binaries.fatbin import FatbinEntry
from wheelforge.model.errors import ConfigError
from wheelforge.verify.doctor import (
    DRIVER_TABLE,
    Capability,
    Driver,
    Package,
    Problem,
    TargetGpu,
    cuda_for_driver,
    cuda_from_cpp_lib,
    cuda_from_label,
    cuda_from_name,
    driver_check,
    fixes_for,
    kernel_verdict,
    loadable,
    parse_gpu_archs,
    ptx_jits_to,
    ptx_newer_than_driver,
    sass_runs_on,
    torch_matches,
    torch_pin,
    worst,
)


def entry(kind: str, arch: str) -> FatbinEntry:
    """``("sass", "90a")`` -> the entry the fatbin reader returns for an sm_90a cubin."""
    num = arch.rstrip("af")
    return FatbinEntry(kind=kind, sm=int(num), suffix=arch[len(num):], compressed=False, debug=False, size=1, offset=0)


def cc(text: str) -> Capability:
    return Capability.parse(text)


@pytest.mark.parametrize(("arch", "gpu", "runs"), [
    ("86", "8.9", True),    # same major, minor 6 <= 9
    ("80", "8.6", True),
    ("86", "8.0", False),   # a newer minor never runs on an older one
    ("80", "9.0", False),   # never across majors
    ("90", "10.0", False),
    ("100", "12.0", False),
    ("120", "12.1", True),
    ("90a", "9.0", True),   # a: exactly that CC
    ("100a", "10.3", False),
    ("120a", "12.1", False),
    ("100f", "10.0", True),  # f: the family, minor at least the target's
    ("100f", "10.3", True),
    ("103f", "10.0", False),
    ("100f", "11.0", False),
    ("100f", "12.0", False),
    ("120f", "12.1", True),
])
def test_sass_rules(arch: str, gpu: str, runs: bool) -> None:
    assert sass_runs_on(entry("sass", arch), cc(gpu)) is runs
    assert not ptx_jits_to(entry("sass", arch), cc(gpu))  # a cubin is never JIT input


@pytest.mark.parametrize(("arch", "gpu", "jits"), [
    ("80", "12.0", True),   # plain PTX: any CC >= its own
    ("80", "8.0", True),
    ("90", "8.9", False),
    ("120", "12.0", True),
    ("120", "10.0", False),
    ("90a", "9.0", True),   # a: exactly that CC
    ("90a", "10.0", False),
    ("100f", "10.3", True),  # f: within the family
    ("100f", "12.0", False),
])
def test_ptx_rules(arch: str, gpu: str, jits: bool) -> None:
    assert ptx_jits_to(entry("ptx", arch), cc(gpu)) is jits
    assert not sass_runs_on(entry("ptx", arch), cc(gpu))


def test_binary_verdict_prefers_sass_then_ptx() -> None:
    # what PyPI's xformers 0.0.35 _C.so carries (measured in tests/integration/test_doctor_envs.py)
    xformers = [entry("sass", "75"), entry("sass", "80"), entry("sass", "90a"), entry("ptx", "80")]
    assert kernel_verdict(xformers, cc("9.0")) == "native"
    assert kernel_verdict(xformers, cc("8.6")) == "native"
    assert kernel_verdict(xformers, cc("12.0")) == "ptx-jit"
    assert kernel_verdict(xformers, cc("10.0")) == "ptx-jit"
    assert kernel_verdict(xformers, cc("7.0")) == "no-kernel"
    assert kernel_verdict([], cc("9.0")) == "no-kernel"


def test_lto_ir_is_not_a_kernel() -> None:
    lto = [FatbinEntry(kind="lto-ir", sm=90, suffix="", compressed=False, debug=False, size=1, offset=0)]
    assert not loadable(lto)
    assert kernel_verdict(lto, cc("9.0")) == "no-kernel"
    assert loadable([entry("ptx", "90")])


def test_worst_orders_failures_first() -> None:
    assert worst(["native", "ptx-jit"]) == "ptx-jit"
    assert worst(["native", "torch-mismatch", "ptx-jit"]) == "torch-mismatch"
    assert worst(["host-only", "native"]) == "native"
    assert worst(["driver-too-old", "no-kernel"]) == "no-kernel"
    assert worst([]) is None


def test_driver_table_is_ordered_and_covers_12_0_to_13_2() -> None:
    cudas = [r.cuda for r in DRIVER_TABLE]
    assert cudas == ["12.0", "12.1", "12.2", "12.3", "12.4", "12.5", "12.6", "12.8", "12.9", "13.0", "13.1", "13.2"]
    keys = [tuple(int(x) for x in r.driver.split(".")) for r in DRIVER_TABLE]
    assert keys == sorted(keys)


@pytest.mark.parametrize(("driver", "cuda"), [
    ("580.65.06", "13.0"),   # CUDA 13.0.0's runfile driver
    ("580.65.05", "12.9"),
    ("580.95.05", "13.0"),
    ("590.44.01", "13.1"),
    ("595.45.04", "13.2"),
    ("610.43.02", "13.2"),   # newer than the table: its newest row
    ("575.51.03", "12.9"),
    ("570.124.06", "12.8"),  # numeric, not lexical: 570.124 > 570.86
    ("570.86.10", "12.8"),
    ("565.57.01", "12.6"),
    ("525.60.13", "12.0"),
    ("525.60.12", "12"),     # below the table's 12.0 row but in the R525 branch: CUDA 12.x, major only
    ("520.61.05", "11"),     # the 11.x branch (>= 450)
    ("470.57.02", "11"),
    ("440.33", None),
])
def test_cuda_for_driver(driver: str, cuda: str | None) -> None:
    assert cuda_for_driver(driver) == cuda


def test_bad_driver_spelling_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as exc:
        cuda_for_driver("latest")
    assert exc.value.id == "doctor.driver"


def test_driver_check_major_fails_minor_is_a_note() -> None:
    assert driver_check("13.0", "12.9")[0] == "driver-too-old"
    assert driver_check("13", "12.8")[0] == "driver-too-old"
    assert driver_check("12.8", "11")[0] == "driver-too-old"
    verdict, note = driver_check("13.2", "13.0")
    assert verdict is None and "minor version compatibility" in note
    assert driver_check("12.8", "13.0") == (None, "")
    assert driver_check(None, "13.0") == (None, "")
    assert driver_check("13.0", None) == (None, "")


def test_ptx_newer_than_driver() -> None:
    assert ptx_newer_than_driver("13.2", "13.0")
    assert not ptx_newer_than_driver("13.0", "13.0")
    assert not ptx_newer_than_driver("12.8", "13.0")
    assert not ptx_newer_than_driver("13", "13.0")  # a major alone cannot say


@pytest.mark.parametrize(("version", "cuda"), [
    ("2.11.0+cu130", "13.0"),
    ("0.26.0+cu128", "12.8"),
    ("0.1.0+cu130.sm90", "13.0"),
    ("2.8.3+cu12torch2.7cxx11abiTRUE", "12"),
    ("2.1.0+pt21cu118", "11.8"),
    ("2.11.0", None),
    ("1.0+cpu", None),
    ("1.0+cuda", None),
])
def test_cuda_from_label(version: str, cuda: str | None) -> None:
    assert cuda_from_label(version) == cuda


@pytest.mark.parametrize(("name", "version", "cuda"), [
    ("nvidia-cuda-runtime-cu12", "12.8.90", "12.8"),
    ("nvidia-cuda-runtime", "13.0.96", "13.0"),
    ("nvidia_nvjitlink", "13.5.37", "13.5"),
    ("cuda-toolkit", "13.0.2", "13.0"),
    ("nvidia-cudnn-cu13", "9.13.0.50", "13"),
    ("nvidia-cublas-cu12", "12.8.4.1", "12"),
    ("nvidia-cublas", "13.1.0.3", None),  # cuBLAS's own version, not CUDA's
    ("cupy-cuda12x", "13.6.0", "12"),
    ("cupy-cuda117", "10.6.0", "11.7"),
    ("jax-cuda13-plugin", "0.8.0", "13"),
    ("jax-cuda12-pjrt", "0.8.0", "12"),
    ("torch", "2.11.0", None),
    ("numpy", "2.0.0", None),
])
def test_cuda_from_name(name: str, version: str, cuda: str | None) -> None:
    found = cuda_from_name(name, version)
    assert (found[0] if found else None) == cuda


def test_cuda_from_xformers_cpp_lib() -> None:
    # the "version" table of PyPI's xformers 0.0.35 cpp_lib.json
    assert cuda_from_cpp_lib({"version": {"cuda": 1208, "hip": None, "torch": "2.10.0+cu128"}}) == "12.8"
    assert cuda_from_cpp_lib({"version": {"cuda": 1300}}) == "13.0"
    assert cuda_from_cpp_lib({"version": {"cuda": None}}) is None


LINUX = {"sys_platform": "linux", "platform_system": "Linux", "python_version": "3.12"}


def test_torch_pin_takes_exact_pins_only() -> None:
    assert torch_pin(["numpy", "torch==2.11.0"], LINUX) == "2.11.0"
    assert torch_pin(["torch (==2.0.0)"], LINUX) == "2.0.0"
    assert torch_pin(["torch>=2.10"], LINUX) is None
    assert torch_pin(["torch==2.*"], LINUX) is None
    assert torch_pin(['torch==2.1.0; extra == "cuda"'], LINUX) is None
    assert torch_pin(['torch==2.1.0; sys_platform == "win32"', "torch==2.2.0"], LINUX) == "2.2.0"
    assert torch_pin(["torchvision==0.26.0"], LINUX) is None


@pytest.mark.parametrize(("built", "installed", "ok"), [
    ("2.10.0+cu128", "2.11.0+cu130", False),
    ("2.11.0", "2.11.0+cu130", True),
    ("2.11.0+cu126", "2.11.0+cu128", True),   # same CUDA major
    ("2.11.0+cu128", "2.11.0+cu130", False),  # another CUDA major
    ("2.7", "2.7.1", True),
    ("2.7", "2.8.0", False),
    ("2.11.0", None, False),
])
def test_torch_matches(built: str, installed: str | None, ok: bool) -> None:
    assert torch_matches(built, installed)[0] is ok


@pytest.mark.parametrize(("built", "installed", "ok"), [
    ("2.10.0+cu128", "2.11.0+cu128", True),   # stable ABI: a later torch loads it
    ("2.10.0+cu128", "2.9.1+cu128", False),   # an older one does not
    ("2.10.0+cu128", "2.11.0+cu130", False),  # nor another CUDA major (it links libcudart.so.12)
])
def test_torch_matches_stable_abi(built: str, installed: str, ok: bool) -> None:
    assert torch_matches(built, installed, later_ok=True)[0] is ok


def test_gpu_archs_are_compute_capabilities() -> None:
    assert parse_gpu_archs("9.0;12.0") == ["9.0", "12.0"]
    assert parse_gpu_archs("sm_120") == ["12.0"]
    assert parse_gpu_archs(None) is None
    for bad in ("12.0a", "9.0+PTX"):
        with pytest.raises(ConfigError) as exc:
            parse_gpu_archs(bad)
        assert exc.value.id == "doctor.arch"


def _recipes() -> dict:
    from wheelforge.model.bundled import recipes_dir
    from wheelforge.model.recipe import all_recipes

    return {r.project: r for r in all_recipes([recipes_dir()]).values()}


def test_fix_for_a_torch_extension_builds_against_the_installed_torch() -> None:
    pkg = Package(name="xformers", version="0.0.35", location="/site", verdict="torch-mismatch",
                  verdicts={"12.0": "ptx-jit"}, torch_built_for="2.10.0+cu128",
                  problems=[Problem("ptx-jit", "only PTX", "12.0"), Problem("torch-mismatch", "built for 2.10.0+cu128")])
    gpus = [TargetGpu("NVIDIA GeForce RTX 5090", "12.0", "nvidia-smi")]
    fixes = fixes_for(pkg, gpus, Driver("580.65.06", "13.0", "test"), {"version": "2.11.0+cu130", "cuda": "13.0"}, _recipes())
    assert fixes == ["python3 -m invoke build xformers --arch 12.0 --cuda 13.0 --with torch==2.11.0+cu130"]


def test_fix_without_a_recipe_names_what_to_ask_for() -> None:
    pkg = Package(name="somelib", version="1.0", location="/site", verdict="no-kernel",
                  verdicts={"9.0": "native", "12.0": "no-kernel"}, problems=[Problem("no-kernel", "none", "12.0")])
    gpus = [TargetGpu("a", "9.0", "--arch"), TargetGpu("b", "12.0", "--arch")]
    (fix,) = fixes_for(pkg, gpus, Driver(None, None, "none"), None, _recipes())
    assert "no wheelforge recipe for somelib" in fix and "sm_90, sm_120" in fix  # the replacement serves every GPU


def test_fix_for_driver_too_old_names_the_branch() -> None:
    pkg = Package(name="demo-cuda", version="0.1.0+cu130.sm90", location="/site", verdict="driver-too-old",
                  verdicts={"9.0": "native"}, cuda="13.0", problems=[Problem("driver-too-old", "too old")])
    fixes = fixes_for(pkg, [TargetGpu("h", "9.0", "--arch")], Driver("575.51.03", "12.9", "test"), None, _recipes())
    assert fixes[0] == "python3 -m invoke build demo-cuda --arch 9.0 --cuda 12.9"
    assert "R580" in fixes[1]


def test_nvidia_component_wheels_are_judged_by_their_best_binary() -> None:
    """cuFFT's shape (CUDA 13.0's nvidia-cufft): libcufft covers the GPU, libcufftw holds one sm_75 helper."""
    from wheelforge.verify.doctor import Binary, judged_binaries

    cufft = Binary("nvidia/cu13/lib/libcufft.so.12", "/x", 1, ("sm_75", "sm_90"), (), {"9.0": "native"})
    cufftw = Binary("nvidia/cu13/lib/libcufftw.so.12", "/y", 1, ("sm_75",), (), {"9.0": "no-kernel"})
    nvidia = Package(name="nvidia-cufft", version="12.0.0.61", location="/site", binaries=[cufft, cufftw])
    assert judged_binaries(nvidia, "9.0") == ([cufft], [cufftw])
    other = Package(name="somelib", version="1.0", location="/site", binaries=[cufft, cufftw])
    assert judged_binaries(other, "9.0") == ([cufft, cufftw], [])  # everyone else: every binary counts
