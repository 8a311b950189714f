"""doctor: which installed packages will run on this machine's GPUs, read without importing them.

For the environment of an interpreter (the running one, or any venv's ``python``) and each GPU
(``nvidia-smi``) or arch given, every distribution with CUDA code gets a verdict:

``native``          a cubin (SASS) that runs on the GPU;
``ptx-jit``         only PTX the driver can compile: works, slow first start, no arch-specific kernels;
``no-kernel``       neither: "no kernel image is available for execution on the device";
``host-only``       a CUDA package (runtime, a CUDA-labelled build) without device code;
``driver-too-old``  built for a CUDA major newer than the driver supports;
``torch-mismatch``  a torch extension built for another torch than the one installed.

The interpreter is asked only for its search path (one ``python -S`` run: no ``site`` hooks, no
``.pth`` code, no package imports); dist-info folders and libraries are read from here, each ELF
file once (device + inode), with the fatbinary reader of :mod:`wheelforge.binaries.fatbin`.  Plain data
out (:class:`DoctorReport`); printing is the CLI's.  The rules and their sources are in
``docs/doctor.md``.
"""

from __future__ import annotations

import csv
import inspect
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from wheelforge.binaries.fatbin import FatbinEntry, list_data_section_entries, list_entries
from wheelforge.model.errors import AuditError, ConfigError

#: Worst first: the order of the people's table and of a package's overall verdict.
VERDICTS = ("no-kernel", "driver-too-old", "torch-mismatch", "ptx-jit", "native", "host-only")
#: Verdicts that mean the package will fail (the task exits non-zero).
FAILING = frozenset({"no-kernel", "driver-too-old", "torch-mismatch"})


def worst(verdicts: Iterable[str]) -> str | None:
    found = [v for v in verdicts if v]
    return min(found, key=VERDICTS.index) if found else None


# --------------------------------------------------------------------------- kernels (pure)


@dataclass(frozen=True, order=True)
class Capability:
    """A GPU's compute capability, ``9.0``."""

    major: int
    minor: int

    @classmethod
    def parse(cls, text: str) -> Capability:
        m = re.fullmatch(r"\s*(\d+)\.(\d+)\s*", str(text))
        if not m:
            raise ConfigError("doctor.capability", f"cannot read compute capability {text!r}", "write it as 9.0 or 12.0")
        return cls(int(m.group(1)), int(m.group(2)))

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"

    @property
    def sm(self) -> str:
        return f"sm_{self.major}{self.minor}"


def _cc(entry: FatbinEntry) -> tuple[int, int]:
    return divmod(entry.sm, 10)  # sm 120 -> (12, 0), 103 -> (10, 3)


def sass_runs_on(entry: FatbinEntry, gpu: Capability) -> bool:
    """Does this cubin run on ``gpu``?

    CUDA binary compatibility (CUDA C++ Programming Guide, "Binary Compatibility"): a cubin for
    X.y runs on X.z with z >= y, never on another major.  ``a`` cubins run on exactly X.y
    (arch-specific features are not forward compatible); ``f`` cubins on the X family, X.z with
    z >= y (NVIDIA blog "NVIDIA Blackwell and NVIDIA CUDA 12.9 Introduce Family-Specific
    Architecture Features": sm_100f runs on 10.0 and 10.3, not on 11.x or 12.x).
    """
    if entry.kind != "sass":
        return False
    major, minor = _cc(entry)
    if entry.suffix == "a":
        return (major, minor) == (gpu.major, gpu.minor)
    return major == gpu.major and minor <= gpu.minor


def ptx_jits_to(entry: FatbinEntry, gpu: Capability) -> bool:
    """Can the driver JIT-compile this PTX for ``gpu``?

    Plain ``compute_XY`` PTX compiles for any CC >= X.Y (Programming Guide, "PTX Compatibility");
    ``compute_XYa`` only for exactly X.Y; ``compute_XYf`` for the X family, X.z with z >= y.
    """
    if entry.kind != "ptx":
        return False
    major, minor = _cc(entry)
    if entry.suffix == "a":
        return (major, minor) == (gpu.major, gpu.minor)
    if entry.suffix == "f":
        return major == gpu.major and minor <= gpu.minor
    return (major, minor) <= (gpu.major, gpu.minor)


def kernel_verdict(entries: Sequence[FatbinEntry], gpu: Capability) -> str:
    """One binary on one GPU: ``native``, ``ptx-jit`` or ``no-kernel`` (LTO-IR is not loadable, so it counts for none)."""
    if any(sass_runs_on(e, gpu) for e in entries):
        return "native"
    if any(ptx_jits_to(e, gpu) for e in entries):
        return "ptx-jit"
    return "no-kernel"


def loadable(entries: Sequence[FatbinEntry]) -> bool:
    """Does the binary hold code the driver loads (SASS or PTX)?  LTO-IR alone is for nvJitLink at run time."""
    return any(e.kind in ("sass", "ptx") for e in entries)


# --------------------------------------------------------------------------- CUDA versions (pure)


@dataclass(frozen=True)
class DriverRow:
    cuda: str
    driver: str  # the Linux x86_64 driver NVIDIA's runfile of the X.Y.0 release bundles


