"""How many parallel compile jobs fit: ``min(cores, memory / RAM per job)``.

nvcc jobs of big CUDA projects take several GiB each; running one per core on a
small-memory box ends with the OOM killer.  Memory is the smaller of the kernel's
``MemAvailable`` and what the container's cgroup (v2 ``memory.max`` or v1
``memory.limit_in_bytes``) still allows.  Every path is a parameter so tests can
point at a fake ``/proc`` and cgroup tree.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

GIB = 1024**3
#: v1 reports "no limit" as a page-rounded LONG_MAX; anything this large is no limit.
_UNLIMITED = 1 << 60


@dataclass(frozen=True)
class MemoryFacts:
    available: int | None  # bytes usable now, after every limit
    source: str  # which file decided it, for the printed reason


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if text == "max" or not text:
        return None
    try:
        value = int(text)
    except ValueError:
        return None
    return None if value >= _UNLIMITED else value


def mem_available(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """``MemAvailable`` in bytes (None when the file is unreadable)."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_paths(proc_cgroup: Path) -> dict[str, str]:
    """Controller -> path from ``/proc/self/cgroup`` (v2's line is keyed "")."""
    out: dict[str, str] = {}
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) == 3:
            for ctrl in parts[1].split(",") if parts[1] else [""]:
                out[ctrl] = parts[2]
    return out


def cgroup_headroom(cgroup_root: Path = Path("/sys/fs/cgroup"), proc_cgroup: Path = Path("/proc/self/cgroup")) -> tuple[int | None, str]:
    """Bytes the cgroup still allows (limit - usage), and the limit file; (None, "") when unlimited.

    Inside a container the cgroup namespace usually makes our own group the mount's
    root, so both ``<root>/<path>`` and ``<root>`` are tried; the tightest wins.
    """
    paths = _cgroup_paths(proc_cgroup)
    best: tuple[int | None, str] = (None, "")
    candidates: list[tuple[Path, str, str]] = []
    v2 = paths.get("", "/").lstrip("/")
    for d in {cgroup_root / v2, cgroup_root}:
        candidates.append((d, "memory.max", "memory.current"))
    v1 = paths.get("memory", "/").lstrip("/")
    for d in {cgroup_root / "memory" / v1, cgroup_root / "memory"}:
        candidates.append((d, "memory.limit_in_bytes", "memory.usage_in_bytes"))
    for d, limit_name, usage_name in candidates:
        limit = _read_int(d / limit_name)
        if limit is None:
            continue
        usage = _read_int(d / usage_name) or 0
        room = max(limit - usage, 0)
        if best[0] is None or room < best[0]:
            best = (room, str(d / limit_name))
    return best


def memory_facts(cgroup_root: Path = Path("/sys/fs/cgroup"), proc_cgroup: Path = Path("/proc/self/cgroup"),
                 meminfo: Path = Path("/proc/meminfo")) -> MemoryFacts:
    avail = mem_available(meminfo)
    room, limit_file = cgroup_headroom(cgroup_root, proc_cgroup)
    if room is not None and (avail is None or room < avail):
        return MemoryFacts(room, f"cgroup limit {limit_file}")
    return MemoryFacts(avail, "MemAvailable" if avail is not None else "unknown")


def cpu_count() -> int:
    """Cores this process may run on (affinity mask, not the host's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def choose_jobs(ram_per_job_gb: float, *, cores: int | None = None, override: int | None = None,
                memory: MemoryFacts | None = None) -> tuple[int, str]:
    """``(jobs, reason)``; the reason is the line ``build`` prints."""
    cores = cores or cpu_count()
    if override is not None:
        return override, f"{override} jobs (set by --jobs / WHEELFORGE_JOBS; {cores} cores)"
    memory = memory or memory_facts()
    if memory.available is None:
        return cores, f"{cores} jobs = cores (available memory unknown)"
    by_ram = int(memory.available // int(ram_per_job_gb * GIB)) if ram_per_job_gb > 0 else cores
    jobs = max(1, min(cores, by_ram))
    gib = memory.available / GIB
    why = f"{jobs} jobs = min({cores} cores, {gib:.1f} GiB free ({memory.source}) / {ram_per_job_gb:g} GiB per job = {by_ram})"
    if by_ram < 1:
        why += "; memory is short even for one job, expect the OOM killer"
    return jobs, why
