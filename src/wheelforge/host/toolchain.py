"""Toolchain detection: nvcc, host compiler, cmake, ninja, compiler caches, driver, GPUs.

This module runs read-only probes; its result, :class:`~wheelforge.model.facts.ToolchainFacts`,
is plain data, so the planner stays pure and tests build facts by hand.  Probing nvcc alone
takes over a second, so :func:`detect_cached` keeps the facts in the cache folder, keyed by a
fingerprint of the binaries they came from (paths, mtimes, sizes).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from packaging.version import Version

from wheelforge.host.process import output_of
from wheelforge.model.arch import CudaArch, check_toolkit_supports
from wheelforge.model.errors import ToolchainError
from wheelforge.model.facts import KNOWN_GCC_LIMITS, Gpu, Tool, ToolchainFacts


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
        said = output_of([str(nvcc), "--version"], env) or ""
        m = re.search(r"release (\d+\.\d+)", said)
        full = re.search(r"release \d+\.\d+, V(\d+\.\d+\.\d+)", said)
        home = _cuda_home_of(nvcc)
        if not m or home in homes:
            continue
        homes.add(home)
        version = m.group(1)
        archs = tuple((output_of([str(nvcc), "--list-gpu-arch"], env) or "").split())
        limit = _gcc_limit(home) or KNOWN_GCC_LIMITS.get(version)
        results.append(ToolchainFacts(cuda_version=version, nvcc_version=full.group(1) if full else None, cuda_home=str(home), nvcc=str(nvcc), nvcc_archs=archs,
                                      host_compiler_limit=limit, **common))
    return results or [ToolchainFacts(**common)]


def _common_tools(env: Mapping[str, str]) -> dict[str, Any]:
    def tool(name: str, args: list[str]) -> Tool | None:
        path = shutil.which(name, path=env.get("PATH"))
        if not path:
            return None
        version = _first_version(output_of([path, *args], env))
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
        out = output_of([smi, "--query-gpu=name,compute_cap,driver_version", "--format=csv,noheader"], env) or ""
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
    """Pick the toolkit for ``requested`` ("12.8" or "auto"); fail naming what was found and how to use it."""
    with_cuda = [f for f in all_facts if f.cuda_version]
    if requested == "auto":
        if not with_cuda:
            raise ToolchainError(
                "toolchain.no-cuda", "no CUDA toolkit found (looked in CUDA_HOME, CUDA_PATH, PATH and /usr/local/cuda*)",
                "install a CUDA toolkit (12.8 for the default target) and set CUDA_HOME",
            )
        return with_cuda[0]
    match = matching(all_facts, requested)
    if match is not None:
        return match
    if not with_cuda:
        raise ToolchainError(
            "toolchain.no-cuda", f"the target asks for CUDA {requested} but no CUDA toolkit was found (looked in CUDA_HOME, CUDA_PATH, PATH and /usr/local/cuda*)",
            f"install CUDA {requested} and set CUDA_HOME to it",
        )
    found = ", ".join(f"CUDA {f.cuda_version} at {f.cuda_home}" for f in with_cuda)
    raise ToolchainError(
        "toolchain.cuda-mismatch",
        f"the target asks for CUDA {requested}, which is not installed; found {found}",
        f"to build for CUDA {with_cuda[0].cuda_version} instead, pass --cuda auto (or --cuda {with_cuda[0].cuda_version}), "
        f'or set cuda = "auto" under [tool.wheelforge] in pyproject.toml; for {requested} itself, install it and set CUDA_HOME',
    )


def matching(all_facts: list[ToolchainFacts], requested: str) -> ToolchainFacts | None:
    """The toolkit of CUDA ``requested`` (major.minor) among those found, or None."""
    for f in all_facts:
        if f.cuda_version and Version(f.cuda_version).release[:2] == Version(requested).release[:2]:
            return f
    return None


def check_host_compiler(facts: ToolchainFacts) -> None:
    if facts.host_compiler_ok is False:
        assert facts.host_compiler is not None
        raise ToolchainError(
            "toolchain.host-compiler",
            f"CUDA {facts.cuda_version} accepts GCC <= {facts.host_compiler_limit}, but {facts.host_compiler.path} is GCC {facts.host_compiler.version}",
            f"install gcc-{facts.host_compiler_limit} and set CC/CXX (and CUDAHOSTCXX) to it",
        )


# --------------------------------------------------------------------------- cache


def _fingerprint(env: Mapping[str, str]) -> str:
    h = hashlib.sha256()
    for var in ("PATH", "CUDA_HOME", "CUDA_PATH", "CXX"):
        h.update(f"{var}={env.get(var, '')}\n".encode())
    files = [str(p) for p in find_nvcc(env)]
    for name in (env.get("CXX") or "g++", "cmake", "ninja", "ccache", "sccache", "nvidia-smi"):
        files.append(shutil.which(name, path=env.get("PATH")) or f"-{name}")
    for f in files:
        try:
            st = os.stat(f)
            h.update(f"{f}:{os.path.realpath(f)}:{st.st_mtime_ns}:{st.st_size}\n".encode())
        except OSError:
            h.update(f"{f}:absent\n".encode())
    return h.hexdigest()[:32]


def detect_cached(cache_dir: Path, env: Mapping[str, str] | None = None, *, refresh: bool = False) -> list[ToolchainFacts]:
    """:func:`detect_all` behind a cache in ``<cache_dir>/toolchain/``, keyed by the binaries' paths and mtimes."""
    env = dict(os.environ if env is None else env)
    path = Path(cache_dir) / "toolchain" / f"{_fingerprint(env)}.json"
    if not refresh:
        try:
            return [ToolchainFacts.from_json(x) for x in json.loads(path.read_text())]
        except (OSError, ValueError, TypeError):
            pass
    found = detect_all(env)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps([f.to_json() for f in found]))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache only costs speed
    return found


def resolve(cache_dir: Path, requested: str, env: Mapping[str, str] | None = None, archs: tuple[CudaArch, ...] = ()) -> ToolchainFacts:
    """The toolkit for ``requested`` ("auto" = first found), host compiler checked; fails naming what was found.

    ``archs`` are checked against the requested CUDA first (its nvcc's list when that toolkit is here, else
    the table): ``--cuda 11.8 --arch 12.0`` is an arch that CUDA cannot build, whether or not 11.8 is installed.
    """
    found = detect_cached(cache_dir, env)
    if archs and requested != "auto":
        match = matching(found, requested)
        check_toolkit_supports(archs, requested, match.nvcc_archs if match else ())
    facts = select(found, requested)
    check_host_compiler(facts)
    return facts
