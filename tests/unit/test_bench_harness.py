"""The benchmark harness on synthetic rows: goals, merging, the page, device plans and rows. No timings asserted."""

from __future__ import annotations

import json
import zipfile

import pytest

from bench import charts, device, run
from bench.figures import build_local, make_row, median

MACHINE = {"name": "ci (2 cores, 24 GiB, no GPU)", "hostname": "ci", "cores": 2, "gpu_machine": False}


def _row(fig="1", name="no-op rebuild, demo-cuda", value=0.3, goal=None, **kw):
    return make_row(fig, name, value, "s", goal if goal is not None else {"op": "<", "value": 0.5}, **kw)


@pytest.mark.parametrize(("value", "op", "limit", "met"), [
    (0.3, "<", 0.5, True), (0.5, "<", 0.5, False), (0.5, "<=", 0.5, True), (0.9, ">=", 0.85, True),
    (0.8, ">=", 0.85, False), (6.0, ">", 5.0, True), (5.0, ">", 5.0, False),
])
def test_goal_met(value, op, limit, met):
    assert run.goal_met(value, {"op": op, "value": limit}) is met


def test_goal_without_goal_or_value_is_unknown():
    assert run.goal_met(1.0, {}) is None
    assert run.goal_met(None, {"op": "<", "value": 1}) is None


def test_stamp_adds_machine_date_and_met():
    [r] = run.stamp([_row(value=0.7)], MACHINE, "2026-01-01T00:00:00+00:00")
    assert r["machine"]["hostname"] == "ci"
    assert r["date"] == "2026-01-01T00:00:00+00:00"
    assert r["met"] is False


def test_stamp_rejects_rows_missing_keys():
    with pytest.raises(ValueError, match="lacks unit"):
        run.stamp([{"figure": "1", "name": "x", "value": 1.0, "goal": {}}], MACHINE, "d")
    with pytest.raises(ValueError, match="goal op"):
        run.stamp([_row(goal={"op": "=="})], MACHINE, "d")


def test_merge_replaces_same_figure_and_name_unless_older():
    old = run.stamp([_row(value=0.4), _row("8", "index 1000 wheels", 1.0)], MACHINE, "2026-01-02T00:00:00+00:00")
    newer = run.stamp([_row(value=0.2)], MACHINE, "2026-01-03T00:00:00+00:00")
    stale = run.stamp([_row(value=0.9)], MACHINE, "2026-01-01T00:00:00+00:00")
    merged = run.merge_rows(old, newer)
    assert [(r["figure"], r["value"]) for r in merged] == [("1", 0.2), ("8", 1.0)]
    assert run.merge_rows(merged, stale)[0]["value"] == 0.2


def test_merge_sorts_figures_numerically():
    rows = run.stamp([_row("10", "a"), _row("9", "b"), _row("2", "c")], MACHINE, "d")
    assert [r["figure"] for r in run.merge_rows([], rows)] == ["2", "9", "10"]


def test_device_rows_are_marked_gpu_machine_and_need_a_date():
    rows = [{**_row(), "machine": {"name": "GPU machine (H100, 16 cores)"}, "date": "2026-02-01T00:00:00+00:00"}]
    [r] = run.device_rows({"rows": rows})
    assert r["machine"]["gpu_machine"] is True and r["machine"]["name"].startswith("GPU machine")
    with pytest.raises(ValueError, match="no date"):
        run.device_rows([{**_row(), "date": ""}])


