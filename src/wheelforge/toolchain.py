"""Toolchain detection: nvcc, host compiler, cmake, ninja, compiler caches, driver, GPUs.

This module runs processes (read-only probes). Its result, :class:`ToolchainFacts`,
is plain data so the planner stays pure and tests can build facts by hand.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from packaging.version import Version

from .errors import ToolchainError

#: Newest GCC major each CUDA release accepts, for toolkits not present here.
#: For a toolkit that is present we read its own crt/host_config.h instead.
#: 12.8: GCC 14 (NVIDIA's CUDA 12.8 installation guide; team notes). 13.0: GCC 15 (read from 13.0's host_config.h).
#: 12.4-12.6: GCC 13; 12.0-12.3: GCC 12 (installation guides of those releases).
KNOWN_GCC_LIMITS = {"12.0": 12, "12.1": 12, "12.2": 12, "12.3": 12, "12.4": 13, "12.5": 13, "12.6": 13, "12.8": 14, "12.9": 14, "13.0": 15}


@dataclass(frozen=True)
class Tool:
    path: str
    version: str


@dataclass(frozen=True)
class Gpu:
    name: str
    capability: str  # "9.0"


@dataclass(frozen=True)
class ToolchainFacts:
    cuda_version: str | None = None
    cuda_home: str | None = None
    nvcc: str | None = None
    nvcc_archs: tuple[str, ...] = ()  # "sm_120", "compute_120", ...
    host_compiler: Tool | None = None
    host_compiler_limit: int | None = None  # newest GCC major the toolkit accepts
    cmake: Tool | None = None
    ninja: Tool | None = None
    ccache: Tool | None = None
    sccache: Tool | None = None
    driver_version: str | None = None
    gpus: tuple[Gpu, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def host_compiler_ok(self) -> bool | None:
        if self.host_compiler is None or self.host_compiler_limit is None:
            return None
        return int(self.host_compiler.version.split(".")[0]) <= self.host_compiler_limit


def _run(cmd: list[str], env: Mapping[str, str] | None = None) -> str | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, env=dict(env) if env else None, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


def _first_version(text: str | None) -> str | None:
    if not text:
        return None
    m = re.search(r"(\d+\.\d+(?:\.\d+)?)", text)
    return m.group(1) if m else None


def find_nvcc(env: Mapping[str, str]) -> list[Path]:
    """Candidate nvcc binaries in search order: CUDA_HOME, CUDA_PATH, PATH, /usr/local/cuda*."""
    found: list[Path] = []
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if env.get(var):
            found.append(Path(env[var]) / "bin" / "nvcc")
    on_path = shutil.which("nvcc", path=env.get("PATH"))
    if on_path:
        found.append(Path(on_path))
    found.append(Path("/usr/local/cuda/bin/nvcc"))
    found.extend(sorted(Path("/usr/local").glob("cuda-*/bin/nvcc"), reverse=True))
    seen, out = set(), []
    for p in found:
        if p.is_file() and os.access(p, os.X_OK):
            real = p.resolve()
            if real not in seen:
                seen.add(real)
                out.append(p)
    return out


def _cuda_home_of(nvcc: Path) -> Path:
    text = nvcc.read_bytes()[:512]
    # Wrapper scripts such as /usr/local/bin/nvcc exec the real one; follow them.
    m = re.search(rb"exec\s+(\S+/bin/nvcc)", text)
    if m:
        return Path(m.group(1).decode()).resolve().parent.parent
    return nvcc.resolve().parent.parent


def _gcc_limit(cuda_home: Path) -> int | None:
    for header in (cuda_home / "include/crt/host_config.h", *cuda_home.glob("targets/*/include/crt/host_config.h")):
        if header.is_file():
            m = re.search(r"#if __GNUC__ > (\d+)", header.read_text(errors="replace"))
            if m:
                return int(m.group(1))
    return None


def detect_all(env: Mapping[str, str] | None = None) -> list[ToolchainFacts]:
    """One facts record per distinct CUDA toolkit found (first = preferred)."""
    env = dict(os.environ if env is None else env)
    common = _common_tools(env)
    results: list[ToolchainFacts] = []
    homes: set[Path] = set()
    for nvcc in find_nvcc(env):
        m = re.search(r"release (\d+\.\d+)", _run([str(nvcc), "--version"], env) or "")
        home = _cuda_home_of(nvcc)
        if not m or home in homes:
            continue
        homes.add(home)
        version = m.group(1)
        archs = tuple((_run([str(nvcc), "--list-gpu-arch"], env) or "").split())
        limit = _gcc_limit(home) or KNOWN_GCC_LIMITS.get(version)
        results.append(ToolchainFacts(cuda_version=version, cuda_home=str(home), nvcc=str(nvcc), nvcc_archs=archs,
                                      host_compiler_limit=limit, **common))
    return results or [ToolchainFacts(**common)]


def _common_tools(env: Mapping[str, str]) -> dict[str, Any]:
    def tool(name: str, args: list[str]) -> Tool | None:
        path = shutil.which(name, path=env.get("PATH"))
        if not path:
            return None
        version = _first_version(_run([path, *args], env))
        return Tool(path=path, version=version or "unknown")

    cxx = env.get("CXX") or "g++"
    facts: dict[str, Any] = {
        "host_compiler": tool(cxx, ["-dumpfullversion"]) or tool(cxx, ["--version"]),
        "cmake": tool("cmake", ["--version"]),
        "ninja": tool("ninja", ["--version"]),
        "ccache": tool("ccache", ["--version"]),
        "sccache": tool("sccache", ["--version"]),
    }
    facts["gpus"], facts["driver_version"] = detect_gpus(env)
    return facts


def detect_gpus(env: Mapping[str, str] | None = None) -> tuple[tuple[Gpu, ...], str | None]:
    """GPUs (name, compute capability) and the driver version, from one ``nvidia-smi`` query; none without it."""
    env = dict(os.environ if env is None else env)
    smi = shutil.which("nvidia-smi", path=env.get("PATH"))
    gpus: list[Gpu] = []
    driver = None
    if smi:
        out = _run([smi, "--query-gpu=name,compute_cap,driver_version", "--format=csv,noheader"], env) or ""
        for line in out.strip().splitlines():
            parts = [p.strip() for p in line.split(",")]
            if len(parts) == 3:
                gpus.append(Gpu(name=parts[0], capability=parts[1]))
                driver = parts[2]
    return tuple(gpus), driver


def driver_cuda_version() -> str | None:
    """The newest CUDA the installed driver supports ("13.0"), as the driver itself reports it.

    ``cuDriverGetVersion`` of the driver's ``libcuda.so.1`` (CUDA Driver API; it needs no ``cuInit``
    and creates no context); the number ``nvidia-smi`` prints as "CUDA Version".  None where no
    driver library can be loaded (no NVIDIA driver, e.g. a build machine).
    """
    import ctypes

    try:
        lib = ctypes.CDLL("libcuda.so.1")
        version = ctypes.c_int(0)
        if lib.cuDriverGetVersion(ctypes.byref(version)) != 0 or version.value <= 0:
            return None
    except (OSError, AttributeError):
        return None
    return f"{version.value // 1000}.{version.value % 1000 // 10}"


def select(all_facts: list[ToolchainFacts], requested: str) -> ToolchainFacts:
    """Pick the toolkit for ``requested`` ("12.8" or "auto"); fail naming both versions and the fixes."""
    with_cuda = [f for f in all_facts if f.cuda_version]
    if requested == "auto":
        if not with_cuda:
            raise ToolchainError(
                "toolchain.no-cuda", "no CUDA toolkit found (looked in CUDA_HOME, CUDA_PATH, PATH and /usr/local/cuda*)",
                "install a CUDA toolkit (12.8 for the default target) and set CUDA_HOME",
            )
        return with_cuda[0]
    for f in with_cuda:
        if Version(f.cuda_version).release[:2] == Version(requested).release[:2]:
            return f
    found = ", ".join(f"CUDA {f.cuda_version} at {f.cuda_home}" for f in with_cuda) or "no CUDA toolkit"
    alt = with_cuda[0].cuda_version if with_cuda else "X"
    raise ToolchainError(
        "toolchain.cuda-mismatch",
        f"the target asks for CUDA {requested} but found {found}",
        f"install CUDA {requested} and point CUDA_HOME at it, or build for the toolkit you have with --cuda {alt} (or --cuda auto)",
    )


def check_host_compiler(facts: ToolchainFacts) -> None:
    if facts.host_compiler_ok is False:
        assert facts.host_compiler is not None
        raise ToolchainError(
            "toolchain.host-compiler",
            f"CUDA {facts.cuda_version} accepts GCC <= {facts.host_compiler_limit}, but {facts.host_compiler.path} is GCC {facts.host_compiler.version}",
            f"install gcc-{facts.host_compiler_limit} and set CC/CXX (and CUDAHOSTCXX) to it",
        )


def requested_facts(requested: str) -> ToolchainFacts:
    """Facts for a toolkit that is not installed, used by ``plan --cuda 12.8`` on machines without it."""
    return ToolchainFacts(cuda_version=requested, host_compiler_limit=KNOWN_GCC_LIMITS.get(requested),
                          notes=(f"CUDA {requested} is not installed here: planned from the request only",))
