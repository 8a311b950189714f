"""Helpers for the audit tests and bench: synthetic ELF/fatbin bytes (unit tier), real
nvcc-built libraries, cuobjdump's listing, and tiny wheels (integration tier)."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import os
import re
import shutil
import struct
import subprocess
import zipfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# --- synthetic fatbin / ELF (pure, for unit tests) ---------------------------------------------

KIND_PTX, KIND_CUBIN = 1, 2


def make_entry(kind: int, sm: int, flags: int = 0x11, payload: bytes = b"\0" * 32, header_size: int = 64) -> bytes:
    """One fatbin entry laid out as nvcc 13.0 writes it (see wheelforge.binaries.fatbin)."""
    header = bytearray(header_size)
    struct.pack_into("<HHIQ", header, 0, kind, 0x0101, header_size, len(payload))
    struct.pack_into("<I", header, 24, 0x00010008 if kind == KIND_CUBIN else 0x00090000)
    struct.pack_into("<I", header, 28, sm)
    struct.pack_into("<Q", header, 40, flags)
    return bytes(header) + payload


def make_blob(*entries: bytes) -> bytes:
    payload = b"".join(entries)
    return struct.pack("<IHHQ", 0xBA55ED50, 1, 16, len(payload)) + payload


def make_elf(sections: dict[str, bytes]) -> bytes:
    """A minimal little-endian ELF64 shared object holding ``sections`` (PROGBITS) and .shstrtab."""
    names = b"\0" + b"".join(n.encode() + b"\0" for n in sections) + b".shstrtab\0"
    body = bytearray()
    offsets = []
    pos = 64
    for data in sections.values():
        pad = (-pos) % 8
        body += b"\0" * pad
        pos += pad
        offsets.append(pos)
        body += data
        pos += len(data)
    shstr_off = pos
    body += names
    pos += len(names)
    pad = (-pos) % 8
    body += b"\0" * pad
    shoff = pos + pad
    nsec = len(sections) + 2
    ehdr = struct.pack(
        "<4sBBBBB7sHHIQQQIHHHHHH",
        b"\x7fELF",
        2,
        1,
        1,
        0,
        0,
        b"\0" * 7,
        3,
        62,
        1,
        0,
        0,
        shoff,
        0,
        64,
        0,
        0,
        64,
        nsec,
        nsec - 1,
    )
    shdrs = bytearray(struct.pack("<IIQQQQIIQQ", *([0] * 10)))
    name_pos = 1
    for (name, data), off in zip(sections.items(), offsets, strict=True):
        shdrs += struct.pack("<IIQQQQIIQQ", name_pos, 1, 2, 0, off, len(data), 0, 0, 8, 0)
        name_pos += len(name) + 1
    shdrs += struct.pack("<IIQQQQIIQQ", name_pos, 3, 0, 0, shstr_off, len(names), 0, 0, 1, 0)
    return ehdr + bytes(body) + bytes(shdrs)


# --- tools ------------------------------------------------------------------------------------


def find_nvcc() -> Path | None:
    for cand in (os.environ.get("CUDA_HOME"), "/usr/local/cuda"):
        if cand and Path(cand, "bin", "nvcc").is_file():
            return Path(cand, "bin", "nvcc")
    found = shutil.which("nvcc")
    return Path(found) if found else None


def find_cuobjdump() -> Path | None:
    """cuobjdump on PATH, else the one pip's ``nvidia-cuda-cuobjdump`` puts under ``nvidia/cu*/bin``."""
    found = shutil.which("cuobjdump")
    if found:
        return Path(found)
    spec = importlib.util.find_spec("nvidia")
    for root in (spec.submodule_search_locations or []) if spec else []:
        for cand in sorted(Path(root).glob("*/bin/cuobjdump")) + sorted(
            Path(root).glob("cuda_cuobjdump/bin/cuobjdump")
        ):
            if os.access(cand, os.X_OK):
                return cand
    return None


_LINE = re.compile(r"^(ELF|PTX) file\s+\d+:\s+\S*?\b(sm_\d+[a-z]?)\.(?:cubin|ptx)\s*$")


def parse_cuobjdump(text: str) -> Counter:
    """Lines like ``ELF file    1: name.1.sm_120.cubin`` / ``PTX file    1: name.1.sm_120.ptx``
    (debug builds drop the number: ``ELF file    1: k.sm_120.cubin``) -> Counter of (kind, arch)."""
    out: Counter = Counter()
    for line in text.splitlines():
        m = _LINE.match(line.strip())
        if m:
            out[("sass" if m.group(1) == "ELF" else "ptx", m.group(2))] += 1
    return out