#: Newest CUDA a Linux driver supports, from the driver NVIDIA bundles with each CUDA X.Y.0 runfile
#: (its file name, cuda_<version>_<driver>_linux.run, on developer.download.nvidia.com; the names
#: as listed in Jimver/cuda-toolkit src/links/linux-links.ts, commit 3d45d157f327c09c04b50ee6ccdea2d9d017ec76).
#: A driver at least that new supports that CUDA.  The release notes' Table 3 ("CUDA Toolkit and
#: Corresponding Driver Versions") may give a lower minimum for some releases; its rows could not be
#: read here, so a driver between that minimum and the runfile's may be judged one minor release
#: lower.  CUDA 12.7 was never released.  Where the driver is present its own answer
#: (``cuDriverGetVersion``) is used instead of this table.
DRIVER_TABLE: tuple[DriverRow, ...] = (
    DriverRow("12.0", "525.60.13"),
    DriverRow("12.1", "530.30.02"),
    DriverRow("12.2", "535.54.03"),
    DriverRow("12.3", "545.23.06"),
    DriverRow("12.4", "550.54.14"),
    DriverRow("12.5", "555.42.02"),
    DriverRow("12.6", "560.28.03"),
    DriverRow("12.8", "570.86.10"),
    DriverRow("12.9", "575.51.03"),
    DriverRow("13.0", "580.65.06"),
    DriverRow("13.1", "590.44.01"),
    DriverRow("13.2", "595.45.04"),
)
#: Oldest driver branch of each CUDA major (NVIDIA "CUDA Compatibility", Minor Version Compatibility,
#: Table 1: CUDA 13.x >= 580, 12.x >= 525, 11.x >= 450).  Within a major, a package built with a newer
#: minor runs on these drivers with a limited feature set, except PTX newer than the driver
#: (cudaErrorUnsupportedPtxVersion: "PTX was generated by a compiler newer than what is supported by
#: the CUDA driver and PTX JIT compiler", CUDA Runtime API).
MAJOR_FLOORS: Mapping[int, int] = {13: 580, 12: 525, 11: 450}
DRIVER_TABLE_SOURCE = "driver table: the drivers of NVIDIA's CUDA runfiles (docs/doctor.md)"


def _driver_key(version: str) -> tuple[int, ...]:
    parts = re.findall(r"\d+", version)
    if not parts:
        raise ConfigError("doctor.driver", f"cannot read driver version {version!r}", "write it as nvidia-smi prints it, e.g. 580.65.06")
    return tuple(int(p) for p in parts)


def cuda_for_driver(driver: str) -> str | None:
    """``"580.65.06"`` -> ``"13.0"``: the newest CUDA the table says this driver runs; ``"11"`` (major only) below
    the 12.0 row but within the 11.x branch; None for older drivers."""
    key = _driver_key(driver)
    best = None
    for row in DRIVER_TABLE:
        if key >= _driver_key(row.driver):
            best = row.cuda
    if best:
        return best
    for major, floor in sorted(MAJOR_FLOORS.items(), reverse=True):
        if key[0] >= floor:
            return str(major)
    return None


def split_cuda(cuda: str) -> tuple[int, int | None]:
    parts = str(cuda).split(".")
    return int(parts[0]), (int(parts[1]) if len(parts) > 1 and parts[1] != "" else None)


def driver_check(package_cuda: str | None, driver_cuda: str | None) -> tuple[str | None, str]:
    """(verdict or None, note): ``driver-too-old`` when the package's CUDA major is newer than the driver's;
    a note (no verdict) when only the minor is newer (minor version compatibility)."""
    if not package_cuda or not driver_cuda:
        return None, ""
    pm, pn = split_cuda(package_cuda)
    dm, dn = split_cuda(driver_cuda)
    if pm > dm:
        return "driver-too-old", f"built for CUDA {package_cuda}, the driver supports CUDA {driver_cuda} at most"
    if pm == dm and pn is not None and dn is not None and pn > dn:
        return None, (f"built for CUDA {package_cuda} on a CUDA {driver_cuda} driver: runs by minor version compatibility "
                      "(limited feature set; PTX it carries cannot be JIT-compiled by this driver)")
    return None, ""


def ptx_newer_than_driver(package_cuda: str | None, driver_cuda: str | None) -> bool:
    if not package_cuda or not driver_cuda:
        return False
    pm, pn = split_cuda(package_cuda)
    dm, dn = split_cuda(driver_cuda)
    if pn is None or dn is None:
        return pm > dm
    return (pm, pn) > (dm, dn)


# --------------------------------------------------------------------------- evidence (pure)

_LABEL_CUDA = re.compile(r"(?<![a-z])cu(\d{2,3})(?!\d)")
_TORCH_IN_LABEL = re.compile(r"torch(\d+)\.(\d+)")
#: nvidia-* wheels whose versions follow the CUDA toolkit's (13.0.96 = CUDA 13.0); other nvidia-*
#: libraries (cuBLAS, cuDNN, NCCL, ...) have their own version numbers, so only their -cuNN suffix counts.
_TOOLKIT_VERSIONED = ("nvidia-cuda-runtime", "nvidia-cuda-nvrtc", "nvidia-cuda-cupti", "nvidia-cuda-nvcc",
                      "nvidia-nvjitlink", "nvidia-cuda-cccl", "cuda-toolkit")


def cuda_from_label(version: str) -> str | None:
    """The CUDA in a local version label: ``2.11.0+cu130`` -> ``13.0``, ``0.1.0+cu130.sm90`` -> ``13.0``,
    ``2.8.3+cu12torch2.7cxx11abiTRUE`` -> ``12`` (two digits from 10 up name only the major)."""
    _, plus, local = version.partition("+")
    m = _LABEL_CUDA.search(local.lower()) if plus else None
    if not m:
        return None
    digits = m.group(1)
    if len(digits) == 2 and digits.startswith("1"):
        return digits
    return f"{digits[:-1]}.{digits[-1]}"


