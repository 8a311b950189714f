"""Wheel checks and the documented local-version rewrite (METADATA, dist-info, RECORD, file name)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from wheelforge.binaries.wheelmeta import add_local_label, check_wheel, record_hash, rewrite_wheel
from wheelforge.model.errors import BuildError


def make_wheel(folder: Path, *, name: str = "demo_cuda", version: str = "0.1.0", corrupt: str | None = None) -> Path:
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": b"X = 1\n",
        f"{name}/libk.so": b"\x7fELF fake library bytes",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: {version}\n\nLong description.\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\nTag: cp311-cp311-linux_x86_64\n",
    }
    rows = [f"{n},{record_hash(d)},{len(d)}" for n, d in files.items()]
    if corrupt == "hash":
        rows[0] = f"{name}/__init__.py,sha256=AAAA,6"
    if corrupt == "unlisted":
        files[f"{name}/extra.py"] = b""
    files[f"{info}/RECORD"] = ("\n".join(rows + [f"{info}/RECORD,,"]) + "\n").encode()
    path = folder / f"{name}-{version}-cp311-cp311-linux_x86_64.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for n, d in files.items():
            zi = zipfile.ZipInfo(n)
            zi.external_attr = (0o755 if n.endswith(".so") else 0o644) << 16
            zf.writestr(zi, d)
    return path


def test_check_accepts_a_good_wheel(tmp_path: Path) -> None:
    info = check_wheel(make_wheel(tmp_path))
    assert (info.name, info.version, info.dist_info) == ("demo-cuda", "0.1.0", "demo_cuda-0.1.0.dist-info")


@pytest.mark.parametrize(("corrupt", "words"), [("hash", "sha256 differs"), ("unlisted", "not listed in RECORD")])
def test_check_rejects_bad_record(tmp_path: Path, corrupt: str, words: str) -> None:
    with pytest.raises(BuildError) as exc:
        check_wheel(make_wheel(tmp_path, corrupt=corrupt))
    assert exc.value.id == "wheel.invalid" and words in exc.value.message


def test_check_rejects_non_zip(tmp_path: Path) -> None:
    p = tmp_path / "x-1.0-py3-none-any.whl"
    p.write_bytes(b"not a zip")
    with pytest.raises(BuildError, match="not a zip"):
        check_wheel(p)


def test_local_label_rewrite_changes_all_four_places(tmp_path: Path) -> None:
    src = make_wheel(tmp_path)
    out = add_local_label(src, "cu130.sm120", tmp_path / "out")
    assert out.name == "demo_cuda-0.1.0+cu130.sm120-cp311-cp311-linux_x86_64.whl"
    info = check_wheel(out)  # RECORD hashes match the rewritten files
    assert info.version == "0.1.0+cu130.sm120" and info.dist_info == "demo_cuda-0.1.0+cu130.sm120.dist-info"
    with zipfile.ZipFile(out) as zf:
        meta = zf.read(f"{info.dist_info}/METADATA").decode()
        record = zf.read(f"{info.dist_info}/RECORD").decode()
        mode = zf.getinfo("demo_cuda/libk.so").external_attr >> 16
    assert "Version: 0.1.0+cu130.sm120\n" in meta and meta.endswith("Long description.\n")
    assert "demo_cuda-0.1.0.dist-info" not in record
    assert mode == 0o755
    assert src.exists()  # the original is left alone


def test_requires_and_replaced_files(tmp_path: Path) -> None:
    src = make_wheel(tmp_path)
    out = rewrite_wheel(src, tmp_path / "out", add_requires=["nvidia-cuda-runtime==13.0.*"],
                        replace={"demo_cuda/libk.so": b"\x7fELF patched"})
    info = check_wheel(out)
    assert info.requires_dist == ("nvidia-cuda-runtime==13.0.*",) and info.version == "0.1.0"
    with zipfile.ZipFile(out) as zf:
        assert zf.read("demo_cuda/libk.so") == b"\x7fELF patched"
    with pytest.raises(BuildError, match="no file"):
        rewrite_wheel(src, tmp_path / "o2", replace={"nope.so": b""})
    assert not list((tmp_path / "o2").glob("*.whl"))  # nothing half-written left


def test_bad_version_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BuildError) as exc:
        rewrite_wheel(make_wheel(tmp_path), tmp_path, version="not a version")
    assert exc.value.id == "wheel.version"
