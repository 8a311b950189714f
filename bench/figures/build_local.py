"""Figures 1-4 on this machine, with the small CUDA package ``demo-cuda`` (``--cuda auto``, arch 12.0).

1. no-op rebuild: wall time of ``invoke build demo-cuda`` for a key already in the wheelhouse;
2. cold build overhead: wheelforge ``build`` versus the plan's own compile command run by
   hand (``pip wheel --no-deps --no-build-isolation``, same env), alternating, cache off;
3. warm compiler-cache rebuild (fresh wheelhouse and build folder, warm sccache dir) / cold;
4. parallel efficiency (CPU s / (wall x cores)) and peak memory of the cold builds, and the
   job count naive ``MAX_JOBS=nproc`` takes versus wheelforge's under an 8 GiB cgroup limit.

Every build is a real subprocess of the CLI (``python3 -m invoke build ...``).  Knobs:
``BENCH_NOOP_RUNS`` (7), ``BENCH_PAIRS`` (3), ``BENCH_WARM_RUNS`` (3), ``BENCH_KEEP`` (keep
the scratch folder).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

from . import REPO, Timed, make_row, median, timed_run

NEEDS_GPU = False

RECIPE = "demo-cuda"
CUDA = "auto"
ARCH = "12.0"
PY = sys.executable
INVOKE = [PY, "-m", "invoke"]
#: compiler-cache variables the plan adds; the manual command runs without a cache.
LAUNCHER_KEYS = ("CMAKE_C_COMPILER_LAUNCHER", "CMAKE_CXX_COMPILER_LAUNCHER", "CMAKE_CUDA_COMPILER_LAUNCHER", "PYTORCH_NVCC")
GIB = 1024**3


def _int_env(name: str, default: int) -> int:
    try:
        return max(1, int(os.environ.get(name, default)))
    except ValueError:
        return default


def _base_env() -> dict[str, str]:
    from wheelforge.host.process import base_env  # the same base the executor gives each build command

    env = base_env()
    # the CLI must find src/ even when wheelforge is not installed into this interpreter
    # BENCH_WHEELFORGE_SRC: time another copy of the package (e.g. a candidate fix) with the same harness
    src = os.environ.get("BENCH_WHEELFORGE_SRC") or str(REPO / "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH", "")) if p)
    return env


def wf_build(wheelhouse: Path, *extra: str, root: bool = False) -> list[str]:
    head = [*INVOKE, *(["-r", str(REPO)] if root else []), "build"]
    return [*head, RECIPE, "--cuda", CUDA, "--arch", ARCH, "--wheelhouse", str(wheelhouse), *extra]


def show(argv: list[str]) -> str:
    """The command as written in the table: ``python3`` instead of this interpreter's path."""
    return shlex.join(["python3" if a == PY else a for a in argv])


def _check(t: Timed, what: str) -> Timed:
    if not t.ok:
        tail = "\n  ".join(t.output_tail[-15:])
        raise RuntimeError(f"{what} failed (exit {t.returncode}): {shlex.join(t.argv)}\n  {tail}")
    return t


def _log_text(t: Timed, log: Path) -> str:
    try:
        return log.read_text(errors="replace")
    except OSError:
        return "\n".join(t.output_tail)


def jobs_line(text: str) -> tuple[int | None, str]:
    """wheelforge's ``# jobs: N jobs = ...`` line -> (N, the line)."""
    m = re.search(r"^# jobs: ((\d+) jobs?.*)$", text, re.MULTILINE)
    return (int(m.group(2)), m.group(1)) if m else (None, "")


def cache_line(text: str) -> str:
    lines = [ln for ln in text.splitlines() if re.match(r"^(compiler cache|sccache|ccache)\b.*(hit|miss)", ln, re.IGNORECASE)]
    return lines[-1] if lines else ""


# --------------------------------------------------------------------------- the plan (for the manual command)


def plan_json(env: dict[str, str], wheelhouse: Path) -> dict[str, Any]:
    argv = [*INVOKE, "plan", RECIPE, "--cuda", CUDA, "--arch", ARCH, "--no-isolation", "--json"]
    import subprocess

    print("$ " + shlex.join(argv), file=sys.stderr)
    proc = subprocess.run(argv, cwd=REPO, env={**env, "WHEELFORGE_WHEELHOUSE": str(wheelhouse)}, capture_output=True,
                          text=True, check=False)
    if proc.returncode == 0:
        out = proc.stdout
        return json.loads(out[out.index("{"):])
    # `invoke plan` not wired yet: the same plan from the library the task calls
    print(f"# invoke plan failed ({proc.stderr.strip().splitlines()[-1:]}); using wheelforge.build.pipeline.plan_for", file=sys.stderr)
    from wheelforge.build.pipeline import plan_for
    from wheelforge.cli.commands import settings_from

    settings = settings_from({"cuda": CUDA, "arch": ARCH, "wheelhouse": str(wheelhouse), "compiler_cache": "none"})
    return plan_for(RECIPE, settings=settings, no_isolation=True).to_json()