def cuda_from_name(name: str, version: str) -> tuple[str, str] | None:
    """The CUDA a distribution was built for, from its name (and version where the name says it follows CUDA)."""
    name = canonicalize_name(name)
    m = re.fullmatch(r"(.+?)(?:-cu(\d+))?", name)
    base, suffix = (m.group(1), m.group(2)) if m else (name, None)
    if base in _TOOLKIT_VERSIONED:
        try:
            v = Version(version)
        except InvalidVersion:
            v = None
        if v is not None and len(v.release) >= 2 and (suffix is None or str(v.major) == suffix):
            return f"{v.major}.{v.minor}", f"{name} {version} (toolkit-versioned)"
    if suffix and name.startswith("nvidia-"):
        return suffix, f"name suffix -cu{suffix}"
    m = re.fullmatch(r"cupy-cuda(\d+)(x?)", name)
    if m:
        digits, major_only = m.groups()
        if major_only:
            return digits, f"name {name}"
        return f"{digits[:-1]}.{digits[-1]}", f"name {name}"
    m = re.fullmatch(r"jax-cuda(\d+)-(?:plugin|pjrt)", name)
    if m:
        return m.group(1), f"name {name}"
    return None


def cuda_from_cpp_lib(data: Mapping[str, Any]) -> str | None:
    """xformers' ``cpp_lib.json``: ``{"version": {"cuda": 1208, ...}}`` -> ``12.8``: the nvcc release that compiled it,
    major * 100 + minor (xformers setup.py ``get_cuda_version``)."""
    raw = (data.get("version") or {}).get("cuda")
    if isinstance(raw, int) and raw >= 1000:
        return f"{raw // 100}.{raw % 100}"
    return None


def torch_pin(requires: Sequence[str], markers: Mapping[str, str] | None = None) -> str | None:
    """An exact ``torch==X`` in Requires-Dist (markers evaluated for the target; extras' pins ignored)."""
    for text in requires:
        try:
            req = Requirement(text)
        except InvalidRequirement:
            continue
        if canonicalize_name(req.name) != "torch":
            continue
        if req.marker is not None:
            if "extra" in str(req.marker):
                continue
            try:
                if not req.marker.evaluate(dict(markers or {})):
                    continue
            except Exception:  # noqa: BLE001 - an unknown marker variable: judge the pin anyway
                pass
        exact = [s for s in req.specifier if s.operator in ("==", "===") and "*" not in s.version]
        if exact:
            return exact[0].version
    return None


def torch_matches(built_for: str, installed: str | None, *, installed_cuda: str | None = None,
                  later_ok: bool = False) -> tuple[bool, str]:
    """(matches, why not).  ``built_for`` is a full version (``2.10.0+cu128``) or major.minor (``2.7``).

    An extension built on PyTorch's stable ABI (``later_ok``) also runs on any later torch; the CUDA major must
    match either way (the extension links that major's ``libcudart.so.N``).
    """
    if installed is None:
        return False, f"built for torch {built_for}, but torch is not installed"
    try:
        inst = Version(installed)
    except InvalidVersion:
        return True, ""
    if re.fullmatch(r"\d+\.\d+", built_for):
        if inst.release[:2] != tuple(int(x) for x in built_for.split(".")):
            return False, f"built for torch {built_for}.x, torch {installed} is installed"
        return True, ""
    try:
        want = Version(built_for)
    except InvalidVersion:
        return True, ""
    older = Version(inst.base_version) < Version(want.base_version)
    if want.base_version != inst.base_version and (older or not later_ok):
        return False, f"built for torch {built_for}, torch {installed} is installed"
    want_cuda = cuda_from_label(built_for)
    have_cuda = installed_cuda or cuda_from_label(installed)
    if want_cuda and have_cuda and split_cuda(want_cuda)[0] != split_cuda(have_cuda)[0]:
        return False, f"built for torch {built_for} (CUDA {want_cuda}), torch {installed} is for CUDA {have_cuda}"
    return True, ""


# --------------------------------------------------------------------------- the interpreter