def test_render_markdown_table_notes_and_charts():
    rows = run.stamp([
        _row(value=0.31, samples=[0.3, 0.31, 0.32, 0.33, 0.29], command="python3 -m invoke build demo-cuda --cuda auto"),
        make_row("2", "cold build overhead, demo-cuda", 4.2, "%", {"op": "<", "value": 3.0},
                 baseline={"name": "manual pip wheel", "value": 30.0, "unit": "s", "samples": [30.0, 31.0, 29.0]},
                 extra={"note": "alternating pairs"}, command="a | b"),
    ], MACHINE, "2026-03-04T05:06:07+00:00")
    page = run.render_markdown(rows, [("Build time", "img/build-times.png")])
    assert "| Figure | What | Value | Goal | Met? | Comparison | Machine | Date | Command |" in page
    assert "| 1 | no-op rebuild, demo-cuda | 0.310 s (n=5) | < 0.500 s | yes |" in page
    assert "4.20 % | < 3.00 % | **no** | manual pip wheel: 30.00 s (n=3)" in page
    assert "2026-03-04" in page and "`python3 -m invoke build demo-cuda --cuda auto`" in page
    assert "`a \\| b`" in page  # a pipe in a command cannot break the table
    assert "- Figure 2, cold build overhead, demo-cuda: alternating pairs" in page
    assert "![Build time](img/build-times.png)" in page
    assert "Goals met: 1 of 2" in page


def test_fmt_value_units():
    assert run.fmt_value(501921591, "bytes") == "501.9 MB"
    assert run.fmt_value(548.2, "s") == "548 s"
    assert run.fmt_value(0.8512, "ratio") == "0.851 ratio"


def test_main_merge_writes_results_atomically(tmp_path, capsys):
    results = tmp_path / "results.json"
    rows = [{**_row(value=0.42), "machine": "GPU machine (H100, 16 cores)", "date": "2026-02-01T00:00:00+00:00"}]
    merge = tmp_path / "device_rows.json"
    merge.write_text(json.dumps({"rows": rows}))
    assert run.main(["--merge", str(merge), "--results", str(results)]) == 0
    data = json.loads(results.read_text())
    assert data["rows"][0]["machine"]["gpu_machine"] is True and data["rows"][0]["met"] is True
    assert data["runs"][-1]["merged"] == [str(merge)]
    assert not list(tmp_path.glob(".*.tmp"))
    assert "[MET ] fig  1" in capsys.readouterr().out