def manual_command(plan: dict[str, Any], src: Path, out: Path) -> tuple[list[str], dict[str, str]]:
    """The plan's compile command and env, pointed at ``src``/``out``, with no compiler launcher."""
    compile_cmds = [c for step in plan["steps"] if step["name"] == "compile" for c in step["commands"]]
    if len(compile_cmds) != 1:
        raise RuntimeError(f"the {RECIPE} plan has {len(compile_cmds)} compile commands, expected 1")
    argv = list(compile_cmds[0]["argv"])
    wd = argv.index("--wheel-dir")
    argv[wd + 1] = str(out)
    argv[-1] = str(src)
    env = {k: v for k, v in plan["env"].items() if k not in LAUNCHER_KEYS}
    return argv, env


# --------------------------------------------------------------------------- memory-tight emulation


def _own_memory_cgroup() -> Path | None:
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, ctrls, path = line.split(":", 2)
            if "memory" in ctrls.split(","):
                base = Path("/sys/fs/cgroup/memory") / path.lstrip("/")
                return base if base.is_dir() else None
    except (OSError, ValueError):
        return None
    return None


class MemoryLimit:
    """A child memory cgroup (v1) of our own with ``limit`` bytes; processes join it via ``preexec``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.path: Path | None = None
        self.why = ""

    def __enter__(self) -> MemoryLimit:
        parent = _own_memory_cgroup()
        if parent is None:
            self.why = "no writable cgroup v1 memory controller for this process"
            return self
        path = parent / f"wheelforge-bench-{os.getpid()}"
        try:
            path.mkdir()
            (path / "memory.limit_in_bytes").write_text(str(self.limit))
            try:
                (path / "memory.memsw.limit_in_bytes").write_text(str(self.limit))
            except OSError:
                pass  # no swap accounting: there is no swap here either
            self.path = path
        except OSError as exc:
            self.why = f"cannot create {path}: {exc.strerror}"
            shutil.rmtree(path, ignore_errors=True) if path.exists() and not any(path.iterdir()) else None
        return self

    def preexec(self) -> list[str]:
        return [f"echo $$ > {shlex.quote(str(self.path / 'cgroup.procs'))}"] if self.path else []

    def read(self) -> dict[str, Any]:
        if not self.path:
            return {}
        def num(name: str) -> int | None:
            try:
                return int((self.path / name).read_text().split()[0])
            except (OSError, ValueError, IndexError):
                return None
        oom_kills = None
        try:
            for line in (self.path / "memory.oom_control").read_text().splitlines():
                if line.startswith("oom_kill "):
                    oom_kills = int(line.split()[1])
        except OSError:
            pass
        return {"peak_bytes": num("memory.max_usage_in_bytes"), "failcnt": num("memory.failcnt"), "oom_kills": oom_kills}

    def reset_peak(self) -> None:
        if self.path:
            for name in ("memory.max_usage_in_bytes", "memory.failcnt"):
                try:
                    (self.path / name).write_text("0")
                except OSError:
                    pass

    def __exit__(self, *exc: object) -> None:
        if self.path:
            try:
                self.path.rmdir()
            except OSError as err:
                print(f"warning: could not remove {self.path}: {err.strerror}", file=sys.stderr)


def emulated_jobs(recipe_name: str, memory_gib: float, cores: int) -> tuple[int, str, float]:
    """What wheelforge would choose for ``recipe_name`` on ``cores`` cores with ``memory_gib`` free."""
    from wheelforge.host.memory import MemoryFacts, choose_jobs
    from wheelforge.model.recipe import find_recipe, recipe_dirs

    recipe = find_recipe(recipe_name, recipe_dirs())
    jobs, why = choose_jobs(recipe.ram_per_job_gb, cores=cores, memory=MemoryFacts(int(memory_gib * GIB), "emulated limit"))
    return jobs, why, recipe.ram_per_job_gb


# --------------------------------------------------------------------------- figures


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure() -> list[dict[str, Any]]:
    keep = bool(os.environ.get("BENCH_KEEP"))
    work = Path(tempfile.mkdtemp(prefix="wheelforge-bench-"))
    print(f"# bench work folder: {work}", file=sys.stderr)
    try:
        return _measure(work)
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


def _measure(work: Path) -> list[dict[str, Any]]:
    env = _base_env()
    cores = os.cpu_count() or 1
    rows: list[dict[str, Any]] = []
    points: list[dict[str, Any]] = []

    # ---- 1. no-op rebuild (default: isolated build env, like a user's first `invoke build demo-cuda`)
    wh1 = work / "wh-noop"
    # verified, not --no-verify: an unverified entry is never up to date (the next build verifies it)
    prime = _check(timed_run(wf_build(wh1, "--compiler-cache", "none"), env=env, cwd=REPO,
                             log=work / "prime.log"), "priming build")
    noop_cmd = wf_build(wh1)
    warmup = _check(timed_run(noop_cmd, env=env, cwd=REPO, log=work / "noop0.log"), "no-op build")
    if "up to date" not in _log_text(warmup, work / "noop0.log"):
        raise RuntimeError(f"the second build of {RECIPE} was not a no-op; see {work / 'noop0.log'}")
    noop = [_check(timed_run(noop_cmd, env=env, cwd=REPO, log=work / f"noop{i}.log", echo=i == 1), "no-op build").wall
            for i in range(1, _int_env("BENCH_NOOP_RUNS", 7) + 1)]
    noop_s = median(noop)
    rows.append(make_row("1", f"no-op rebuild, {RECIPE}", noop_s, "s", {"op": "<", "value": 0.5}, samples=noop,
                         extra={"package": RECIPE, "archs": [ARCH], "seconds_noop": noop_s, "first_run_s": warmup.wall,
                                "priming_build_isolated_s": prime.wall,
                                "note": f"median of {len(noop)} runs after one untimed warm-up; the key was built once "
                                        f"(isolated build venv, {prime.wall:.0f} s) before"},
                         command=show(noop_cmd)))

    # ---- 2. cold build overhead versus the plan's compile command by hand, cache off for both
    plan = plan_json(env, work / "wh-plan")
    src_pristine = Path(plan["source"]["path"])
    wf_runs: list[Timed] = []
    man_runs: list[Timed] = []
    wf_jobs: tuple[int | None, str] = (None, "")
    man_cmd_shown = ""
    wf_cmd_shown = ""
    pairs = _int_env("BENCH_PAIRS", 3)
    # one untimed manual build first: the first build after idle pays for cold file caches (nvcc, headers)
    warm_dir = work / "cold-warmup"
    shutil.copytree(src_pristine, warm_dir / "src", ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    (warm_dir / "out").mkdir()
    w_argv, w_env = manual_command(plan, warm_dir / "src", warm_dir / "out")
    _check(timed_run(w_argv, env={**env, **w_env}, cwd=warm_dir / "src", log=warm_dir / "build.log"), "warm-up build")
    for i in range(pairs):
        order = ("manual", "wf") if i % 2 == 0 else ("wf", "manual")
        for which in order:
            run_dir = work / f"cold{i}-{which}"
            run_dir.mkdir()
            if which == "wf":
                argv = wf_build(run_dir / "wh", "--no-isolation", "--compiler-cache", "none", "--no-verify")
                t = _check(timed_run(argv, env=env, cwd=REPO, log=run_dir / "build.log"), "wheelforge build")
                wf_runs.append(t)
                wf_jobs = jobs_line(_log_text(t, run_dir / "build.log"))
                wf_cmd_shown = show(argv)
            else:
                # the same tree wheelforge builds: a fresh copy of the source (copy time not counted)
                src = run_dir / "src"
                shutil.copytree(src_pristine, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
                (run_dir / "out").mkdir()
                argv, plan_env = manual_command(plan, src, run_dir / "out")
                t = _check(timed_run(argv, env={**env, **plan_env}, cwd=src, log=run_dir / "build.log"), "manual build")
                man_runs.append(t)
                man_cmd_shown = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(plan_env.items())) + " " + show(argv)
    wf_cold = median([t.wall for t in wf_runs])
    man_cold = median([t.wall for t in man_runs])
    overhead = (wf_cold - man_cold) / man_cold * 100
    rows.append(make_row(
        "2", f"cold build overhead, {RECIPE}", overhead, "%", {"op": "<", "value": 3.0},
        samples=[(w.wall - m.wall) / m.wall * 100 for w, m in zip(wf_runs, man_runs, strict=True)],
        baseline={"name": "manual pip wheel (same env)", "value": man_cold, "unit": "s", "samples": [t.wall for t in man_runs]},
        extra={"package": RECIPE, "archs": [ARCH], "seconds_cold": wf_cold, "wheelforge_samples": [t.wall for t in wf_runs],
               "manual_command": man_cmd_shown, "pairs": pairs, "order": "alternating, manual first in even pairs",
               "note": f"wheelforge median {wf_cold:.1f} s vs manual {man_cold:.1f} s ({pairs} alternating pairs, "
                       "--no-isolation and --compiler-cache none for both; value = per-median overhead, samples = per-pair)"},
        command=wf_cmd_shown))
    points += [{"package": RECIPE, "variant": "wheelforge", "archs": [ARCH], "seconds": wf_cold},
               {"package": RECIPE, "variant": "manual", "archs": [ARCH], "seconds": man_cold}]

    # ---- 4. parallel efficiency and peak memory of those cold wheelforge builds
    eff = [t.cpu / (t.wall * cores) for t in wf_runs]
    peak = max(t.peak_rss for t in wf_runs)
    rows.append(make_row(
        "4", f"parallel efficiency, {RECIPE}", median(eff), "ratio", {"op": ">=", "value": 0.85}, samples=eff,
        baseline={"name": "manual build", "value": median([t.cpu / (t.wall * cores) for t in man_runs]), "unit": "ratio",
                  "samples": [t.cpu / (t.wall * cores) for t in man_runs]},
        extra={"package": RECIPE, "jobs": wf_jobs[0], "jobs_reason": wf_jobs[1], "cores": cores,
               "cpu_seconds": [t.cpu for t in wf_runs], "wall_seconds": [t.wall for t in wf_runs],
               "peak_tree_rss_bytes": peak, "max_single_rss_bytes": max(t.max_single_rss for t in wf_runs),
               "note": f"{RECIPE} compiles one .cu file, so at most one nvcc runs: efficiency is bounded by the serial "
                       f"configure/compile/package chain, not by the job count ({wf_jobs[0]} jobs chosen); peak memory of the "
                       f"build tree {peak / GIB:.2f} GiB (sampled /proc RSS sum)"},
        command=wf_cmd_shown))

    # ---- 3. warm compiler-cache rebuild: private sccache dir and port, fresh wheelhouse each time
    proj = work / "proj"
    proj.mkdir()
    port = _free_port()
    sc_dir = work / "sccache"
    (proj / "pyproject.toml").write_text(
        f'[tool.wheelforge]\narch = "{ARCH}"\ncuda = "{CUDA}"\n\n'
        f'[tool.wheelforge.sccache]\ndir = "{sc_dir}"\nport = "{port}"\nidle_timeout = "120"\n')
    sc_env = {**env, "SCCACHE_SERVER_PORT": str(port), "SCCACHE_DIR": str(sc_dir)}
    warm_argv = lambda wh: wf_build(wh, "--no-isolation", "--compiler-cache", "sccache", "--no-verify", root=True)  # noqa: E731
    try:
        populate = _check(timed_run(warm_argv(work / "wh-warm0"), env=sc_env, cwd=proj, log=work / "warm0.log"),
                          "cache-populating build")
        warm_runs = []
        cache_lines = []
        for i in range(1, _int_env("BENCH_WARM_RUNS", 3) + 1):
            log = work / f"warm{i}.log"
            t = _check(timed_run(warm_argv(work / f"wh-warm{i}"), env=sc_env, cwd=proj, log=log), "warm build")
            warm_runs.append(t.wall)
            cache_lines.append(cache_line(_log_text(t, log)))
    finally:
        sccache = shutil.which("sccache", path=env.get("PATH"))
        if sccache:
            timed_run([sccache, "--stop-server"], env=sc_env, echo=True)
    warm_s = median(warm_runs)
    rows.append(make_row(
        "3", f"warm compiler-cache rebuild / cold, {RECIPE}", warm_s / wf_cold, "ratio", {"op": "<", "value": 0.20},
        samples=[w / wf_cold for w in warm_runs],
        baseline={"name": "cold wheelforge build (cache off)", "value": wf_cold, "unit": "s", "samples": [t.wall for t in wf_runs]},
        extra={"package": RECIPE, "archs": [ARCH], "seconds_warm": warm_s, "seconds_cold": wf_cold, "warm_samples": warm_runs,
               "populating_build_s": populate.wall, "cache_lines": cache_lines,
               "note": f"warm {warm_s:.1f} s vs cold {wf_cold:.1f} s; {RECIPE} has one kernel, so the fixed cost of "
                       f"configure, packaging and audit dominates; cache: {cache_lines[-1] if cache_lines else 'no stats line'}"},
        command=show(warm_argv(Path("<fresh wheelhouse>"))) + "  (cwd: a project whose [tool.wheelforge.sccache] dir is warm)"))
    points.append({"package": RECIPE, "variant": "wheelforge-warm", "archs": [ARCH], "seconds": warm_s})

    # ---- 4b. memory-tight machine: naive MAX_JOBS=nproc versus wheelforge's choice under an 8 GiB cgroup
    limit_gib = 8
    with MemoryLimit(limit_gib * GIB) as lim:
        tight: dict[str, Any] = {"cgroup": str(lim.path) if lim.path else None, "why_not": lim.why}
        if lim.path:
            for label, flags in (("naive", ["--jobs", str(cores)]), ("wheelforge", [])):
                lim.reset_peak()
                log = work / f"tight-{label}.log"
                argv = wf_build(work / f"wh-tight-{label}", "--no-isolation", "--compiler-cache", "none", "--no-verify", *flags)
                t = timed_run(argv, env=env, cwd=REPO, log=log, preexec=lim.preexec())
                text = _log_text(t, log)
                tight[label] = {"jobs": jobs_line(text)[0], "jobs_reason": jobs_line(text)[1], "rc": t.returncode,
                                "wall_s": t.wall, "oom": t.returncode != 0 and bool(re.search(r"out-of-memory|Killed|signal 9", text)),
                                **lim.read()}
    projected = {}
    for name, c in (("xformers", 16), ("llama-cpp-python", 16), ("torch", 16), (RECIPE, cores)):
        try:
            j, why, per = emulated_jobs(name, limit_gib, c)
            projected[name] = {"cores": c, "naive_jobs": c, "wheelforge_jobs": j, "ram_per_job_gb": per, "reason": why,
                               "naive_need_gib": c * per}
        except Exception as exc:  # a recipe missing here only loses its projection
            projected[name] = {"error": str(exc)}
    wf_tight = (tight.get("wheelforge") or {}).get("jobs")
    naive = tight.get("naive") or {}
    note = (f"under a {limit_gib} GiB cgroup v1 limit: naive --jobs {cores} "
            + (f"exit {naive.get('rc')}, {'OOM' if naive.get('oom') else 'no OOM'}, peak {((naive.get('peak_bytes') or 0) / GIB):.2f} GiB; "
               if naive else f"not run ({lim.why}); ")
            + f"wheelforge chose {wf_tight} jobs. {RECIPE} has one translation unit, so neither can OOM here. "
            + "Projection with wheelforge.host.memory on a 16-core 8 GiB machine: "
            + ", ".join(f"{n} naive {p['naive_jobs']} jobs (~{p['naive_need_gib']:g} GiB) vs wheelforge {p['wheelforge_jobs']}"
                        for n, p in projected.items() if "error" not in p and n != RECIPE))
    rows.append(make_row(
        "4", f"jobs on an 8 GiB machine, {RECIPE}", float(wf_tight if wf_tight is not None else projected.get(RECIPE, {}).get("wheelforge_jobs", 0)),
        "jobs", {}, baseline={"name": "naive MAX_JOBS=nproc", "value": float(cores), "unit": "jobs"},
        extra={"package": RECIPE, "memory_limit_gib": limit_gib, "measured": tight, "projected_16_cores": projected, "note": note},
        command=show(wf_build(Path("<wheelhouse>"), "--no-isolation", "--compiler-cache", "none", "--no-verify"))
        + f"  (inside a child memory cgroup with memory.limit_in_bytes={limit_gib}G)"))

    for r in rows:
        if r["figure"] == "2":
            r["extra"]["points"] = points
        if os.environ.get("BENCH_WHEELFORGE_SRC"):
            r["extra"]["wheelforge_src"] = os.environ["BENCH_WHEELFORGE_SRC"]
            r["extra"]["note"] = f"[wheelforge from {os.environ['BENCH_WHEELFORGE_SRC']}, not src/] " + r["extra"].get("note", "")
    return rows