def _interpreter_facts() -> dict:
    """Run *inside* the target interpreter started with ``-S``: its search path as ``site`` would build it, without
    running ``site`` (no .pth code, no sitecustomize) and without importing any installed package."""
    import os
    import platform
    import site
    import sys

    exe_dir = os.path.dirname(os.path.abspath(sys.executable))
    prefixes = [sys.prefix]
    venv_sites: list = []
    user_site = site.check_enableusersite()
    for conf in (os.path.join(exe_dir, "pyvenv.cfg"), os.path.join(os.path.dirname(exe_dir), "pyvenv.cfg")):
        if os.path.isfile(conf):  # a venv, as site.venv() reads it
            system_site = False
            with open(conf, encoding="utf-8") as fh:
                for line in fh:
                    key, sep, value = line.partition("=")
                    if sep and key.strip().lower() == "include-system-site-packages":
                        system_site = value.strip().lower() == "true"
            venv_prefix = os.path.dirname(exe_dir)
            # A venv's own folder as CPython's site.venv() adds it. Not site.getsitepackages(): Debian's patched
            # site.py answers dist-packages folders for a prefix when site has not marked the venv (as under -S).
            version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
            venv_sites = [os.path.join(venv_prefix, lib, version, "site-packages")
                          for lib in dict.fromkeys([getattr(sys, "platlibdir", "lib"), "lib"])]
            prefixes = [sys.prefix] if system_site else []
            user_site = user_site and system_site
            break
    paths = list(sys.path)
    sites = ([site.getusersitepackages()] if user_site else []) + venv_sites + (site.getsitepackages(prefixes) if prefixes else [])
    for d in sites:
        if not os.path.isdir(d):
            continue
        paths.append(d)
        for name in sorted(n for n in os.listdir(d) if n.endswith(".pth")):
            try:
                with open(os.path.join(d, name), encoding="utf-8", errors="replace") as fh:
                    for line in fh:
                        line = line.rstrip()
                        if line and not line.startswith(("#", "import ", "import\t")):
                            extra = os.path.join(d, line)
                            if os.path.isdir(extra):
                                paths.append(extra)
            except OSError:
                pass
    seen = set()
    ordered = []
    for p in paths:
        p = os.path.abspath(p or os.getcwd())
        if p not in seen and os.path.isdir(p):
            seen.add(p)
            ordered.append(p)
    impl = sys.implementation
    iv = impl.version
    markers = {
        "implementation_name": impl.name,
        "implementation_version": f"{iv.major}.{iv.minor}.{iv.micro}",
        "os_name": os.name,
        "platform_machine": platform.machine(),
        "platform_release": platform.release(),
        "platform_system": platform.system(),
        "platform_version": platform.version(),
        "python_full_version": platform.python_version(),
        "platform_python_implementation": platform.python_implementation(),
        "python_version": ".".join(platform.python_version_tuple()[:2]),
        "sys_platform": sys.platform,
    }
    return {"executable": sys.executable, "version": platform.python_version(), "paths": ordered, "markers": markers}


@dataclass(frozen=True)
class Interpreter:
    executable: str
    version: str
    paths: tuple[str, ...]
    markers: Mapping[str, str]


def probe_interpreter(python: str | os.PathLike[str]) -> Interpreter:
    """One ``python -S`` run that prints the interpreter's search path (see :func:`_interpreter_facts`)."""
    python = str(python)
    missing = ConfigError("doctor.no-python", f"{python}: no such interpreter",
                          "pass --python the python of the environment to check, e.g. .venv/bin/python")
    if os.sep in python and not os.path.exists(python):
        raise missing
    code = inspect.getsource(_interpreter_facts) + "import json\nprint(json.dumps(_interpreter_facts()))\n"
    try:
        proc = subprocess.run([python, "-S", "-c", code], capture_output=True, text=True, timeout=120, check=False)
    except FileNotFoundError:
        raise missing from None
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError("doctor.no-python", f"{python}: cannot run it ({exc})",
                          "pass --python an interpreter that starts, e.g. .venv/bin/python") from None
    try:
        data = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ConfigError("doctor.no-python", f"{python}: not a Python 3 interpreter that doctor can ask ({last[0]})",
                          "pass --python the python of the environment to check, e.g. .venv/bin/python") from None
    return Interpreter(executable=data["executable"], version=data["version"], paths=tuple(data["paths"]),
                       markers=data["markers"])


# --------------------------------------------------------------------------- distributions and their files


@dataclass
class Installed:
    name: str  # canonical
    display_name: str
    version: str
    location: str  # the site folder holding its dist-info
    requires: tuple[str, ...]
    dist: Any  # importlib.metadata.Distribution
    from_record: bool = True


def installed_distributions(paths: Sequence[str]) -> list[Installed]:
    """Every distribution on ``paths``, first one of each name wins (as imports would)."""
    import importlib.metadata as md

    found: dict[str, Installed] = {}
    for path in paths:
        for dist in md.distributions(path=[path]):
            meta = dist.metadata  # parsed on each access: once here
            raw_name = meta["Name"] if meta else None
            if not raw_name:
                continue
            name = canonicalize_name(raw_name)
            if name in found:
                continue
            requires = meta.get_all("Requires-Dist")
            if requires is None:
                requires = dist.requires or ()  # egg-info: requires.txt
            found[name] = Installed(name=name, display_name=raw_name, version=meta["Version"] or "?", location=path,
                                    requires=tuple(requires), dist=dist)
    return list(found.values())


_SHARED_OBJECT = re.compile(r"\.so(\.\d+)*$")
_NVIDIA_CU_DIR = re.compile(r"/nvidia/cu(\d+)/")


def library_files(inst: Installed) -> Iterator[Path]:
    """Shared objects of a distribution: the RECORD's ``.so`` files, else (no RECORD) its top-level folders walked."""
    record = inst.dist.read_text("RECORD")
    if record is not None:
        # RECORD is CSV (path, hash, size), paths relative to the site folder; only .so rows are parsed
        # (importlib's Distribution.files makes a path object of every row: torch has 15,000)
        for row in csv.reader(line for line in record.splitlines() if ".so" in line):
            if row and _SHARED_OBJECT.search(row[0]):
                yield Path(os.path.normpath(os.path.join(inst.location, row[0])))
        return
    files = inst.dist.files  # egg-info: SOURCES.txt / installed-files.txt
    if files is not None:
        for f in files:
            if _SHARED_OBJECT.search(f.name):
                yield Path(os.path.normpath(inst.dist.locate_file(f)))
        return
    inst.from_record = False
    tops = (inst.dist.read_text("top_level.txt") or "").split() or [inst.name.replace("-", "_")]
    for top in tops:
        root = Path(inst.location) / top
        if root.is_dir():
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames.sort()
                for fname in sorted(filenames):
                    if _SHARED_OBJECT.search(fname):
                        yield Path(dirpath, fname)


