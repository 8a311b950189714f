"""Figure 4 for flash-attn: the jobs wheelforge picks on a 16-core machine with 32 GiB (and 16 GiB) against naive ``MAX_JOBS=16``.

Nothing is built here.  The memory one compile job needs comes from
``bench/flash_attn_job_rss.json``, written by ``bench/flash_attn_job_rss.py``: single flash-attn
kernel files compiled alone with the exact nvcc command of the build, the peak RSS of each
job's process tree recorded.  The choice is ``wheelforge.host.memory.choose_jobs`` with the recipe's
``ram_per_job_gb``, given 16 cores and the whole of 32 (16) GiB as available memory: the most
room such a machine can offer, so the naive side is judged at its best.

The worst case of a job count is that many of the heaviest measured job at their peak together;
a machine survives a build when that fits in its memory.  Naive 16 jobs on the GPU machine
(issue 20) held 63 GB at once as they started, mostly forward kernels, below this worst case.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from . import REPO, make_row

NEEDS_GPU = False

RECORD = REPO / "bench" / "flash_attn_job_rss.json"
RECIPE = REPO / "recipes" / "flash-attn.toml"
CORES = 16
GIB = 1024**3


def _wheelforge():
    src = str(REPO / "src")
    if src not in sys.path:
        sys.path.insert(0, src)
    from wheelforge.host.memory import MemoryFacts, choose_jobs
    from wheelforge.model.recipe import load_recipe

    return MemoryFacts, choose_jobs, load_recipe


def heaviest_job(records: list[dict[str, Any]], nvcc_threads: int) -> dict[str, Any]:
    """The record with the largest process-tree peak among jobs run as the recipe runs them."""
    same = [r for r in records if r["nvcc_threads"] == nvcc_threads]
    if not same:
        raise ValueError(f"{RECORD.name} holds no job measured with NVCC_THREADS={nvcc_threads}; run bench/flash_attn_job_rss.py")
    return max(same, key=lambda r: r["tree_peak_bytes"])


def measure() -> list[dict[str, Any]]:
    MemoryFacts, choose_jobs, load_recipe = _wheelforge()
    recipe = load_recipe(RECIPE)
    threads = int(recipe.env["NVCC_THREADS"])
    records = json.loads(RECORD.read_text())["records"]
    heavy = heaviest_job(records, threads)
    peak = heavy["tree_peak_bytes"]
    if recipe.ram_per_job_gb * GIB < peak:
        raise ValueError(f"recipes/flash-attn.toml ram_per_job_gb = {recipe.ram_per_job_gb} is below the measured job peak "
                         f"{peak / GIB:.2f} GiB ({heavy['file']})")
    per_threads = {(len(r["archs"]), r["nvcc_threads"]): r["tree_peak_bytes"] for r in records if r["file"] == heavy["file"]}
    measured = "; ".join(f"{r['file'].rsplit('/', 1)[-1]} sm_{'+sm_'.join(r['archs'])} --threads {r['nvcc_threads']}: "
                         f"{r['tree_peak_bytes'] / GIB:.2f} GiB, {r['cpu_s']:.0f} CPU s" for r in records)
    rows = []
    for ram_gib in (32, 16):
        jobs, why = choose_jobs(recipe.ram_per_job_gb, cores=CORES,
                                memory=MemoryFacts(ram_gib * GIB, f"all of a {ram_gib} GiB machine"))
        wf_worst, naive_worst = jobs * peak / GIB, CORES * peak / GIB
        note = (f"{why}; worst case (every job at the heaviest measured peak, {peak / GIB:.2f} GiB, {heavy['file']}): "
                f"wheelforge {jobs} x = {wf_worst:.1f} GiB, naive MAX_JOBS={CORES} x = {naive_worst:.1f} GiB of {ram_gib} GiB")
        if (2, 2) in per_threads:
            note += (f"; with NVCC_THREADS=2 and two archs one job holds {per_threads[(2, 2)] / GIB:.2f} GiB "
                     f"(the recipe sets NVCC_THREADS={threads})")
        common = {"package": "flash-attn", "cores": CORES, "ram_gib": ram_gib, "ram_per_job_gb": recipe.ram_per_job_gb,
                  "heaviest_job": heavy, "jobs_reason": why, "measured_jobs": measured, "note": note}
        command = (f"wheelforge.host.memory.choose_jobs({recipe.ram_per_job_gb}, cores={CORES}, memory=MemoryFacts({ram_gib} GiB)) "
                   f"with per-job peaks from bench/flash_attn_job_rss.json (python3 bench/flash_attn_job_rss.py ...)")
        rows.append(make_row("4", f"jobs on a {CORES}-core {ram_gib} GiB machine, flash-attn", jobs, "jobs", {},
                             baseline={"name": f"naive MAX_JOBS={CORES}", "value": CORES, "unit": "jobs"}, extra=common,
                             command=command))
        rows.append(make_row("4", f"worst-case job memory / RAM, {CORES}-core {ram_gib} GiB machine, flash-attn",
                             wf_worst / ram_gib, "ratio", {"op": "<=", "value": 1.0},
                             baseline={"name": f"naive MAX_JOBS={CORES}", "value": naive_worst / ram_gib, "unit": "ratio"},
                             extra=common, command=command))
    return rows


def main() -> None:
    """``python3 -m bench.figures.flash_attn_memory``: print the rows without touching results.json."""
    for row in measure():
        print(f"{row['name']}: {row['value']:.3g} {row['unit']} (naive {row['baseline']['value']:.3g}); {row['extra']['note']}")


if __name__ == "__main__":
    main()
