"""The flash-attn memory figure: computed from the recorded per-job peaks, never typed in."""

from __future__ import annotations

import json

from bench.figures import flash_attn_memory as fig
from wheelforge.model.recipe import load_recipe


def test_recipe_ram_per_job_covers_every_recorded_job() -> None:
    recipe = load_recipe(fig.RECIPE)
    records = json.loads(fig.RECORD.read_text())["records"]
    threads = int(recipe.env["NVCC_THREADS"])
    same = [r for r in records if r["nvcc_threads"] == threads]
    assert same, "no job recorded with the recipe's NVCC_THREADS"
    assert all(r["tree_peak_bytes"] <= recipe.ram_per_job_gb * fig.GIB for r in same)
    # each record says what it measured and how
    for r in records:
        assert r["command"].startswith("/") and "nvcc" in r["command"] and f"--threads {r['nvcc_threads']}" in r["command"]
        assert all(f"code=sm_{a}" in r["command"] for a in r["archs"])


def test_wheelforge_jobs_fit_where_naive_jobs_do_not() -> None:
    rows = {r["name"]: r for r in fig.measure()}
    for ram in (32, 16):
        jobs = rows[f"jobs on a 16-core {ram} GiB machine, flash-attn"]
        worst = rows[f"worst-case job memory / RAM, 16-core {ram} GiB machine, flash-attn"]
        assert 1 <= jobs["value"] < jobs["baseline"]["value"] == 16
        assert worst["value"] <= 1.0 < worst["baseline"]["value"]
        assert jobs["extra"]["jobs_reason"].startswith(f"{int(jobs['value'])} jobs = min(16 cores, {ram}.0 GiB")