# --------------------------------------------------------------------------- report


@dataclass
class TargetGpu:
    name: str
    capability: str
    source: str  # "nvidia-smi", "--arch" or "configured"
    count: int = 1  # identical GPUs of the machine

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Driver:
    version: str | None
    cuda: str | None  # the newest CUDA it supports, "13.0"
    source: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Binary:
    path: str  # relative to the distribution's site folder
    file: str  # absolute
    size: int
    sass: tuple[str, ...]
    ptx: tuple[str, ...]
    verdicts: dict[str, str] = field(default_factory=dict)  # capability -> native / ptx-jit / no-kernel

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "file": self.file, "size": self.size, "sass": list(self.sass), "ptx": list(self.ptx),
                "verdicts": dict(self.verdicts)}


@dataclass
class Problem:
    verdict: str
    message: str
    gpu: str | None = None  # capability, when it is about one GPU

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Package:
    name: str
    version: str
    location: str
    verdict: str = "host-only"
    verdicts: dict[str, str] = field(default_factory=dict)  # capability -> verdict on that GPU
    cuda: str | None = None
    cuda_source: str | None = None
    torch_built_for: str | None = None
    torch_source: str | None = None
    torch_later_ok: bool = False  # built on PyTorch's stable ABI: later torch releases load it too
    binaries: list[Binary] = field(default_factory=list)  # those with device code
    host_binaries: int = 0
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    fixes: list[str] = field(default_factory=list)

    @property
    def fails(self) -> bool:
        return self.verdict in FAILING

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "version": self.version, "location": self.location, "verdict": self.verdict,
            "verdicts": dict(self.verdicts),
            "cuda": {"version": self.cuda, "source": self.cuda_source} if self.cuda else None,
            "torch": ({"built_for": self.torch_built_for, "source": self.torch_source,
                       "rule": "this or later (stable ABI)" if self.torch_later_ok else "exact"}
                      if self.torch_built_for else None),
            "binaries": [b.to_json() for b in self.binaries], "host_binaries": self.host_binaries,
            "problems": [p.to_json() for p in self.problems], "notes": list(self.notes), "fixes": list(self.fixes),
        }


@dataclass
class DoctorReport:
    python: str
    python_version: str
    paths: list[str]
    gpus: list[TargetGpu]
    driver: Driver
    torch: dict[str, str | None] | None
    packages: list[Package]
    distributions: int
    elf_files: int
    bytes_scanned: int
    seconds: float
    notes: list[str] = field(default_factory=list)

    @property
    def failing(self) -> list[Package]:
        return [p for p in self.packages if p.fails]

    def to_json(self) -> dict[str, Any]:
        return {
            "python": self.python, "python_version": self.python_version, "paths": list(self.paths),
            "gpus": [g.to_json() for g in self.gpus], "driver": self.driver.to_json(), "torch": self.torch,
            "packages": [p.to_json() for p in self.packages],
            "summary": {"distributions": self.distributions, "cuda_packages": len(self.packages),
                        "elf_files": self.elf_files, "bytes_scanned": self.bytes_scanned, "seconds": round(self.seconds, 3),
                        "failing": [p.name for p in self.failing]},
            "notes": list(self.notes),
        }


# --------------------------------------------------------------------------- the diagnosis


def gpus_to_check(archs: Sequence[str] | None, fallback: Sequence[str] = ()) -> tuple[list[TargetGpu], str | None, list[str]]:
    """(GPUs, driver version from nvidia-smi, notes).  ``archs`` replaces the GPUs found; with neither, ``fallback``."""
    from wheelforge.host.toolchain import detect_gpus

    found, driver = detect_gpus()
    notes: list[str] = []
    if archs:
        return [TargetGpu(name=f"sm_{a.replace('.', '')}", capability=a, source="--arch") for a in archs], driver, notes
    if found:
        gpus: dict[tuple[str, str], TargetGpu] = {}
        for g in found:
            key = (g.name, g.capability)
            if key in gpus:
                gpus[key].count += 1
            else:
                gpus[key] = TargetGpu(name=g.name, capability=g.capability, source="nvidia-smi")
        return list(gpus.values()), driver, notes
    notes.append(f"no GPU found (no nvidia-smi, or it lists none): judged for {', '.join(fallback) or 'nothing'} "
                 "(the configured arch); pass --arch for another")
    return [TargetGpu(name=f"sm_{a.replace('.', '')}", capability=a, source="configured") for a in fallback], driver, notes


def parse_gpu_archs(text: str | None) -> list[str] | None:
    """``--arch "9.0;12.0"`` -> ``["9.0", "12.0"]``: GPUs are compute capabilities, so no ``a``/``f``/``+PTX``."""
    if text is None or not str(text).strip():
        return None
    from wheelforge.model.arch import parse_arch_list

    out = []
    for a in parse_arch_list(str(text)):
        if a.suffix or a.ptx:
            raise ConfigError("doctor.arch", f"--arch {a}: a GPU is a compute capability, not a build target",
                              f"write {a.major}.{a.minor}")
        out.append(f"{a.major}.{a.minor}")
    return out


