"""Figure 10: ``invoke doctor`` over a whole environment, against cuobjdump over the same device files.

The environment is the interpreter in ``WHEELFORGE_BENCH_PYTHON``, else a venv made here
(bench/raw/doctor/venv) with real CUDA wheels from PyPI, pinned in ``BENCH_WHEELS`` (about 3 GB).

* doctor: :func:`wheelforge.verify.doctor.diagnose` end to end (interpreter probe, every dist-info, every
  shared object read once), one run to warm the page cache, then ``RUNS`` runs: median;
* cuobjdump: ``cuobjdump --list-elf --list-ptx FILE`` for each device binary doctor found, one after
  the other (warm cache, after the doctor runs), stopping at ``budget`` seconds if one is given; then
  the fatbin reader alone (``list_entries``) over the same files, and the two listings compared
  entry by entry (cuobjdump prints family cubins ``sm_120f`` as ``sm_120``).

``bench/device/doctor_gpu.py`` calls :func:`measure_env` on the GPU machine for the same row there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from . import REPO, make_row, median

NEEDS_GPU = False
FIGURE = "10"
RUNS = 5
BENCH_DIR = REPO / "bench" / "raw" / "doctor"
#: the latest of each on PyPI when this figure was written (installed --no-deps: only their files matter)
BENCH_WHEELS = (
    "cupy-cuda13x==14.2.0", "nvidia-cublas==13.10.0.20", "nvidia-cuda-runtime==13.5.37", "nvidia-cudnn-cu13==9.28.1.4",
    "nvidia-nccl-cu13==2.32.3", "jax-cuda13-plugin==0.10.2", "jax-cuda13-pjrt==0.12.0.1", "nvidia-cufft==12.5.0.14",
    "nvidia-cusparse==12.9.4.2", "nvidia-cuda-nvrtc==13.5.37", "nvidia-nvjitlink==13.5.37",
)


def bench_python() -> Path:
    """The interpreter to judge: WHEELFORGE_BENCH_PYTHON, else the pinned venv (made once)."""
    given = os.environ.get("WHEELFORGE_BENCH_PYTHON")
    if given:
        return Path(given)
    venv = BENCH_DIR / "venv"
    python = venv / "bin" / "python"
    stamp = venv / "wheels.txt"
    if not python.exists() or not stamp.exists() or stamp.read_text().split() != list(BENCH_WHEELS):
        subprocess.run([sys.executable, "-m", "venv", "--clear", "--without-pip", str(venv)], check=True)
        subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--only-binary", ":all:",
                        *BENCH_WHEELS], check=True)
        stamp.write_text("\n".join(BENCH_WHEELS) + "\n")
    return python


def _audit_support() -> ModuleType:
    """tests/audit_support.py: the tests' cuobjdump search and listing parser, so the figure reads cuobjdump alike."""
    tests = str(REPO / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    import audit_support

    return audit_support


def find_cuobjdump() -> Path | None:
    for cand in (_audit_support().find_cuobjdump(), Path("/usr/local/cuda/bin/cuobjdump")):
        if cand and Path(cand).is_file():
            return Path(cand)
    return None


def compare_with_cuobjdump(files: Sequence[str], cuobjdump: Path, budget: float | None = None) -> dict[str, Any]:
    """cuobjdump over ``files`` one after the other (until ``budget`` s), then the fatbin reader over the files it
    finished; both listings as Counters of (kind, arch in cuobjdump's naming), compared per file."""
    from wheelforge.binaries.fatbin import list_entries

    done: list[str] = []
    theirs: dict[str, Counter] = {}
    t0 = time.perf_counter()
    for f in files:
        if budget is not None and time.perf_counter() - t0 > budget:
            break
        proc = subprocess.run([str(cuobjdump), "--list-elf", "--list-ptx", f], capture_output=True, text=True, check=False)
        theirs[f] = _audit_support().parse_cuobjdump(proc.stdout)
        done.append(f)
    cuobjdump_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ours = {f: Counter((e.kind, e.cuobjdump_arch) for e in list_entries(f) if e.kind in ("sass", "ptx")) for f in done}
    reader_s = time.perf_counter() - t0
    differ = [f for f in done if ours[f] != theirs[f]]
    return {"files": len(done), "of": len(files), "bytes": sum(os.path.getsize(f) for f in done),
            "cuobjdump_s": cuobjdump_s, "reader_s": reader_s, "equal": not differ, "differ": differ[:10],
            "entries": sum(sum(c.values()) for c in ours.values()), "stopped_at_budget": len(done) < len(files)}


def drop_page_cache() -> str | None:
    """Empty the page cache (root only) so the next run reads from disk; None when done, else why not."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError as exc:
        return f"{type(exc).__name__}: {exc.strerror or exc}"
    return None


def measure_env(python: str | os.PathLike[str], *, runs: int = RUNS, budget: float | None = None, cold: bool = False,
                compare: bool = True, label: str = "", command: str = "") -> tuple[dict[str, Any], dict[str, Any]]:
    """(figure row, the last doctor report as JSON) for ``python``'s environment; ``cold`` first times one run on an
    emptied page cache (root only)."""
    from wheelforge.verify.doctor import diagnose

    cold_s: float | str | None = None
    if cold:
        why_not = drop_page_cache()
        cold_s = diagnose(python).seconds if why_not is None else f"not measured: cannot drop the page cache ({why_not})"
    first = diagnose(python)
    samples, report = [], first
    for _ in range(runs):
        t0 = time.perf_counter()
        report = diagnose(python)
        samples.append(time.perf_counter() - t0)
    files = device_files(report)
    extra: dict[str, Any] = {
        "python": str(python), "distributions": report.distributions, "cuda_packages": len(report.packages),
        "elf_files": report.elf_files, "elf_bytes": report.bytes_scanned, "device_files": len(files),
        "device_bytes": sum(os.path.getsize(f) for f in files), "first_run_s": first.seconds, "runs": runs,
        "cold_run_s": cold_s,
        "gpus": [g.to_json() for g in report.gpus],
    }
    gb = report.bytes_scanned / 1e9
    row = make_row(FIGURE, f"doctor, whole environment{label} ({report.elf_files} ELF files, {gb:.1f} GB)", median(samples),
                   "s", {}, samples=samples, extra=extra, command=command or f"python3 -m invoke doctor --python {python} --json")
    row["goal"] = None  # issue 18 asks for "seconds", no number
    if compare:
        cuobjdump = find_cuobjdump()
        if cuobjdump is None:
            extra["baseline_missing"] = "cuobjdump not found: python3 -m pip install nvidia-cuda-cuobjdump"
        else:
            attach_comparison(row, compare_with_cuobjdump(files, cuobjdump, budget), cuobjdump)
    return row, report.to_json()


def device_files(report) -> list[str]:
    return sorted({b.file for p in report.packages for b in p.binaries})


def attach_comparison(row: dict[str, Any], cmp: dict[str, Any], cuobjdump: Path) -> None:
    """The cuobjdump pass as the row's baseline."""
    e = row["extra"]
    e.update({"cuobjdump": str(cuobjdump), "cuobjdump_compare": cmp})
    row["baseline"] = {"name": f"cuobjdump --list-elf --list-ptx, {cmp['files']} device files one by one",
                       "value": cmp["cuobjdump_s"], "unit": "s"}
    e["note"] = (f"doctor {row['value']:.2f} s for {e['elf_files']} ELF files ({e['elf_bytes'] / 1e9:.1f} GB) of "
                 f"{e['distributions']} distributions; cuobjdump {cmp['cuobjdump_s']:.1f} s for {cmp['files']} of "
                 f"{cmp['of']} device files ({cmp['bytes'] / 1e9:.1f} GB), the fatbin reader {cmp['reader_s']:.2f} s for the "
                 f"same files; listings equal: {cmp['equal']}")


def measure() -> list[dict]:
    python = bench_python()
    row, _ = measure_env(python, cold=os.environ.get("WHEELFORGE_BENCH_COLD") == "1",
                         command=f"python3 bench/run.py --only doctor  (WHEELFORGE_BENCH_PYTHON={python})")
    return [row]


if __name__ == "__main__":
    print(json.dumps(measure(), indent=2))
