"""bench/device_flash_attn.py without a GPU machine: log parsing, rows from step records, a dry run."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

import device_flash_attn as fa  # noqa: E402

GPU = {"name": "GPU machine (H200, 16 cores)", "gpu_machine": True}


def test_last_ninja_step_of_a_log(tmp_path: Path) -> None:
    log = tmp_path / "build.log"
    log.write_text("running build_ext\n[1/73] /usr/local/cuda/bin/nvcc a.cu\n  [22/73] nvcc b.cu\nsome output\n")
    assert fa.last_step(log) == (22, 73)
    assert fa.last_step(tmp_path / "missing.log") is None
    (tmp_path / "wh" / "logs").mkdir(parents=True)
    assert fa.build_log(tmp_path / "wh") is None
    (tmp_path / "wh" / "logs" / "k.log").write_text("[3/73] x\n")
    assert fa.last_step(fa.build_log(tmp_path / "wh")) == (3, 73)


def test_eta_from_the_rate_since_the_step_began() -> None:
    assert fa.eta_seconds(22, 73, 400.0) == 51 * 400 / 22
    assert fa.eta_seconds(0, 73, 400.0) is None


def _build(step: str, wall: float, **kw) -> dict:
    return {"step": step, "ok": True, "wall": wall, "cpu": wall * 14.0, "cores": 16, "peak_tree_rss": 40 * fa.GIB,
            "peak_used": 50 * fa.GIB, "used_before": 8 * fa.GIB, "jobs": 16,
            "jobs_reason": "16 jobs = min(16 cores, 118.0 GiB free (MemAvailable) / 7 GiB per job = 16)",
            "command": "python3 -m invoke build flash-attn ...", "finished": "2026-12-03T10:00:00+00:00", **kw}


def test_rows_from_build_warm_and_cgroup_records() -> None:
    records = [
        _build("build", 900.0, cache_line="compiler cache: ccache, 0/73 hits (0%)"),
        {"step": "verify", "ok": True, "wall": 60.0},
        _build("warm", 90.0, cache_line="compiler cache: ccache, 73/73 hits (100%)"),
        {"step": "mem32", "ok": True, "cores": 16, "jobs": 4, "cgroup": "v2 /sys/fs/cgroup/x",
         "jobs_reason": "4 jobs = min(16 cores, 31.9 GiB free (cgroup limit) / 7 GiB per job = 4)",
         "plan_command": "python3 -m invoke plan flash-attn ...", "finished": "2026-12-03T10:30:00+00:00",
         "demo": {"naive": {"command": "python3 -m pip wheel ...", "seconds_allowed": 240, "rc": -9, "oom_kills": 3,
                            "cgroup_after": {"peak_bytes": 32 * fa.GIB}}}},
    ]
    rows = {(r["figure"], r["name"]): r for r in fa.rows_from(records, GPU)}
    eff = rows[("4", "parallel efficiency, flash-attn 9.0")]
    assert eff["value"] == 14.0 / 16 and eff["goal"] == {"op": ">=", "value": 0.85}
    assert "plain `FLASH_ATTN_CUDA_ARCHS=90 MAX_JOBS=16 NVCC_THREADS=2" in eff["extra"]["note"]  # beside the plain build's figure
    warm = rows[("3", "warm compiler-cache rebuild / cold, flash-attn 9.0")]
    assert warm["value"] == 0.1 and warm["baseline"]["value"] == 900.0 and "73/73" in warm["extra"]["note"]
    jobs = rows[("4", "jobs on a 16-core 32 GiB machine, flash-attn (GPU machine cgroup)")]
    assert jobs["value"] == 4.0 and jobs["baseline"]["value"] == 16.0 and "3 OOM kills" in jobs["extra"]["note"]
    text = fa.summary(records + [{"step": "x", "ok": False, "skipped": True, "error": "budget: 10 s left"}])
    assert "build: 900 s wall" in text and "x: skipped" in text


def test_failed_or_skipped_steps_make_no_rows() -> None:
    records = [{"step": "build", "ok": False, "error": "exit 1"}, {"step": "warm", "ok": False, "skipped": True}]
    assert fa.rows_from(records, GPU) == []


def test_cgroup_wrap_joins_then_execs() -> None:
    cg = fa.MemoryCgroup(32 * fa.GIB, "t")
    cg.path = Path("/sys/fs/cgroup/t")
    argv = cg.wrap(["python3", "-m", "invoke", "plan", "flash-attn"])
    assert argv[:2] == ["sh", "-c"] and "echo $$ > /sys/fs/cgroup/t/cgroup.procs && exec" in argv[2]
    assert argv[3:] == ["sh", "python3", "-m", "invoke", "plan", "flash-attn"]


def test_dry_run_prints_the_commands_and_writes_nothing(tmp_path: Path, capsys) -> None:
    state = tmp_path / "state"
    assert fa.main(["--dry-run", "--state", str(state)]) == 0
    out = capsys.readouterr().out
    assert "invoke build flash-attn --no-isolation --cuda auto --arch 9.0" in out and "--compiler-cache ccache" in out
    assert "invoke verify" in out and "--system-site-packages --offline" in out
    assert "limited to 32 GiB" in out
    assert not state.exists()


def test_a_failed_step_keeps_what_it_measured(tmp_path: Path) -> None:
    run = fa.FlashRun(tmp_path / "state", dry=False, budget_s=1000, step_timeout=10, oom_demo_s=0, arch="9.0")

    def killed():
        raise fa.StepFailed("exit -9", {"step": "build", "wall": 900.0, "ninja_steps": (40, 73)})

    run.step("build", killed)
    (rec,) = run.records
    assert rec["ok"] is False and rec["wall"] == 900.0 and rec["ninja_steps"] == (40, 73) and "exit -9" in rec["error"]
    run.step("verify", lambda: {"step": "verify", "wall": 1.0})  # the budget decides, the step runs
    assert run.records[-1]["ok"] is True
    status = (tmp_path / "state" / "status.json").read_text()
    assert '"failed": ["build"]' in status


def test_a_step_that_cannot_fit_the_budget_is_skipped(tmp_path: Path) -> None:
    run = fa.FlashRun(tmp_path / "state", dry=False, budget_s=100, step_timeout=10, oom_demo_s=0, arch="9.0")
    run.step("warm", lambda: {"step": "warm"})  # needs about 300 s
    assert run.records == [{"step": "warm", "ok": False, "skipped": True, "error": run.records[0]["error"]}]
    assert run.records[0]["error"].startswith("budget: ")