def resolve_driver(driver: str | None, smi_driver: str | None) -> tuple[Driver, list[str]]:
    """The driver version and the newest CUDA it supports: the driver's own answer, else the table."""
    from wheelforge.host.toolchain import driver_cuda_version

    if driver:
        cuda = cuda_for_driver(driver)
        return Driver(version=driver, cuda=cuda, source=f"--driver; {DRIVER_TABLE_SOURCE}"), []
    if smi_driver:
        reported = driver_cuda_version()
        if reported:
            return Driver(version=smi_driver, cuda=reported, source="libcuda cuDriverGetVersion"), []
        return Driver(version=smi_driver, cuda=cuda_for_driver(smi_driver), source=DRIVER_TABLE_SOURCE), []
    return Driver(version=None, cuda=None, source="none"), [
        "no NVIDIA driver found: the CUDA-versus-driver check is skipped (pass --driver to judge for another machine)"]


def _read_text(inst: Installed, rel: str) -> str | None:
    try:
        return Path(inst.dist.locate_file(rel)).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _xformers_build(inst: Installed) -> Mapping[str, Any] | None:
    text = _read_text(inst, "xformers/cpp_lib.json") if inst.name == "xformers" else None
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _torch_cuda(inst: Installed) -> str | None:
    text = _read_text(inst, "torch/version.py") or ""
    m = re.search(r"^cuda\b[^=]*=\s*['\"]([0-9.]+)['\"]", text, re.M)
    return m.group(1) if m else None


@dataclass
class _Scan:
    entries: tuple[FatbinEntry, ...]
    size: int
    error: str | None = None
    data_entries: int | None = None  # entries found outside .nv_fatbin; None: data sections not read


def _needs_data_scan(scan: _Scan, gpus: Sequence[TargetGpu], nvidia: bool) -> bool:
    """Look in the data sections only before judging a binary short of kernels (or, for NVIDIA's libraries, without
    any): reading them costs time (cuFFT's .ldata is 280 MB) and other libraries keep nothing there."""
    if scan.error or scan.data_entries is not None:
        return False
    if not loadable(scan.entries):
        return nvidia
    return any(kernel_verdict(scan.entries, Capability.parse(g.capability)) != "native" for g in gpus)


def _scan_library(path: Path, scanned: dict[tuple[int, int], _Scan], gpus: Sequence[TargetGpu], *,
                  nvidia: bool) -> _Scan | None:
    """The fatbin entries of one shared object, read once per (device, inode); None when it is gone."""
    try:
        st = path.stat()
    except OSError:
        return None  # listed in RECORD but gone, or a dangling link
    key = (st.st_dev, st.st_ino)
    if key not in scanned:
        try:
            scanned[key] = _Scan(tuple(list_entries(path)), st.st_size)
        except AuditError as err:
            scanned[key] = _Scan((), st.st_size, err.message)
    scan = scanned[key]
    if _needs_data_scan(scan, gpus, nvidia):
        try:
            found = list_data_section_entries(path)
        except AuditError as err:
            found, scan.error = [], err.message
        scan.data_entries = len(found)
        scan.entries += tuple(found)
    return scan


def _add_binary(pkg: Package, path: Path, scan: _Scan, gpus: Sequence[TargetGpu]) -> None:
    """Count a shared object into its package: a device binary with its lists and verdicts, or a host one."""
    rel = os.path.relpath(path, pkg.location)
    if scan.error:
        pkg.notes.append(f"unreadable: {scan.error}")
        return
    if scan.data_entries:
        secs = ", ".join(sorted({e.section for e in scan.entries if e.section != ".nv_fatbin"}))
        pkg.notes.append(f"{rel}: {scan.data_entries} fatbin entries in {secs}, outside .nv_fatbin (the library "
                         "registers them itself; cuobjdump does not list them)")
    if not loadable(scan.entries):
        pkg.host_binaries += 1
        return
    sass = sorted({e.arch for e in scan.entries if e.kind == "sass"}, key=_arch_order)
    ptx = sorted({e.arch.replace("sm_", "compute_") for e in scan.entries if e.kind == "ptx"}, key=_arch_order)
    verdicts = {g.capability: kernel_verdict(scan.entries, Capability.parse(g.capability)) for g in gpus}
    pkg.binaries.append(Binary(path=rel, file=str(path), size=scan.size, sass=tuple(sass), ptx=tuple(ptx), verdicts=verdicts))


