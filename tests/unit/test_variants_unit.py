"""Variant twins (wheelforge.serving.variants) on synthetic CUDA wheels: properties, names, the index files."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import shutil
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.version import Version

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from index_support import make_wheelhouse  # noqa: E402
from variant_support import add_cuda_entry  # noqa: E402

from wheelforge.model.errors import IndexError_  # noqa: E402
from wheelforge.serving.index import build_index  # noqa: E402
from wheelforge.serving.variants import (  # noqa: E402
    VARIANT_SCHEMA,
    Measured,
    order_warnings,
    properties,
    twin_version,
    variants_json_name,
)


def test_properties_are_the_measured_cuda_sass_and_ptx():
    m = Measured(cuda="13.0", sass=("sm_90", "sm_120a"), ptx=("sm_120",), cuda_from="t", archs_from="t")
    assert [p.to_str() for p in properties(m)] == [
        "nvidia :: cuda_version_lower_bound :: 13.0",
        "nvidia :: sm_arch :: 90_real",
        "nvidia :: sm_arch :: 120a_real",
        "nvidia :: sm_arch :: 120_virtual",
    ]


@pytest.mark.parametrize("label", ["cu128.sm120", "cu130.sm90.sm120", "cu128.sm120a", "cu129.sm100f.sm120f", "cu130.sm80.sm86.sm90.sm100.sm120"])
def test_twin_version_sorts_above_every_plain_label(label):
    plain = f"2.15.0+{label}"
    assert twin_version(plain) == "2.15.0+variants"
    assert Version(twin_version(plain)) > Version(plain) > Version("2.15.0")
    assert Version(twin_version(plain)) < Version("2.15.1")


def test_order_warning_for_a_plain_label_that_sorts_higher(tmp_path):
    from wheelforge.serving.index import collect

    add_cuda_entry(tmp_path, "kern", "xpu1", sass=(120,))
    files, _ = collect(tmp_path)
    (msg,) = order_warnings(files)
    assert "kern-1.0.0+xpu1" in msg and "1.0.0+variants" in msg


def test_variants_json_name_is_escaped_like_wheel_names():
    assert variants_json_name("demo-cuda", "0.1.0+variants") == "demo_cuda-0.1.0+variants-variants.json"
    assert variants_json_name("Llama.Cpp-Python", "0.3.36+variants") == "llama_cpp_python-0.3.36+variants-variants.json"


def _record_ok(zf: zipfile.ZipFile) -> None:
    """Every member is listed in RECORD with its sha256 and size."""
    (record,) = [n for n in zf.namelist() if n.endswith(".dist-info/RECORD")]
    rows = {r[0]: r[1:] for r in csv.reader(io.StringIO(zf.read(record).decode())) if r}
    for name in zf.namelist():
        if name == record:
            continue
        data = zf.read(name)
        digest = "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        assert rows[name] == [digest, str(len(data))], name
    assert set(rows) == set(zf.namelist())


@pytest.fixture
def cuda_house(tmp_path):
    wh = tmp_path / "wh"
    # An entry from before archs_ptx was recorded: its PTX must come from a fresh audit.
    add_cuda_entry(wh, "kern", "cu130.sm90.sm120", sass=(90, 120), ptx=(120,), record_ptx=False)
    add_cuda_entry(wh, "kern", "cu130.sm120", sass=(120,), built_at="2026-11-02T10:00:00Z")
    return wh


def test_twins_carry_measured_properties_and_are_valid_wheels(cuda_house):
    result = build_index(cuda_house, variants=True)
    assert result.warnings == [] and result.variant_files == 3
    files = cuda_house / "index/files"
    twin = files / "kern-1.0.0+variants-cp311-cp311-linux_x86_64-cu130.sm90.sm120.whl"
    with zipfile.ZipFile(twin) as zf:
        _record_ok(zf)
        info = "kern-1.0.0+variants.dist-info"
        assert b"Version: 1.0.0+variants\n" in zf.read(f"{info}/METADATA")
        vj = json.loads(zf.read(f"{info}/variant.json"))
        assert zf.read("kern/libkernels.so") == zipfile.ZipFile(next((cuda_house / "entries").glob("*/kern-1.0.0+cu130.sm90.sm120-*.whl"))).read("kern/libkernels.so")
    assert vj["$schema"] == VARIANT_SCHEMA
    assert vj["variants"] == {"cu130.sm90.sm120": {"nvidia": {"cuda_version_lower_bound": ["13.0"], "sm_arch": ["120_real", "120_virtual", "90_real"]}}}
    assert vj["providers"] == {"nvidia": {"plugin-api": "nvidia_variant_provider.plugin:NvidiaVariantPlugin",
                                          "requires": ["nvidia-variant-provider>=0.0.1,<1.0.0"]}}
    assert (files / (twin.name + ".metadata")).read_bytes() == zipfile.ZipFile(twin).read("kern-1.0.0+variants.dist-info/METADATA")

    index_doc = json.loads((files / "kern-1.0.0+variants-variants.json").read_text())
    assert set(index_doc["variants"]) == {"cu130.sm90.sm120", "cu130.sm120"}
    assert index_doc["variants"]["cu130.sm120"] == {"nvidia": {"cuda_version_lower_bound": ["13.0"], "sm_arch": ["120_real"]}}
    from variantlib.variants_json import VariantsJson

    VariantsJson(index_doc)  # variantlib reads back what it wrote

    page = json.loads((cuda_house / "index/simple/kern/index.json").read_text())
    listed = {f["filename"]: f for f in page["files"]}
    vjson = listed["kern-1.0.0+variants-variants.json"]
    assert vjson["hashes"]["sha256"] == hashlib.sha256((files / "kern-1.0.0+variants-variants.json").read_bytes()).hexdigest()
    assert "core-metadata" not in vjson and vjson["upload-time"] == "2026-11-01T10:00:00.000000Z"  # the earliest member
    assert listed[twin.name]["core-metadata"]["sha256"] == hashlib.sha256((files / (twin.name + ".metadata")).read_bytes()).hexdigest()
    assert "1.0.0+variants" in page["versions"]
    html = (cuda_house / "index/simple/kern/index.html").read_text()
    assert 'href="../../files/kern-1.0.0%2Bvariants-variants.json#sha256=' + vjson["hashes"]["sha256"] in html
    # The page for people lists the plain wheels only.
    assert "variants" not in (cuda_house / "index/index.html").read_text().split("<tbody")[1]


def test_twins_are_made_once_per_entry_and_swept_with_it(cuda_house):
    build_index(cuda_house, variants=True)
    cached = sorted((cuda_house / "variants").glob("*/*.whl"))
    stamps = [os.stat(p).st_mtime_ns for p in cached]
    build_index(cuda_house, variants=True)
    assert [os.stat(p).st_mtime_ns for p in sorted((cuda_house / "variants").glob("*/*.whl"))] == stamps
    gone = next(d for d in (cuda_house / "entries").iterdir() if "sm90" in next(d.glob("*.whl")).name)
    shutil.rmtree(gone)
    build_index(cuda_house, variants=True)
    assert [p.name for p in (cuda_house / "variants").iterdir()] == [d.name for d in (cuda_house / "entries").iterdir()]
    assert not list((cuda_house / "index/files").glob("*sm90*"))


def test_without_the_flag_nothing_changes(cuda_house):
    build_index(cuda_house)
    assert not [p for p in (cuda_house / "index/files").iterdir() if "variants" in p.name]
    assert not (cuda_house / "variants").exists()


def test_wheels_without_device_code_get_no_twin(tmp_path):
    wh = make_wheelhouse(tmp_path / "wh")
    result = build_index(wh, variants=True)
    assert result.variant_files == 0 and result.warnings == []
    assert not [p for p in (wh / "index/files").iterdir() if "variants" in p.name]


def test_a_yanked_wheel_has_a_yanked_twin(cuda_house):
    plain = next((cuda_house / "entries").glob("*/kern-1.0.0+cu130.sm120-*.whl")).name
    (cuda_house / "yanked.toml").write_text(f'[[yank]]\nfile = "{plain}"\nreason = "bad kernel"\n')
    build_index(cuda_house, variants=True)
    page = json.loads((cuda_house / "index/simple/kern/index.json").read_text())
    yanked = {f["filename"]: f["yanked"] for f in page["files"]}
    assert yanked["kern-1.0.0+variants-cp311-cp311-linux_x86_64-cu130.sm120.whl"] == "bad kernel"
    assert yanked["kern-1.0.0+variants-cp311-cp311-linux_x86_64-cu130.sm90.sm120.whl"] is False


def test_one_label_with_two_property_sets_keeps_the_first_and_warns(tmp_path):
    wh = tmp_path / "wh"
    add_cuda_entry(wh, "kern", "cu130.sm120", sass=(120,), tag="cp311-cp311-linux_x86_64")
    add_cuda_entry(wh, "kern", "cu130.sm120", sass=(120,), ptx=(120,), tag="cp312-cp312-linux_x86_64")
    result = build_index(wh, variants=True)
    (warning,) = result.warnings
    assert "cp312" in warning and "cu130.sm120" in warning and "left out" in warning
    assert [p.name for p in (wh / "index/files").glob("*-cu130.sm120.whl")] == ["kern-1.0.0+variants-cp311-cp311-linux_x86_64-cu130.sm120.whl"]


def test_provenance_and_entry_disagreeing_on_cuda_is_refused(tmp_path):
    wh = tmp_path / "wh"
    add_cuda_entry(wh, "kern", "cu130.sm120", sass=(120,), cuda="13.0", nvcc="12.8")
    with pytest.raises(IndexError_) as err:
        build_index(wh, variants=True)
    assert err.value.id == "index.variant-cuda" and "12.8" in str(err.value)
    assert not (wh / "index").exists()


def test_cuda_from_the_entry_when_provenance_lacks_nvcc(tmp_path):
    wh = tmp_path / "wh"
    add_cuda_entry(wh, "kern", "cu128.sm120", sass=(120,), cuda="12.8", nvcc=None)
    build_index(wh, variants=True)
    doc = json.loads((wh / "index/files/kern-1.0.0+variants-variants.json").read_text())
    assert doc["variants"]["cu128.sm120"]["nvidia"]["cuda_version_lower_bound"] == ["12.8"]
    derived = json.loads(next((wh / "variants").glob("*/derived.json")).read_text())
    assert derived["measured"]["cuda_from"] == "entry.json target.cuda"


def test_require_hashes_skips_twins_pip_cannot_install(cuda_house):
    from wheelforge.serving.index import require_hashes

    build_index(cuda_house, variants=True)
    text = require_hashes(cuda_house, ["kern==1.0.0+cu130.sm120"])
    plain = next((cuda_house / "entries").glob("*/kern-1.0.0+cu130.sm120-*.whl"))
    assert text.splitlines()[-1] == f"kern==1.0.0+cu130.sm120 --hash=sha256:{hashlib.sha256(plain.read_bytes()).hexdigest()}"