def test_main_rejects_a_bad_merge_file(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text("{not json")
    with pytest.raises(SystemExit, match="cannot merge"):
        run.main(["--merge", str(bad), "--results", str(tmp_path / "r.json")])
    assert not (tmp_path / "r.json").exists()


def test_machine_info_reads_cpu_and_ram():
    m = run.machine_info(cpuinfo="model name\t: AMD EPYC 9654\n", meminfo="MemTotal:       25165824 kB\n", gpu="")
    assert m["cpu"] == "AMD EPYC 9654" and m["ram_gib"] == 24.0 and m["gpu"] is None and m["gpu_machine"] is False


def test_median_and_make_row():
    assert median([3.0, 1.0, 2.0, 10.0, 4.0]) == 3.0
    r = make_row("3", "warm", 0.1, "ratio", {"op": "<", "value": 0.2}, samples=[1, 2])
    assert r["samples"] == [1.0, 2.0] and r["baseline"] is None and r["extra"] == {}


# --------------------------------------------------------------------------- build_local parsing


def test_jobs_line_and_manual_command(tmp_path):
    assert build_local.jobs_line("x\n# jobs: 2 jobs = min(2 cores, 21.9 GiB free)\n")[0] == 2
    assert build_local.jobs_line("nothing") == (None, "")
    plan = {"env": {"CMAKE_ARGS": "-DX=1", "CMAKE_CUDA_COMPILER_LAUNCHER": "/usr/bin/sccache"},
            "steps": [{"name": "env", "action": "run", "commands": [{"argv": ["python3", "-m", "venv", "e"]}]},
                      {"name": "compile", "action": "run",
                       "commands": [{"argv": ["py", "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                                              "--wheel-dir", "{work}/out", "{work}/src"]}]}]}
    argv, env = build_local.manual_command(plan, tmp_path / "src", tmp_path / "out")
    assert argv[-1] == str(tmp_path / "src") and argv[argv.index("--wheel-dir") + 1] == str(tmp_path / "out")
    assert env == {"CMAKE_ARGS": "-DX=1"}  # the manual build runs without a compiler cache


# --------------------------------------------------------------------------- device plan and rows


def test_parse_plan_steps():
    steps = device.parse_plan("xformers-manual:9.0;12.0, xformers-wf:90;sm_120  xformers-noop llama-cpp-python-wf:120 llama-verify")
    assert [s.text for s in steps] == ["xformers-manual:9.0;12.0", "xformers-wf:9.0;12.0", "xformers-noop", "llama-wf:12.0",
                                       "llama-verify"]
    assert steps[-1].recipe == "llama-cpp-python"


@pytest.mark.parametrize(("plan", "message"), [
    ("torch-wf:12.0", "cannot read plan step"), ("xformers-fast:12.0", "cannot read plan step"),
    ("xformers-wf", "needs archs"), ("xformers-noop:12.0", "give it no archs"),
    ("llama-verify:9.0", "give it no archs"), ("xformers-wf:12.x", "CUDA arch"), (" ", "empty"),
])
def test_parse_plan_errors(plan, message):
    with pytest.raises(ValueError, match=message):
        device.parse_plan(plan)


def test_plain_and_wf_commands():
    s = device.Step("llama", "plain", ("9.0", "12.0"))
    argv, env = device.plain_command(s, 16)
    assert env == {"CMAKE_BUILD_PARALLEL_LEVEL": "16", "CMAKE_ARGS": "-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=90;120"}
    assert argv[-1] == "." and "--no-build-isolation" in argv
    _, xenv = device.plain_command(device.Step("xformers", "plain", ("12.0",)), 16)
    assert xenv == {"TORCH_CUDA_ARCH_LIST": "12.0", "MAX_JOBS": "16"}
    wf = device.wf_command(device.Step("xformers", "wf", ("9.0", "12.0")), source="/s", wheelhouse="/w")
    assert wf[:5] == ["python3", "-m", "invoke", "build", "xformers"]
    assert wf[wf.index("--arch") + 1] == "9.0;12.0" and wf[wf.index("--compiler-cache") + 1] == "none"


def test_count_elf():
    listing = "ELF file    1: a.1.sm_90.cubin\nELF file    2: a.2.sm_120a.cubin\nELF file    3: b.3.sm_120a.cubin\n"
    assert device.count_elf(listing) == {"sm_120a": 2, "sm_90": 1}


def _rec(pkg, variant, archs, wall, **kw):
    return {"step": f"{pkg}-{variant}", "package": pkg, "variant": variant, "archs": list(archs), "ok": True, "wall": wall,
            "cpu": wall * 12, "cores": 16, "finished": "2026-05-01T10:00:00+00:00", "command": f"cmd {variant}", **kw}


def test_rows_from_records_figures():
    gpu = {"name": "GPU machine (H100, 16 cores)", "gpu_machine": True}
    records = [
        _rec("xformers", "manual", ("9.0", "12.0"), 150.0, wheel_bytes=5_574_325),
        _rec("xformers", "wf", ("9.0", "12.0"), 153.0, wheel_bytes=5_500_000, jobs=16),
        _rec("xformers", "warm", ("9.0", "12.0"), 20.0, populate_wall=160.0),
        _rec("xformers", "noop", (), 0.3, samples=[0.3, 0.31, 0.29, 0.3, 0.32]),
        _rec("xformers", "wf", ("12.0",), 95.0, wheel_bytes=3_600_000),
        _rec("llama", "plain", ("9.0", "12.0"), 548.0, wheel_bytes=501_921_591),
        _rec("llama", "wf", ("9.0", "12.0"), 560.0, wheel_bytes=100_000_000),
        {"step": "llama-wf:12.0", "package": "llama", "variant": "wf", "archs": ["12.0"], "ok": False, "error": "boom"},
    ]
    rows = {(r["figure"], r["name"]): r for r in device.rows_from_records(records, gpu)}
    over = rows[("2", "cold build overhead, xformers 9.0;12.0")]
    assert over["value"] == pytest.approx(2.0) and over["baseline"]["value"] == 150.0
    assert rows[("3", "warm compiler-cache rebuild / cold, xformers 9.0;12.0")]["value"] == pytest.approx(20 / 153)
    assert rows[("1", "no-op rebuild, xformers")]["value"] == pytest.approx(0.3)
    assert rows[("4", "parallel efficiency, xformers 9.0;12.0")]["value"] == pytest.approx(12 / 16)
    ratio = rows[("5", "12.0 alone / 9.0;12.0, xformers (wf)")]
    assert ratio["value"] == pytest.approx(95 / 153) and ratio["extra"]["official_cu128_list"] is False
    size = rows[("6", "wheel size, llama-cpp-python 9.0;12.0")]
    assert size["value"] == 100_000_000 and size["baseline"]["value"] == 501_921_591 and size["goal"]["value"] == 110e6
    assert ("2", "cold build overhead, llama-cpp-python 9.0;12.0") in rows  # plain stands in for manual
    assert all(r["machine"]["gpu_machine"] and r["date"] for r in rows.values())
    # the rows go through the runner's own checks
    assert len(run.device_rows({"rows": list(rows.values())})) == len(rows)


def test_rows_from_a_warm_step_alone(tmp_path):
    """A warm step's first build is a cold wheelforge build: it gives figure 3, 5 and 6 rows; a run that built
    no stock wheel cites the team's shared baseline, marked as not from this run."""
    gpu = {"name": "GPU machine (H100, 16 cores)", "gpu_machine": True}
    records = [
        _rec("llama", "wf", ("9.0", "12.0"), 432.0, wheel_bytes=43_192_672),
        _rec("llama", "warm", ("12.0",), 54.0, populate_wall=270.0, wheel_bytes=25_674_479),
    ]
    rows = {(r["figure"], r["name"]): r for r in device.rows_from_records(records, gpu)}
    assert rows[("3", "warm compiler-cache rebuild / cold, llama-cpp-python 12.0")]["value"] == pytest.approx(54 / 270)
    assert rows[("5", "12.0 alone / 9.0;12.0, llama-cpp-python (wf)")]["value"] == pytest.approx(270 / 432)
    size = rows[("6", "wheel size, llama-cpp-python 12.0")]
    assert size["value"] == 25_674_479 and size["baseline"]["value"] == device.SHARED_STOCK_BYTES[("12.0",)]
    assert "not this run" in size["baseline"]["name"] and size["extra"]["note"]
    saved = tmp_path / "device_rows.json"
    saved.write_text(json.dumps({"machine": gpu, "records": records, "rows": []}))
    assert device.main(["--rows-from", str(saved)]) == 0
    assert len(json.loads(saved.read_text())["rows"]) == len(rows)


def test_device_dry_run_prints_commands(capsys):
    assert device.main(["--plan", "xformers-manual:9.0;12.0 xformers-wf:9.0;12.0 xformers-noop llama-plain:120", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "invoke plan xformers --no-isolation" in out
    assert "invoke build xformers --no-isolation --cuda auto --arch '9.0;12.0'" in out
    assert out.count("== step") == 4


def test_device_warm_cache_choice_reaches_both_builds(capsys):
    assert device.main(["--plan", "xformers-warm:12.0", "--warm-cache", "ccache", "--dry-run"]) == 0
    builds = [ln for ln in capsys.readouterr().out.splitlines() if " build xformers " in ln]
    assert len(builds) == 2 and all("--compiler-cache ccache" in ln for ln in builds)


def test_device_rejects_bad_plan(capsys):
    assert device.main(["--plan", "xformers-wf", "--dry-run"]) == 2
    assert "needs archs" in capsys.readouterr().err


def test_device_inspect_wheel_sizes(tmp_path):
    whl = tmp_path / "wh" / "x-1.0-py3-none-any.whl"
    whl.parent.mkdir()
    with zipfile.ZipFile(whl, "w") as zf:
        zf.writestr("x/_C.so", b"\x7fELF not really")
        zf.writestr("x/__init__.py", "")
    r = device.Runner(tmp_path / "state", 2, dry_run=True, step_timeout=10)
    r.env = {"PATH": str(tmp_path)}  # no cuobjdump there
    info = r.inspect_wheel(tmp_path / "wh")
    assert info["wheel"] == whl.name and info["wheel_bytes"] == whl.stat().st_size
    assert list(info["cubins"]) == ["x/_C.so"]


# --------------------------------------------------------------------------- charts


def test_chart_data_and_pngs(tmp_path):
    rows = run.stamp([
        make_row("1", "no-op", 0.3, "s", {}, extra={"package": "demo-cuda", "archs": ["12.0"], "seconds_noop": 0.3}),
        make_row("3", "warm", 0.1, "ratio", {}, extra={"package": "demo-cuda", "archs": ["12.0"], "seconds_warm": 3.0,
                                                       "seconds_cold": 30.0}),
        make_row("2", "overhead", 1.0, "%", {}, extra={"points": [
            {"package": "llama-cpp-python", "variant": "manual", "archs": ["12.0"], "seconds": 367, "wheel_bytes": 278e6},
            {"package": "llama-cpp-python", "variant": "manual", "archs": ["9.0", "12.0"], "seconds": 548, "wheel_bytes": 502e6}]}),
    ], MACHINE, "2026-01-01T00:00:00+00:00")
    assert charts.build_times(rows) == {"demo-cuda 12.0": {"cold": 30.0, "warm cache": 3.0, "no-op": 0.3}}
    assert charts.arch_points(rows) == {("llama-cpp-python", "manual"): [(1, 367.0, 278e6), (2, 548.0, 502e6)]}
    pytest.importorskip("matplotlib")
    made = charts.make_charts(rows, tmp_path / "img", rel_to=tmp_path)
    assert [rel for _, rel in made] == ["img/build-times.png", "img/archs.png"]
    assert all((tmp_path / rel).read_bytes()[:4] == b"\x89PNG" for _, rel in made)


def test_warm_samples_give_the_median_and_figure_5_rows_form_a_series():
    """Several warm rebuilds after one fill: the row is their median. A later run compared with a longer arch
    list supersedes the earlier figure-5 row of the same package when merged, though the names differ."""
    gpu = {"name": "GPU machine (H100, 16 cores)", "gpu_machine": True}
    first = [_rec("llama", "wf", ("9.0", "12.0"), 400.0), _rec("llama", "wf", ("12.0",), 270.0),
             _rec("xformers", "warm", ("12.0",), 13.0, populate_wall=90.0, samples=[14.0, 12.0, 13.0])]
    rows = {(r["figure"], r["name"]): r for r in device.rows_from_records(first, gpu)}
    warm = rows[("3", "warm compiler-cache rebuild / cold, xformers 12.0")]
    assert warm["value"] == pytest.approx(13 / 90) and sorted(warm["samples"]) == pytest.approx([12 / 90, 13 / 90, 14 / 90])
    later = [{**_rec("llama", "wf", ("7.5", "8.0", "9.0", "12.0"), 1000.0), "finished": "2026-05-02T10:00:00+00:00"},
             {**_rec("llama", "wf", ("12.0",), 280.0), "finished": "2026-05-02T10:00:00+00:00"}]
    old = run.device_rows({"rows": device.rows_from_records(first, gpu)})
    new = run.device_rows({"rows": device.rows_from_records(later, gpu)})
    fig5 = [r for r in run.merge_rows(old, new) if r["figure"] == "5"]
    assert [(r["name"], r["value"]) for r in fig5] == [("12.0 alone / 7.5;8.0;9.0;12.0, llama-cpp-python (wf)", 0.28)]
