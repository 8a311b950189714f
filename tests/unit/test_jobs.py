"""jobs = min(cores, free memory / RAM per job), reading a fake /proc and cgroup tree."""

from __future__ import annotations

from pathlib import Path

from wheelforge.host.memory import GIB, MemoryFacts, cgroup_headroom, choose_jobs, mem_available, memory_facts


def _meminfo(tmp_path: Path, gib: float) -> Path:
    p = tmp_path / "meminfo"
    p.write_text(f"MemTotal:       99999999 kB\nMemFree:  1 kB\nMemAvailable:   {int(gib * 1024 * 1024)} kB\n")
    return p


def _v2(tmp_path: Path, limit: str, current: int) -> tuple[Path, Path]:
    root = tmp_path / "cg"
    grp = root / "build.slice"
    grp.mkdir(parents=True)
    (grp / "memory.max").write_text(limit + "\n")
    (grp / "memory.current").write_text(f"{current}\n")
    proc = tmp_path / "proc-cgroup"
    proc.write_text("0::/build.slice\n")
    return root, proc


def test_mem_available_reads_kib(tmp_path: Path) -> None:
    assert mem_available(_meminfo(tmp_path, 8)) == 8 * GIB


def test_cgroup_v2_limit_wins_over_memavailable(tmp_path: Path) -> None:
    root, proc = _v2(tmp_path, str(6 * GIB), 1 * GIB)
    facts = memory_facts(cgroup_root=root, proc_cgroup=proc, meminfo=_meminfo(tmp_path, 100))
    assert facts.available == 5 * GIB
    assert "memory.max" in facts.source
    jobs, why = choose_jobs(2.0, cores=16, memory=facts)
    assert jobs == 2  # 5 GiB / 2 GiB per job
    assert "16 cores" in why and "cgroup" in why


def test_cgroup_v2_max_means_unlimited(tmp_path: Path) -> None:
    root, proc = _v2(tmp_path, "max", 0)
    facts = memory_facts(cgroup_root=root, proc_cgroup=proc, meminfo=_meminfo(tmp_path, 32))
    assert facts == MemoryFacts(32 * GIB, "MemAvailable")
    assert choose_jobs(4.5, cores=16, memory=facts)[0] == 7


def test_cgroup_v1_limit(tmp_path: Path) -> None:
    mem = tmp_path / "cg" / "memory"
    mem.mkdir(parents=True)
    (mem / "memory.limit_in_bytes").write_text(str(4 * GIB))
    (mem / "memory.usage_in_bytes").write_text("0")
    proc = tmp_path / "proc-cgroup"
    proc.write_text("4:memory:/\n0::/\n")
    room, where = cgroup_headroom(tmp_path / "cg", proc)
    assert room == 4 * GIB and where.endswith("memory.limit_in_bytes")


def test_v1_unlimited_sentinel_is_ignored(tmp_path: Path) -> None:
    mem = tmp_path / "cg" / "memory"
    mem.mkdir(parents=True)
    (mem / "memory.limit_in_bytes").write_text("9223372036854771712")
    assert cgroup_headroom(tmp_path / "cg", tmp_path / "missing")[0] is None


def test_cores_bound_and_override() -> None:
    plenty = MemoryFacts(512 * GIB, "MemAvailable")
    assert choose_jobs(1.0, cores=2, memory=plenty)[0] == 2
    jobs, why = choose_jobs(1.0, cores=2, override=7, memory=plenty)
    assert jobs == 7 and "--jobs" in why


def test_too_little_memory_still_one_job_with_warning() -> None:
    jobs, why = choose_jobs(8.0, cores=16, memory=MemoryFacts(3 * GIB, "MemAvailable"))
    assert jobs == 1 and "OOM" in why


def test_unknown_memory_falls_back_to_cores() -> None:
    assert choose_jobs(4.0, cores=3, memory=MemoryFacts(None, "unknown")) == (3, "3 jobs = cores (available memory unknown)")
