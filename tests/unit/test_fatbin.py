"""Fatbin reader and audit rules on synthetic ELF files laid out as nvcc 13.0 writes them."""

from __future__ import annotations

import json
import struct
import zipfile

import pytest
from audit_support import KIND_CUBIN, KIND_PTX, make_blob, make_elf, make_entry

from wheelforge.binaries.audit import audit_path, inspect, parse_arch, raise_for_failures
from wheelforge.binaries.fatbin import FLAG_ARCH_SPECIFIC, FLAG_COMPRESSED, FLAG_FAMILY, list_entries, list_entries_from_bytes
from wheelforge.cli.render import audit_table
from wheelforge.model.errors import ArchError, AuditError

A, F, Z = FLAG_ARCH_SPECIFIC, FLAG_FAMILY, FLAG_COMPRESSED


def _so(tmp_path, name, *blobs, pad=b""):
    path = tmp_path / name
    path.write_bytes(make_elf({".text": b"\x90" * 16, ".nv_fatbin": pad.join(blobs)}))
    return path


def _listing(path):
    return [(e.kind, e.arch, e.compressed) for e in list_entries(path)]


def test_lists_entries_across_blobs_with_suffixes_and_compression(tmp_path):
    path = _so(
        tmp_path,
        "libmix.so",
        make_blob(make_entry(KIND_CUBIN, 90), make_entry(KIND_CUBIN, 120, 0x1000011 | A, header_size=96)),
        make_blob(
            make_entry(KIND_PTX, 120, 0x8011, header_size=80),
            make_entry(KIND_CUBIN, 120, 0x1000011 | F | Z, header_size=112),
        ),
        pad=b"\0" * 8,  # blobs of separate objects may sit on aligned offsets
    )
    assert _listing(path) == [
        ("sass", "sm_90", False),
        ("sass", "sm_120a", False),
        ("ptx", "sm_120", True),
        ("sass", "sm_120f", True),
    ]


def test_family_cubin_keeps_cuobjdump_name(tmp_path):
    path = _so(tmp_path, "libf.so", make_blob(make_entry(KIND_CUBIN, 120, F), make_entry(KIND_PTX, 120, F)))
    assert [(e.arch, e.cuobjdump_arch) for e in list_entries(path)] == [("sm_120f", "sm_120"), ("sm_120f", "sm_120f")]


def test_empty_blob_and_relocatable_section(tmp_path):
    data = make_elf(
        {
            ".nv_fatbin": make_blob() + make_blob(make_entry(KIND_PTX, 120)),
            "__nv_relfatbin": make_blob(make_entry(KIND_CUBIN, 120)),
        }
    )
    path = tmp_path / "librdc.so"
    path.write_bytes(data)
    assert [e.arch for e in list_entries(path)] == ["sm_120"]
    assert [(e.kind, e.section) for e in list_entries(path, include_relocatable=True)] == [
        ("ptx", ".nv_fatbin"),
        ("sass", "__nv_relfatbin"),
    ]