def cuobjdump_listing(cuobjdump: Path, path: Path, all_sections: bool = False) -> Counter:
    listing: Counter = Counter()
    for flag in ("--list-elf", "--list-ptx"):
        cmd = [str(cuobjdump), *(["-all"] if all_sections else []), flag, str(path)]
        print("+", " ".join(cmd))
        proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ), check=False)
        # exit 0 with "No PTX file found" on stderr when one kind is absent;
        # exit 1 with "does not contain device code" for a host-only file
        if proc.returncode != 0 and "does not contain device code" in proc.stderr:
            return Counter()
        assert proc.returncode == 0, proc.stderr
        listing += parse_cuobjdump(proc.stdout)
    return listing


# --- real libraries ---------------------------------------------------------------------------

KERNEL = """
__global__ void wf_scale_{n}(float *x, float a, int n) {{
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) x[i] *= a;
}}
extern "C" void wf_launch_{n}(float *x, float a, int n) {{ wf_scale_{n}<<<(n + 255) / 256, 256>>>(x, a, n); }}
"""

# name -> (nvcc flags, number of .cu files)
VARIANTS: dict[str, tuple[list[str], int]] = {
    "sm90": (["-gencode", "arch=compute_90,code=sm_90"], 1),
    "sm120": (["-gencode", "arch=compute_120,code=sm_120"], 1),
    "ptx120": (["-gencode", "arch=compute_120,code=compute_120"], 1),
    # two objects -> blobs from two translation units back to back
    "mix": (
        [
            "-gencode",
            "arch=compute_90,code=[sm_90,compute_90]",
            "-gencode",
            "arch=compute_120,code=[sm_120,compute_120]",
            "-gencode",
            "arch=compute_120a,code=sm_120a",
        ],
        2,
    ),
    "compressed": (
        [
            "-Xfatbin",
            "-compress-all",
            "-gencode",
            "arch=compute_90,code=sm_90",
            "-gencode",
            "arch=compute_120a,code=[sm_120a,compute_120a]",
        ],
        1,
    ),
    "family": (["-gencode", "arch=compute_120f,code=[sm_120f,compute_120f]"], 1),
    "rdc": (["-rdc=true", "-gencode", "arch=compute_120,code=[sm_120,compute_120]"], 2),
}


def build_so(nvcc: Path, out_dir: Path, name: str, flags: list[str], n_sources: int = 1) -> Path:
    srcs = []
    for i in range(n_sources):
        src = out_dir / f"{name}_{i}.cu"
        src.write_text(KERNEL.format(n=i))
        srcs.append(str(src))
    out = out_dir / f"libwf_{name}.so"
    tmp = out.with_suffix(".so.tmp")
    cmd = [str(nvcc), "-shared", "-Xcompiler", "-fPIC", *flags, "-o", str(tmp), *srcs]
    print("+", " ".join(cmd))
    env = {"PATH": f"{nvcc.parent}:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp"), "TMPDIR": str(out_dir)}
    subprocess.run(cmd, check=True, env=env, cwd=out_dir)
    os.replace(tmp, out)
    return out


def build_variants(nvcc: Path, out_dir: Path, names: list[str] | None = None) -> dict[str, Path]:
    """Build the VARIANTS (two at a time: nvcc is mostly single-threaded)."""
    names = names or list(VARIANTS)
    with ThreadPoolExecutor(max_workers=2) as pool:
        futs = {n: pool.submit(build_so, nvcc, out_dir, n, *VARIANTS[n]) for n in names}
        return {n: f.result() for n, f in futs.items()}


def build_host_so(out_dir: Path) -> Path:
    src = out_dir / "host.c"
    src.write_text("int wf_host_add(int a, int b) { return a + b; }\n")
    out = out_dir / "libwf_host.so"
    cmd = ["gcc", "-shared", "-fPIC", "-o", str(out), str(src)]
    print("+", " ".join(cmd))
    subprocess.run(cmd, check=True, env={"PATH": "/usr/bin:/bin"})
    return out


def make_wheel(out_dir: Path, dist: str, version: str, libs: list[Path]) -> Path:
    """A minimal valid wheel with ``libs`` under ``<dist>/``."""
    tag = "py3-none-linux_x86_64"
    path = out_dir / f"{dist}-{version}-{tag}.whl"
    info = f"{dist}-{version}.dist-info"
    files: dict[str, bytes] = {f"{dist}/__init__.py": b""}
    for lib in libs:
        files[f"{dist}/{lib.name}"] = lib.read_bytes()
    files[f"{info}/METADATA"] = f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n".encode()
    files[f"{info}/WHEEL"] = (
        f"Wheel-Version: 1.0\nGenerator: wheelforge-tests\nRoot-Is-Purelib: false\nTag: {tag}\n".encode()
    )
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path
