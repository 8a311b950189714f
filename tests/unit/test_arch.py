"""Every accepted arch spelling, each rejection, and the translations per build system."""

import pytest

from wheelforge.model.arch import (
    CudaArch,
    check_toolkit_supports,
    cmake_cuda_architectures,
    expected_sass,
    local_label,
    parse_arch,
    parse_arch_list,
    torch_cuda_arch_list,
)
from wheelforge.model.errors import ArchError

SM120 = CudaArch(12, 0)


@pytest.mark.parametrize("text", ["12.0", "120", "sm_120", "SM_120", "compute_120", " 12.0 "])
def test_spellings_of_sm120(text):
    assert parse_arch(text) == SM120


@pytest.mark.parametrize(
    "text,expected",
    [
        ("12.0a", CudaArch(12, 0, "a")),
        ("120a", CudaArch(12, 0, "a")),
        ("sm_120a", CudaArch(12, 0, "a")),
        ("12.0+PTX", CudaArch(12, 0, "", True)),
        ("12.0+ptx", CudaArch(12, 0, "", True)),
        ("10.0f", CudaArch(10, 0, "f")),
        ("8.6", CudaArch(8, 6)),
        ("9.0a", CudaArch(9, 0, "a")),
    ],
)
def test_suffixes(text, expected):
    assert parse_arch(text) == expected


@pytest.mark.parametrize("text", ["9.0;12.0", "9.0,12.0", "9.0 12.0", "90;120", "sm_90, sm_120", "12.0;9.0;12.0"])
def test_list_separators_sort_and_dedupe(text):
    assert parse_arch_list(text) == (CudaArch(9, 0), SM120)


@pytest.mark.parametrize(
    "text,error_id,fragment",
    [
        ("", "arch.empty", "empty"),
        ("banana", "arch.unknown", "'banana'"),
        ("12", "arch.unknown", "'12'"),
        ("8.6a", "arch.no-specific", "start at 9.0"),
        ("9.0f", "arch.no-family", "start at 10.0"),
        ("12.0;12.0f", "arch.conflict", "cannot be built together"),
        ("12.0+SASS", "arch.unknown", "12.0+SASS"),
    ],
)
def test_rejections(text, error_id, fragment):
    with pytest.raises(ArchError) as exc:
        parse_arch_list(text)
    assert exc.value.id == error_id
    assert fragment in exc.value.message
    assert exc.value.hint


#: `nvcc --list-gpu-arch` of CUDA 13.0.88 (V13.0.88), as printed on the development machine.
NVCC_13_0 = ("compute_75", "compute_80", "compute_86", "compute_87", "compute_88", "compute_89", "compute_90", "compute_100",
             "compute_110", "compute_103", "compute_120", "compute_121")


@pytest.mark.parametrize("text", ["6.1", "5.2", "5.3", "6.2", "7.2", "8.8", "8.7", "11.0", "13.7"])
def test_parsing_is_spelling_only(text):
    """Whether a toolkit builds a capability is the toolkit's to say (check_toolkit_supports), not the parser's."""
    (arch,) = parse_arch_list(text)
    assert arch.dotted == text


@pytest.mark.parametrize("cc", ["7.5", "8.7", "8.8", "11.0", "12.1", "12.0a", "10.0f"])
def test_every_capability_nvcc_lists_is_accepted(cc):
    check_toolkit_supports(parse_arch_list(cc), "13.0", NVCC_13_0)


def test_a_capability_nvcc_does_not_list_is_refused_with_its_list():
    with pytest.raises(ArchError) as exc:
        check_toolkit_supports(parse_arch_list("13.7"), "13.0", NVCC_13_0)
    assert exc.value.id == "arch.unknown" and "CUDA 13.0's nvcc lists" in exc.value.message
    assert "8.8" in exc.value.hint and "12.1" in exc.value.hint
    with pytest.raises(ArchError) as exc:  # the table knows why: 13.0 dropped Pascal
        check_toolkit_supports(parse_arch_list("6.1"), "13.0", NVCC_13_0)
    assert exc.value.id == "arch.toolkit-too-new"


@pytest.mark.parametrize(("cc", "cuda", "error_id"), [
    ("6.1", "12.8", None), ("5.2", "12.8", None), ("5.3", "12.8", None), ("6.2", "12.8", None), ("7.2", "12.8", None),
    ("8.8", "13.0", None), ("8.8", "12.8", "arch.toolkit-too-old"), ("7.2", "13.0", "arch.toolkit-too-new"),
    ("10.1", "12.9", None), ("10.1", "13.0", "arch.toolkit-too-new"), ("13.7", "12.8", "arch.unknown"),
])
def test_without_a_toolkit_the_table_decides(cc, cuda, error_id):
    archs = parse_arch_list(cc)
    if error_id is None:
        check_toolkit_supports(archs, cuda)
        return
    with pytest.raises(ArchError) as exc:
        check_toolkit_supports(archs, cuda)
    assert exc.value.id == error_id and exc.value.hint


def test_sm120_needs_cuda_12_8():
    archs = parse_arch_list("12.0")
    check_toolkit_supports(archs, "12.8")
    check_toolkit_supports(archs, "13.0")
    with pytest.raises(ArchError) as exc:
        check_toolkit_supports(archs, "12.6")
    assert exc.value.id == "arch.toolkit-too-old"
    assert "sm_120 needs CUDA >= 12.8" in exc.value.message


def test_family_suffix_needs_cuda_12_9():
    archs = parse_arch_list("12.0f")
    check_toolkit_supports(archs, "12.9")
    with pytest.raises(ArchError) as exc:
        check_toolkit_supports(archs, "12.8")
    assert "needs CUDA >= 12.9" in exc.value.message


def test_volta_dropped_by_cuda_13():
    with pytest.raises(ArchError) as exc:
        check_toolkit_supports(parse_arch_list("7.0"), "13.0")
    assert exc.value.id == "arch.toolkit-too-new"


def test_torch_form():
    assert torch_cuda_arch_list(parse_arch_list("sm_90 120")) == "9.0;12.0"
    assert torch_cuda_arch_list(parse_arch_list("12.0a+PTX")) == "12.0a+PTX"


def test_cmake_form_is_sass_only_unless_ptx_asked():
    assert cmake_cuda_architectures(parse_arch_list("9.0;12.0")) == "90-real;120-real"
    assert cmake_cuda_architectures(parse_arch_list("12.0+PTX")) == "120"


def test_cmake_form_with_llama_cpp_rewrite():
    assert cmake_cuda_architectures(parse_arch_list("9.0;12.0"), "family-a") == "90-real;120a-real"
    # an explicit suffix is left alone
    assert cmake_cuda_architectures(parse_arch_list("12.0a"), "family-a") == "120a-real"


def test_labels_and_expected_sass():
    archs = parse_arch_list("9.0;12.0")
    assert local_label("12.8", parse_arch_list("12.0")) == "cu128.sm120"
    assert local_label("13.0", archs) == "cu130.sm90.sm120"
    assert expected_sass(archs) == ["90", "120"]