def test_non_elf_and_host_only_files_have_no_entries(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    host = tmp_path / "libhost.so"
    host.write_bytes(make_elf({".text": b"\x90" * 16}))
    assert list_entries(tmp_path / "notes.txt") == []
    assert list_entries(host) == []
    assert list_entries_from_bytes(host.read_bytes(), "libhost.so") == []


def test_bad_blob_magic_names_file_and_offset(tmp_path):
    blob = bytearray(make_blob(make_entry(KIND_CUBIN, 120)))
    blob[0:4] = b"XXXX"
    path = _so(tmp_path, "libbad.so", bytes(blob))
    with pytest.raises(AuditError) as err:
        list_entries(path)
    assert err.value.id == "audit.corrupt-fatbin"
    assert "libbad.so" in err.value.message and "offset 0x" in err.value.message


def test_entry_overrunning_its_blob_is_corrupt(tmp_path):
    blob = bytearray(make_blob(make_entry(KIND_CUBIN, 120)))
    struct.pack_into("<Q", blob, 16 + 8, 1 << 20)  # entry payload size far past the blob
    path = _so(tmp_path, "libcut.so", bytes(blob))
    with pytest.raises(AuditError, match=r"libcut.so: corrupt fatbinary at file offset 0x[0-9a-f]+: entry header"):
        list_entries(path)


def test_truncated_elf_is_an_audit_error(tmp_path):
    path = tmp_path / "libtrunc.so"
    path.write_bytes(_so(tmp_path, "x.so", make_blob(make_entry(KIND_CUBIN, 120))).read_bytes()[:40])
    with pytest.raises(AuditError) as err:
        list_entries(path)
    assert "libtrunc.so" in err.value.message


@pytest.mark.parametrize(
    ("text", "canonical"),
    [("120", "120"), ("sm_120a", "120a"), ("compute_120f", "120f"), ("12.0", "120"), ("9.0a", "90a")],
)
def test_parse_arch(text, canonical):
    assert parse_arch(text).canonical == canonical


def test_parse_arch_rejects_garbage():
    with pytest.raises(ArchError):
        parse_arch("ampere")


@pytest.mark.parametrize(
    ("sass", "wanted", "ok"),
    [
        ((120, A), "120", True),  # 120a counts for 12.0
        ((120, F), "120", True),
        ((120, 0), "120a", False),
        ((120, A), "120a", True),
        ((120, 0), "120f", True),  # plain X.0 SASS runs on the whole family
        ((120, F), "120f", True),
        ((120, A), "120f", False),  # runs on 12.0 only
        ((90, 0), "120", False),
    ],
)
def test_sass_rules(tmp_path, sass, wanted, ok):
    sm, flags = sass
    path = _so(tmp_path, "libk.so", make_blob(make_entry(KIND_CUBIN, sm, 0x11 | flags)))
    assert audit_path(path, [wanted]).ok is ok


def test_failure_messages_and_ptx_only(tmp_path):
    _so(tmp_path, "libold.so", make_blob(make_entry(KIND_CUBIN, 90)))
    _so(tmp_path, "libjit.so", make_blob(make_entry(KIND_CUBIN, 90), make_entry(KIND_PTX, 90)))
    _so(tmp_path, "libok.so", make_blob(make_entry(KIND_CUBIN, 120)))
    (tmp_path / "libhost.so").write_bytes(make_elf({".text": b"\x90"}))
    report = audit_path(tmp_path, ["120"])
    assert not report.ok
    assert report.failures() == [
        "libjit.so: no SASS for sm_120, PTX only: users pay a JIT at start (has sm_90)",
        "libold.so: no SASS for sm_120 (has sm_90)",
    ]
    kinds = {f.path: f.kind for f in report.files}
    assert kinds == {"libhost.so": "host-only", "libjit.so": "device", "libok.so": "device", "libold.so": "device"}
    assert report.archs_found == ["sm_90", "sm_120"]
    with pytest.raises(AuditError) as err:
        raise_for_failures(report)
    assert err.value.id == "audit.missing-sass"
    assert err.value.message.startswith("libjit.so: no SASS for sm_120")
    assert err.value.hint


def test_wheel_members_are_audited_and_reported(tmp_path):
    lib = _so(tmp_path, "libk.so", make_blob(make_entry(KIND_CUBIN, 120, 0x11 | Z)))
    whl = tmp_path / "demo-1.0-py3-none-linux_x86_64.whl"
    with zipfile.ZipFile(whl, "w") as zf:
        zf.writestr("demo/__init__.py", "")
        zf.write(lib, "demo/lib/libk.so")
        zf.write(lib, "demo/lib/libk.so.1")
    report = audit_path(whl, ["120"])
    assert report.ok
    assert [f.path for f in report.files] == ["demo/lib/libk.so", "demo/lib/libk.so.1"]
    data = json.loads(report.to_json())
    assert data["ok"] is True and data["archs_found"] == ["sm_120"]
    assert data["files"][0]["entries"][0] == {
        "kind": "sass",
        "arch": "sm_120",
        "compressed": True,
        "debug": False,
        "size": 32,
        "offset": data["files"][0]["entries"][0]["offset"],
        "section": ".nv_fatbin",
    }
    raise_for_failures(report)  # ok reports pass silently
    (report,) = inspect([whl], ["120"])
    text = audit_table(report)
    assert "demo/lib/libk.so" in text and "PASS" in text


def test_no_device_code_fails_only_when_required(tmp_path):
    (tmp_path / "libhost.so").write_bytes(make_elf({".text": b"\x90"}))
    assert audit_path(tmp_path, ["120"]).ok
    report = audit_path(tmp_path, ["120"], require_device_code=True)
    assert not report.ok
    with pytest.raises(AuditError) as err:
        raise_for_failures(report)
    assert err.value.id == "audit.no-device-code"


def test_not_elf_file_is_rejected(tmp_path):
    path = tmp_path / "README.md"
    path.write_text("x")
    with pytest.raises(AuditError, match="neither a wheel"):
        audit_path(path, ["120"])


def test_fast_section_lookup_agrees_with_pyelftools(tmp_path):
    """The struct fast path finds what pyelftools finds: on a synthetic library and on the real shared objects
    of this interpreter's site-packages (numpy, pyelftools' neighbours...); it declines memoryviews and ELF32."""
    import itertools
    import site
    from pathlib import Path

    from wheelforge.binaries.fatbin import _find_sections_elftools, _find_sections_fast

    wanted = [".nv_fatbin", "__nv_relfatbin", ".text", ".dynsym"]
    files = [_so(tmp_path, "libsyn.so", make_blob(make_entry(KIND_CUBIN, 120)))]
    for root in site.getsitepackages():
        files += itertools.islice((p for p in Path(root).rglob("*.so") if p.is_file()), 40)
    checked = 0
    for path in files:
        data = path.read_bytes()
        if data[:4] != b"\x7fELF":
            continue
        fast = _find_sections_fast(data, wanted)
        assert fast is not None, path
        assert fast == _find_sections_elftools(data, path.name, wanted), path
        checked += 1
    assert checked >= 2
    data = files[0].read_bytes()
    assert _find_sections_fast(memoryview(data), wanted) is None
    assert _find_sections_fast(data[:4] + b"\x01" + data[5:], wanted) is None  # ELFCLASS32: pyelftools decides


def test_blobs_kept_in_data_sections(tmp_path):
    """A library that keeps fatbins in .ldata and registers them itself (cuFFT 12 does): the blobs are found there,
    a chance match of the magic is skipped, and .nv_fatbin stays what list_entries reads."""
    from wheelforge.binaries.fatbin import BLOB_MAGIC, list_data_section_entries

    blob = make_blob(make_entry(KIND_CUBIN, 90), make_entry(KIND_PTX, 120))
    chance = struct.pack("<IHHQ", BLOB_MAGIC, 7, 16, 8)  # the magic, but no blob header after it
    path = tmp_path / "libkeeps.so"
    path.write_bytes(make_elf({".nv_fatbin": make_blob(make_entry(KIND_CUBIN, 75)),
                               ".ldata": b"\x01" * 24 + chance + blob + b"\x02" * 8}))
    assert [(e.kind, e.arch) for e in list_entries(path)] == [("sass", "sm_75")]
    found = list_data_section_entries(path)
    assert [(e.kind, e.arch, e.section) for e in found] == [("sass", "sm_90", ".ldata"), ("ptx", "sm_120", ".ldata")]
    plain = _so(tmp_path, "libplain.so", make_blob(make_entry(KIND_CUBIN, 120)))
    assert list_data_section_entries(plain) == []
