"""The pure-Python fatbin listing equals cuobjdump on libraries built here by the real nvcc,
and wheels built for 12.0 / 9.0 pass / fail the audit for 12.0."""

from __future__ import annotations

from collections import Counter

import pytest
from audit_support import build_host_so, build_variants, cuobjdump_listing, find_cuobjdump, find_nvcc, make_wheel

from wheelforge.binaries.audit import audit_path, raise_for_failures
from wheelforge.binaries.fatbin import list_entries
from wheelforge.cli.render import audit_table
from wheelforge.model.errors import AuditError

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tools():
    nvcc, cuobjdump = find_nvcc(), find_cuobjdump()
    if nvcc is None:
        pytest.skip("no nvcc: install the CUDA toolkit at /usr/local/cuda or set CUDA_HOME")
    if cuobjdump is None:
        pytest.skip("no cuobjdump: python3 -m pip install nvidia-cuda-cuobjdump")
    return nvcc, cuobjdump


@pytest.fixture(scope="module")
def libs(tools, tmp_path_factory):
    """Every VARIANT built once for the module (about a minute on 2 cores)."""
    out = tmp_path_factory.mktemp("cuda-libs")
    built = build_variants(tools[0], out)
    built["host"] = build_host_so(out)
    return built


def _ours(path, all_sections=False) -> Counter:
    return Counter(
        (e.kind, e.cuobjdump_arch)
        for e in list_entries(path, include_relocatable=all_sections)
        if e.kind in ("sass", "ptx")
    )


@pytest.mark.parametrize("name", ["sm90", "sm120", "ptx120", "mix", "compressed", "family", "rdc", "host"])
def test_listing_equals_cuobjdump(tools, libs, name):
    path = libs[name]
    theirs = cuobjdump_listing(tools[1], path)
    assert _ours(path) == theirs
    assert _ours(path, all_sections=True) == cuobjdump_listing(tools[1], path, all_sections=True)
    if name != "host":
        assert theirs, f"cuobjdump saw no device code in {path.name}"


def test_expected_contents_of_the_builds(libs):
    """What nvcc was asked for shows up, with the flags we can only see in the headers."""
    mix = list_entries(libs["mix"])
    assert {e.arch for e in mix if e.kind == "sass"} == {"sm_90", "sm_120", "sm_120a"}
    assert not any(e.compressed for e in mix if e.kind == "sass")  # nvcc compresses only PTX by default
    assert all(e.compressed for e in list_entries(libs["compressed"]))  # -Xfatbin -compress-all
    fam = list_entries(libs["family"])
    assert {(e.kind, e.arch) for e in fam} == {("sass", "sm_120f"), ("ptx", "sm_120f")}
    assert list_entries(libs["host"]) == []


def test_audit_rules_on_real_builds(libs):
    assert audit_path(libs["mix"], ["90", "120", "120a"]).ok
    assert audit_path(libs["family"], ["120", "120f"]).ok
    assert not audit_path(libs["family"], ["120a"]).ok
    report = audit_path(libs["ptx120"], ["120"])
    assert report.failures() == [
        "libwf_ptx120.so: no SASS for sm_120, PTX only: users pay a JIT at start (has no SASS at all)"
    ]
    with pytest.raises(AuditError) as err:
        raise_for_failures(report)
    assert err.value.id == "audit.ptx-only"


def test_wheel_for_120_passes_and_wheel_for_90_fails(libs, tmp_path):
    good = make_wheel(tmp_path, "wfdemo", "1.0", [libs["sm120"], libs["host"]])
    report = audit_path(good, ["120"], require_device_code=True)
    assert report.ok, audit_table(report)
    assert report.archs_found == ["sm_120"]
    assert {f.path: f.kind for f in report.files} == {
        "wfdemo/libwf_sm120.so": "device",
        "wfdemo/libwf_host.so": "host-only",
    }

    bad = make_wheel(tmp_path, "wfold", "1.0", [libs["sm90"], libs["host"]])
    report = audit_path(bad, ["120"])
    assert not report.ok
    assert report.failures() == ["libwf_sm90.so: no SASS for sm_120 (has sm_90)"]
    assert "FAIL: no sm_120" in audit_table(report)
    with pytest.raises(AuditError) as err:
        raise_for_failures(report)
    assert err.value.id == "audit.missing-sass"
    assert err.value.message == "libwf_sm90.so: no SASS for sm_120 (has sm_90)"