def diagnose(python: str | os.PathLike[str] | None = None, *, archs: Sequence[str] | None = None,
             driver: str | None = None, fallback_archs: Sequence[str] = ("12.0",),
             recipe_dirs: Sequence[Path] | None = None) -> DoctorReport:
    """Judge every CUDA distribution of ``python``'s environment for each GPU (or each of ``archs``)."""
    t0 = time.perf_counter()
    interp = probe_interpreter(python or sys.executable)
    gpus, smi_driver, notes = gpus_to_check(archs, fallback_archs)
    drv, driver_notes = resolve_driver(driver, smi_driver)
    notes += driver_notes
    dists = installed_distributions(interp.paths)

    torch_inst = next((d for d in dists if d.name == "torch"), None)
    torch_cuda = _torch_cuda(torch_inst) if torch_inst else None
    torch_info = {"version": torch_inst.version, "cuda": torch_cuda} if torch_inst else None

    scanned: dict[tuple[int, int], _Scan] = {}  # by (device, inode): each library read once
    packages: list[Package] = []
    no_record = []
    for inst in dists:
        pkg = Package(name=inst.name, version=inst.version, location=inst.location)
        cuda_dirs: set[str] = set()
        for path in library_files(inst):
            m = _NVIDIA_CU_DIR.search(path.as_posix())
            if m:
                cuda_dirs.add(m.group(1))
            scan = _scan_library(path, scanned, gpus, nvidia=inst.name.startswith("nvidia-"))
            if scan is not None:
                _add_binary(pkg, path, scan, gpus)
        if not inst.from_record:
            no_record.append(inst.name)
        _evidence(pkg, inst, torch_inst, torch_cuda, interp.markers)
        if pkg.cuda is None and cuda_dirs:
            # CUDA 13 component wheels install into nvidia/cu13/ (CUDA 12 ones into nvidia/<library>/)
            majors = sorted(cuda_dirs)
            pkg.cuda, pkg.cuda_source = majors[-1], f"installed under nvidia/cu{majors[-1]}/"
        cuda_named = inst.name.startswith(("nvidia-", "cuda-")) and pkg.host_binaries > 0
        if not (pkg.binaries or pkg.cuda or pkg.torch_built_for or cuda_named):
            continue
        _judge(pkg, gpus, drv, torch_inst)
        packages.append(pkg)

    recipes = _recipes_by_project(recipe_dirs)
    for pkg in packages:
        pkg.fixes = fixes_for(pkg, gpus, drv, torch_info, recipes)
    packages.sort(key=lambda p: (VERDICTS.index(p.verdict), p.name))
    if no_record:
        notes.append(f"{len(no_record)} distributions have no RECORD; their top-level folders were walked: "
                     + ", ".join(sorted(no_record)[:8]) + (" ..." if len(no_record) > 8 else ""))
    return DoctorReport(python=interp.executable, python_version=interp.version, paths=list(interp.paths), gpus=gpus,
                        driver=drv, torch=torch_info, packages=packages, distributions=len(dists),
                        elf_files=len(scanned), bytes_scanned=sum(x.size for x in scanned.values()),
                        seconds=time.perf_counter() - t0,
                        notes=notes)


def _arch_order(name: str) -> tuple[int, str]:
    m = re.search(r"(\d+)([a-z]*)$", name)
    return (int(m.group(1)), m.group(2)) if m else (0, name)


def _evidence(pkg: Package, inst: Installed, torch_inst: Installed | None, torch_cuda: str | None,
              markers: Mapping[str, str]) -> None:
    """Which CUDA and which torch the distribution was built for, and where that was read."""
    xf = _xformers_build(inst)
    if inst.name == "torch" and torch_cuda:
        pkg.cuda, pkg.cuda_source = torch_cuda, "torch/version.py"
    elif cuda_from_label(inst.version):
        pkg.cuda, pkg.cuda_source = cuda_from_label(inst.version), f"version label {inst.version}"
    elif xf and cuda_from_cpp_lib(xf):
        pkg.cuda, pkg.cuda_source = cuda_from_cpp_lib(xf), "xformers/cpp_lib.json"
    else:
        named = cuda_from_name(inst.name, inst.version)
        if named:
            pkg.cuda, pkg.cuda_source = named
    if inst.name == "torch":
        return
    built = (xf or {}).get("version", {}).get("torch") if xf else None
    if isinstance(built, str) and built:
        pkg.torch_built_for, pkg.torch_source = built, "xformers/cpp_lib.json"
        # xformers 0.0.34 moved to the PyTorch stable ABI: "binary builds targeting PyTorch 2.10+ will be compatible
        # with any later version" (xformers CHANGELOG.md; setup.py compiles with -DTORCH_STABLE_ONLY)
        try:
            pkg.torch_later_ok = Version(inst.version) >= Version("0.0.34")
        except InvalidVersion:
            pass
        return
    pin = torch_pin(inst.requires, markers)
    if pin:
        pkg.torch_built_for, pkg.torch_source = pin, f"Requires-Dist: torch=={pin}"
        return
    m = _TORCH_IN_LABEL.search(inst.version.partition("+")[2])
    if m:
        pkg.torch_built_for, pkg.torch_source = f"{m.group(1)}.{m.group(2)}", f"version label {inst.version}"


def _names(binaries: Sequence[Binary], limit: int = 3) -> str:
    names = [b.path for b in binaries[:limit]]
    more = len(binaries) - limit
    return ", ".join(names) + (f" and {more} more" if more > 0 else "")


def _has(b: Binary) -> str:
    parts = []
    if b.sass:
        parts.append("SASS " + " ".join(b.sass))
    if b.ptx:
        parts.append("PTX " + " ".join(b.ptx))
    return "; ".join(parts) or "no SASS or PTX"


def judged_binaries(pkg: Package, cc: str) -> tuple[list[Binary], list[Binary]]:
    """(binaries the package's verdict on ``cc`` follows, binaries only noted).

    Every device binary counts, the worst deciding -- except in NVIDIA's component wheels (``nvidia-*``), which
    bundle optional pieces by design (cuFFT's libcufftw, the FFTW-interface wrapper, carries one sm_75 helper
    cubin; cuDNN compiles engines at run time where no precompiled one fits): those are judged by their best
    binary, and binaries short of kernels are named in the notes.
    """
    if not pkg.name.startswith("nvidia-"):
        return list(pkg.binaries), []
    rank = {"native": 0, "ptx-jit": 1, "no-kernel": 2}
    best = min(rank[b.verdicts[cc]] for b in pkg.binaries)
    counted = [b for b in pkg.binaries if rank[b.verdicts[cc]] == best]
    return counted, [b for b in pkg.binaries if b not in counted]


