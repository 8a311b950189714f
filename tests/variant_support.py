"""Wheelhouse entries with device code for the variant tests: synthetic fatbins (unit tier)."""

from __future__ import annotations

import base64
import hashlib
import json
import zipfile
from pathlib import Path

from audit_support import KIND_CUBIN, KIND_PTX, make_blob, make_elf, make_entry

#: fatbin entry flags of a plain (not ``a``/``f``) image, as audit_support lays them out
PLAIN = 0x11


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def cuda_wheel(directory: Path, name: str, version: str, *, sass: tuple[int, ...], ptx: tuple[int, ...] = (),
               tag: str = "cp311-cp311-linux_x86_64") -> Path:
    """An installable wheel whose one shared library holds SASS for ``sass`` and PTX for ``ptx`` (sm numbers)."""
    dist = name.replace("-", "_")
    images = [make_entry(KIND_CUBIN, sm, PLAIN) for sm in sass] + [make_entry(KIND_PTX, sm, PLAIN) for sm in ptx]
    lib = make_elf({".nv_fatbin": make_blob(*images)})
    info = f"{dist}-{version}.dist-info"
    files = {
        f"{dist}/__init__.py": f'__version__ = "{version}"\n'.encode(),
        f"{dist}/libkernels.so": lib,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nRequires-Python: >=3.9\n".encode(),
        f"{info}/WHEEL": f"Wheel-Version: 1.0\nGenerator: wheelforge-tests\nRoot-Is-Purelib: false\nTag: {tag}\n".encode(),
    }
    record = "".join(f"{n},{_record_hash(d)},{len(d)}\n" for n, d in files.items()) + f"{info}/RECORD,,\n"
    files[f"{info}/RECORD"] = record.encode()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{dist}-{version}-{tag}.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for n, d in files.items():
            zf.writestr(zipfile.ZipInfo(n, date_time=(2020, 1, 1, 0, 0, 0)), d)
    return path


def add_cuda_entry(wheelhouse: Path, name: str, label: str, *, sass: tuple[int, ...], ptx: tuple[int, ...] = (),
                   cuda: str = "13.0", nvcc: str | None = "13.0", record_ptx: bool = True, public: str = "1.0.0",
                   tag: str = "cp311-cp311-linux_x86_64", built_at: str = "2026-11-01T10:00:00Z") -> dict:
    """A finished entry as the pipeline writes it; ``record_ptx=False`` mimics entries from before ``archs_ptx``."""
    key = hashlib.sha256(f"{name}|{label}|{tag}|{sass}|{ptx}".encode()).hexdigest()
    entry_dir = wheelhouse / "entries" / key
    wheel = cuda_wheel(entry_dir, name, f"{public}+{label}", sass=sass, ptx=ptx, tag=tag)
    data = wheel.read_bytes()
    entry = {
        "schema": 1, "key": key, "recipe": name, "version": public, "project": name, "wheel": wheel.name,
        "sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
        "target": {"archs": ["12.0"], "cuda": cuda, "python": tag.split("-")[0], "label": label},
        "archs_found": [f"sm_{sm}" for sm in sass], "built_at": built_at, "build_seconds": 1.0, "verify": "passed",
    }
    if record_ptx:
        entry["archs_ptx"] = [f"sm_{sm}" for sm in ptx]
    (entry_dir / "entry.json").write_text(json.dumps(entry, indent=1))
    deps = [{"name": "toolchain:nvcc", "annotations": {"version": nvcc}}] if nvcc else []
    provenance = {"_type": "https://in-toto.io/Statement/v1", "subject": [{"name": wheel.name, "digest": {"sha256": entry["sha256"]}}],
                  "predicateType": "https://slsa.dev/provenance/v1",
                  "predicate": {"buildDefinition": {"buildType": "https://wheelforge.dev/build/v1", "resolvedDependencies": deps}, "runDetails": {}}}
    (entry_dir / "provenance.json").write_text(json.dumps(provenance))
    return entry