def _judge(pkg: Package, gpus: Sequence[TargetGpu], drv: Driver, torch_inst: Installed | None) -> None:
    """The package's verdict per GPU and overall, with one problem per reason."""
    for gpu in gpus:
        cc = gpu.capability
        if not pkg.binaries:
            pkg.verdicts[cc] = "host-only"
            continue
        sm = "sm_" + cc.replace(".", "")
        where = sm if gpu.name == sm else f"{sm} ({gpu.name})"
        counted, noted = judged_binaries(pkg, cc)
        for b in noted:
            pkg.notes.append(f"{b.path}: {b.verdicts[cc]} for {sm} (has {_has(b)}); judged by the package's best binary "
                             "(an NVIDIA component wheel)")
        missing = [b for b in counted if b.verdicts[cc] == "no-kernel"]
        jit = [b for b in counted if b.verdicts[cc] == "ptx-jit"]
        if missing:
            pkg.verdicts[cc] = "no-kernel"
            pkg.problems.append(Problem("no-kernel", f"no kernel for {where} in {len(missing)} of {len(pkg.binaries)} "
                                        f"device binaries: {_names(missing)} (has {_has(missing[0])})", cc))
        elif jit and ptx_newer_than_driver(pkg.cuda, drv.cuda):
            pkg.verdicts[cc] = "no-kernel"
            pkg.problems.append(Problem("no-kernel", f"only PTX for {where} in {_names(jit)}, made by CUDA {pkg.cuda}: the "
                                        f"CUDA {drv.cuda} driver cannot JIT-compile it", cc))
        elif jit:
            pkg.verdicts[cc] = "ptx-jit"
            pkg.problems.append(Problem("ptx-jit", f"only PTX for {where} in {_names(jit)} (has {_has(jit[0])}): the "
                                        "driver JIT-compiles it at first start; no arch-specific kernels", cc))
        else:
            pkg.verdicts[cc] = "native"
    verdict, note = driver_check(pkg.cuda, drv.cuda)
    if verdict:
        pkg.problems.append(Problem(verdict, f"{note} (driver {drv.version})"))
    elif note:
        pkg.notes.append(note)
    if pkg.torch_built_for:
        ok, why = torch_matches(pkg.torch_built_for, torch_inst.version if torch_inst else None, later_ok=pkg.torch_later_ok,
                                installed_cuda=_torch_cuda(torch_inst) if torch_inst else None)
        if not ok:
            pkg.problems.append(Problem("torch-mismatch", f"{why} ({pkg.torch_source})"))
    pkg.verdict = worst([*pkg.verdicts.values(), *(p.verdict for p in pkg.problems)]) or "host-only"


# --------------------------------------------------------------------------- fixes


def _recipes_by_project(dirs: Sequence[Path] | None) -> dict[str, Any]:
    from wheelforge.model.errors import RecipeError
    from wheelforge.model.recipe import all_recipes, recipe_dirs

    try:
        recipes = all_recipes(list(dirs) if dirs is not None else recipe_dirs())
    except RecipeError:
        return {}
    return {r.project: r for r in recipes.values()}


def fixes_for(pkg: Package, gpus: Sequence[TargetGpu], drv: Driver, torch_info: Mapping[str, str | None] | None,
              recipes: Mapping[str, Any]) -> list[str]:
    """What to run (a bundled recipe) or what to ask upstream for, per problem."""
    kinds = {p.verdict for p in pkg.problems}
    if not kinds:
        return []
    recipe = recipes.get(pkg.name)
    archs = list(dict.fromkeys(g.capability for g in gpus))  # the rebuilt package replaces this one: every GPU
    arch_flag = archs[0] if len(archs) == 1 else '"' + ";".join(archs) + '"'
    out: list[str] = []
    if recipe is not None:
        cmd = f"python3 -m invoke build {recipe.name} --arch {arch_flag}"
        builds_on_torch = "torch" in recipe.build.recipes and recipe.name != "torch"
        if builds_on_torch and torch_info:
            if torch_info.get("cuda"):
                cmd += f" --cuda {torch_info['cuda']}"
            cmd += f" --with torch=={torch_info['version']}"
        elif "driver-too-old" in kinds and drv.cuda:
            cmd += f" --cuda {drv.cuda}"
        out.append(cmd)
    else:
        sms = ", ".join("sm_" + a.replace(".", "") for a in archs)
        if kinds & {"no-kernel", "ptx-jit"}:
            out.append(f"no wheelforge recipe for {pkg.name}: ask its maintainers for a wheel with SASS for {sms} "
                       f"(TORCH_CUDA_ARCH_LIST / CMAKE_CUDA_ARCHITECTURES), or add a recipe (docs/recipes.md)")
        if "torch-mismatch" in kinds and torch_info:
            out.append(f"install a {pkg.name} built for torch {torch_info['version']}, or the torch it was built for "
                       f"({pkg.torch_built_for})")
        if "driver-too-old" in kinds and drv.cuda:
            out.append(f"install the CUDA {split_cuda(drv.cuda)[0]} build of {pkg.name}")
    if "driver-too-old" in kinds and pkg.cuda:
        major = split_cuda(pkg.cuda)[0]
        floor = MAJOR_FLOORS.get(major)
        out.append(f"or update the NVIDIA driver to the R{floor} branch or newer (CUDA {major}.x runs there by minor version "
                   "compatibility)" if floor else f"or update the NVIDIA driver to one for CUDA {pkg.cuda}")
    return out
