#!/usr/bin/env python3
"""flash-attn on the GPU machine in one visit: build for 9.0, verify, warm rebuild, jobs under 32 GiB.

Start it in the background at the very beginning of a visit (the build takes ~15 minutes on 16
cores), then poll in separate calls; run from the repository root:

    python3 bench/device_flash_attn.py --background          # returns at once
    python3 bench/device_flash_attn.py --poll                # step, ninja n/m, ETA, memory; results into $OUT
    python3 bench/device_flash_attn.py --dry-run             # the commands only

Steps, each started only while the time budget (--budget-s, counted from the start) allows:

1. build   `invoke build flash-attn --no-isolation --cuda auto --arch 9.0 --compiler-cache ccache --offline`
           from the pinned sdist (copied into a private source cache: the sha256-checked sdist path,
           patches included) against the machine's torch; wall, CPU, peak memory of the build tree
           and of the machine (MemTotal - MemAvailable, every second; a 5 s timeline in mem.csv),
           jobs chosen.  A private ccache dir fills as it goes.
2. verify  `invoke verify <wheel> --system-site-packages --offline`: the post-build suite on the GPU;
           its output becomes flash-attn-<date>.log (bench/device/verify/ in the repository).
3. warm    the same build again from a fresh wheelhouse at the same path with the filled ccache.
4. mem32   in a child memory cgroup limited to 32 GiB (v2 or v1, if this machine lets us make one):
           what `invoke plan` picks there; with --oom-demo-s N also N seconds of the naive
           `MAX_JOBS=16` pip wheel and of wheelforge's build inside it, counting OOM kills.

Needs in .device/: src/flash_attn-2.8.3.post2.tar.gz (the PyPI sdist), bin/ccache, and whl/ with
einops (a runtime requirement of flash-attn) unless the machine has it.  Results go to --state
after every step: device_rows.json (rows for `bench/run.py --merge`), status.json, device.log,
mem.csv, flash-attn-<date>.log; --poll copies them into $OUT.  Standard library only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import device as dev  # noqa: E402  bench/device.py: Runner (PATH, .device tools, timing), rows, wheel inspection

REPO = dev.REPO
RECIPE, ARCH = "flash-attn", "9.0"
SDIST = Path(".device/src/flash_attn-2.8.3.post2.tar.gz")
#: PyPI's JSON simple API for flash_attn-2.8.3.post2.tar.gz (8,453,127 bytes), as in recipes/flash-attn.toml
SDIST_SHA256 = "d0f9f0b08a986cdeadbffcf5ec8b3a8f514366c68ad1853d3ab061bc83cc340b"
GIB = 2**30
#: The plain build measured on this machine for issue 20 (not rerun here: it would cost the whole visit):
#: FLASH_ATTN_CUDA_ARCHS=90 MAX_JOBS=16 NVCC_THREADS=2 pip wheel --no-build-isolation .
PLAIN_REFERENCE = ("plain `FLASH_ATTN_CUDA_ARCHS=90 MAX_JOBS=16 NVCC_THREADS=2 pip wheel --no-build-isolation .` on this "
                   "machine (issue 20): 22 of 72 kernel files in the first 400 s, 41-318 s each; memory in use peaked "
                   "at 63 GB as 16 jobs started together; about 15 min extrapolated, not run to the end")
#: seconds a step is expected to need at least; a step that cannot fit in the budget left is skipped
NEEDS = {"verify": 120, "warm": 300, "mem32": 30}
STEPS = ("build", "verify", "warm", "mem32")
_STEP = re.compile(r"^\s*\[(\d+)/(\d+)\]\s")


def utc_date() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d")


def meminfo_used() -> int | None:
    """MemTotal - MemAvailable in bytes: what the machine has in use."""
    try:
        info = {ln.split(":")[0]: int(ln.split()[1]) * 1024 for ln in Path("/proc/meminfo").read_text().splitlines() if ln.split()[1:]}
        return info["MemTotal"] - info["MemAvailable"]
    except (OSError, KeyError, ValueError, IndexError):
        return None


def last_step(log: Path) -> tuple[int, int] | None:
    """The last ninja ``[n/m]`` line of a build log (read from its end)."""
    try:
        with open(log, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 262144))
            lines = fh.read().decode(errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        m = _STEP.match(line)
        if m:
            return int(m.group(1)), int(m.group(2))
    return None


def build_log(wheelhouse: Path) -> Path | None:
    """wheelforge's own log of the build running in ``wheelhouse`` (the one with the ninja lines)."""
    logs = sorted((wheelhouse / "logs").glob("*.log"), key=lambda p: p.stat().st_mtime) if (wheelhouse / "logs").is_dir() else []
    return logs[-1] if logs else None


def eta_seconds(done: int, total: int, elapsed: float) -> float | None:
    """The rate since the step began: the same estimate as wheelforge.build.progress.StepTracker.eta()."""
    return (total - done) * elapsed / done if done and total else None


class StepFailed(RuntimeError):
    """A step that ran but failed; ``record`` keeps what was measured up to then."""

    def __init__(self, message: str, record: dict[str, Any]) -> None:
        super().__init__(message)
        self.record = record


class Sampler:
    """Every second: the machine's memory in use (peak kept); every 5 s a line of mem.csv with ninja's n/m."""

    def __init__(self, csv: Path, step: str, wheelhouse: Path, cgroup: Path | None = None) -> None:
        self.csv, self.step, self.wheelhouse, self.cgroup = csv, step, wheelhouse, cgroup
        self.peak_used = 0
        self.before = meminfo_used() or 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self.csv.parent.mkdir(parents=True, exist_ok=True)
        if not self.csv.exists():
            self.csv.write_text("step,step_elapsed_s,used_gib,cgroup_gib,ninja_done,ninja_total\n")
        self._t0 = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        tick = 0
        while not self._stop.is_set():
            used = meminfo_used() or 0
            self.peak_used = max(self.peak_used, used)
            if tick % 5 == 0:
                log = build_log(self.wheelhouse)
                step = last_step(log) if log else None
                cg = _read_int(self.cgroup / "memory.current") if self.cgroup else None
                with open(self.csv, "a") as fh:
                    fh.write(f"{self.step},{time.monotonic() - self._t0:.0f},{used / GIB:.2f},{'' if cg is None else f'{cg / GIB:.2f}'},"
                             f"{step[0] if step else ''},{step[1] if step else ''}\n")
            tick += 1
            self._stop.wait(1.0)


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().split()[0]
        return None if text == "max" else int(text)
    except (OSError, ValueError, IndexError):
        return None


# --------------------------------------------------------------------------- a memory cgroup


class MemoryCgroup:
    """A child memory cgroup limited to ``limit`` bytes (cgroup v2, else v1), or why none could be made."""

    def __init__(self, limit: int, name: str) -> None:
        self.limit, self.name = limit, name
        self.path: Path | None = None
        self.version = 0
        self.why = ""

    def __enter__(self) -> MemoryCgroup:
        root = Path("/sys/fs/cgroup")
        tries = []
        if (root / "cgroup.controllers").exists():
            tries.append((2, root / self.name, "memory.max"))
        if (root / "memory").is_dir():
            tries.append((1, root / "memory" / self.name, "memory.limit_in_bytes"))
        for version, path, limit_file in tries:
            try:
                if version == 2 and "memory" not in (root / "cgroup.subtree_control").read_text().split():
                    # children get memory.max only when the parent delegates the controller; a parent
                    # that holds processes itself may refuse (EBUSY): then the mkdir below has no memory.max
                    try:
                        (root / "cgroup.subtree_control").write_text("+memory")
                    except OSError:
                        pass
                path.mkdir(exist_ok=True)
                (path / limit_file).write_text(str(self.limit))
                if version == 2:
                    (path / "memory.swap.max").write_text("0") if (path / "memory.swap.max").exists() else None
                self.path, self.version = path, version
                return self
            except OSError as exc:
                self.why += f"cgroup v{version} {path}: {exc.strerror}; "
                try:
                    path.rmdir()
                except OSError:
                    pass
        self.why = self.why or "no cgroup v2 or v1 memory controller mounted"
        return self

    def __exit__(self, *exc: object) -> None:
        if self.path:
            try:
                self.path.rmdir()  # only empty once every process in it has ended
            except OSError:
                pass

    def wrap(self, argv: list[str]) -> list[str]:
        """argv run as a member of the cgroup (the shell joins it, then execs)."""
        procs = shlex.quote(str(self.path / "cgroup.procs"))
        return ["sh", "-c", f'echo $$ > {procs} && exec "$@"', "sh", *argv]

    def read(self) -> dict[str, Any]:
        if not self.path:
            return {}
        if self.version == 2:
            events = {}
            try:
                events = dict((k, int(v)) for k, v in (ln.split() for ln in (self.path / "memory.events").read_text().splitlines()))
            except (OSError, ValueError):
                pass
            return {"peak_bytes": _read_int(self.path / "memory.peak"), "oom_kills": events.get("oom_kill"),
                    "oom_events": events.get("oom")}
        oom = None
        try:
            oom = int(dict(ln.split() for ln in (self.path / "memory.oom_control").read_text().splitlines()).get("oom_kill", "0"))
        except (OSError, ValueError):
            pass
        return {"peak_bytes": _read_int(self.path / "memory.max_usage_in_bytes"), "oom_kills": oom,
                "failcnt": _read_int(self.path / "memory.failcnt")}


# --------------------------------------------------------------------------- the run


class FlashRun:
    def __init__(self, state: Path, *, dry: bool, budget_s: int, step_timeout: int, oom_demo_s: int, arch: str,
                 steps: Iterable[str] = STEPS) -> None:
        self.state, self.dry, self.budget, self.oom_demo_s, self.arch = state, dry, budget_s, oom_demo_s, arch
        self.steps = tuple(steps)
        self.r = dev.Runner(state, os.cpu_count() or 1, dry, step_timeout, warm_cache="ccache")
        self.t0 = time.monotonic()
        self.records: list[dict[str, Any]] = []
        self.work = state / "work"
        self.wh = self.work / "wh"  # one path for the cold and the warm build: ccache keys include the build folder's paths
        self.date = utc_date()

    def left(self) -> float:
        return self.budget - (time.monotonic() - self.t0)

    def say(self, line: str) -> None:
        print(line, flush=True)

    # -- bookkeeping
    def save(self, status: str, current: str = "") -> None:
        if self.dry:
            return
        dev.save_progress(self.state, self.r.machine, self.records, rows_from(self.records, self.r.machine),
                          status=status, current=current, budget_left_s=round(self.left()),
                          step_started=getattr(self, "step_started", None), wheelhouse=str(self.wh))

    @property
    def cache(self) -> str:
        """ccache when .device/bin or PATH has it (the GPU image has none of its own), else no compiler cache."""
        return "ccache" if self.dry or shutil.which("ccache", path=self.r.cache_env.get("PATH")) else "none"

    def build_argv(self) -> list[str]:
        return ["python3", "-m", "invoke", "build", RECIPE, "--no-isolation", "--cuda", "auto", "--arch", self.arch,
                "--wheelhouse", str(self.wh), "--compiler-cache", self.cache, "--no-verify", "--offline"]

    def env(self) -> dict[str, str]:
        return {**self.r.cache_env, "WHEELFORGE_CACHE": str(self.state / "cache"), "CCACHE_DIR": str(self.state / "ccache"),
                "CCACHE_MAXSIZE": "30G"}

    def seed_source_cache(self) -> None:
        """The sdist where `fetch` looks for it offline: <cache>/sources/sha256/<sha256>/<file>."""
        entry = self.state / "cache" / "sources" / "sha256" / SDIST_SHA256
        self.say(f"# source cache: {REPO / SDIST} -> {entry}/")
        if self.dry:
            return
        data = (REPO / SDIST).read_bytes()
        got = hashlib.sha256(data).hexdigest()
        if got != SDIST_SHA256:
            raise RuntimeError(f"{SDIST} has sha256 {got}, not the pinned {SDIST_SHA256}")
        entry.mkdir(parents=True, exist_ok=True)
        (entry / SDIST.name).write_bytes(data)

    def timed_build(self, name: str, log: Path) -> dict[str, Any]:
        argv = self.build_argv()
        if self.dry:
            self.r.timed(argv, self.env(), REPO, log)
            return {"step": name, "command": shlex.join(argv)}
        with Sampler(self.state / "mem.csv", name, self.wh) as s:
            t = self.r.timed(argv, self.env(), REPO, log)
        rec: dict[str, Any] = {"step": name, "command": shlex.join(argv), "rc": t["rc"], "wall": t["wall"], "cpu": t["cpu"],
                               "peak_tree_rss": t["peak_rss"], "peak_used": s.peak_used, "used_before": s.before,
                               "cores": os.cpu_count() or 1, "log": str(log)}
        lines = list(dev._read_lines(log))
        m = next((re.search(r"# jobs: ((\d+) jobs?.*)", ln) for ln in lines if "# jobs:" in ln), None)
        if m:
            rec.update(jobs=int(m.group(2)), jobs_reason=m.group(1))
        rec["cache_line"] = next((ln.strip() for ln in reversed(lines) if "compiler cache:" in ln and "hits" in ln), None)
        wlog = build_log(self.wh)
        if wlog:
            rec["ninja_steps"] = last_step(wlog)
            shutil.copy2(wlog, log.with_name(f"{name}-wheelforge.log"))
        if t["rc"] != 0:
            raise StepFailed(f"exit {t['rc']}; last lines: {' / '.join(t['tail'][-8:])}", rec)
        rec.update(self.r.inspect_wheel(self.wh))
        return rec

    def step(self, name: str, fn) -> None:
        need = NEEDS.get(name, 0)
        if self.left() < need:
            self.say(f"-- {name}: skipped, {self.left():.0f} s of the budget left, needs about {need} s")
            self.records.append({"step": name, "ok": False, "skipped": True, "error": f"budget: {self.left():.0f} s left"})
            self.save("running")
            return
        self.say(f"== {name}  ({dev.utc_now()}, {self.left():.0f} s of the budget left)")
        self.step_started = dev.utc_now()
        self.save("running", name)
        try:
            rec = fn()
            rec["ok"] = True
        except Exception as exc:  # recorded with what was measured; the next step still runs
            rec = {**getattr(exc, "record", {}), "step": name, "ok": False, "error": f"{type(exc).__name__}: {exc}"}
            self.say(f"!! {name} failed: {exc}")
        rec["finished"] = dev.utc_now()
        if not self.dry:
            self.records.append(rec)
        self.say(f"-- {name}: {'ok' if rec.get('ok') else 'FAILED'}" + (f", {rec['wall']:.1f} s wall" if rec.get("wall") else ""))
        self.save("running")

    def do_build(self) -> dict[str, Any]:
        return self.timed_build("build", self.work / "build.log")

    def do_verify(self) -> dict[str, Any]:
        wheels = sorted(p for p in self.wh.rglob("*.whl") if "scratch" not in p.parts) if not self.dry else [self.wh / "<wheel>"]
        if not wheels:
            raise RuntimeError(f"no wheel in {self.wh}: the build step failed")
        argv = ["python3", "-m", "invoke", "verify", str(wheels[-1]), "--wheelhouse", str(self.wh), "--system-site-packages",
                "--offline", "--find-links", str(REPO / ".device" / "whl")]
        log = self.work / "verify.log"
        t = self.r.timed(argv, self.r.env, REPO, log)
        rec: dict[str, Any] = {"step": "verify", "rc": t["rc"], "wall": t["wall"], "command": shlex.join(argv), "wheel": wheels[-1].name}
        if not self.dry:
            shutil.copy2(log, self.state / f"flash-attn-{self.date}.log")
            report = wheels[-1].parent / "verify.json"
            if report.exists():
                rec["report"] = json.loads(report.read_text())
        if t["rc"] != 0:
            raise RuntimeError(f"verify exited {t['rc']}: {' / '.join(t['tail'][-8:])}")
        return rec

    def do_warm(self) -> dict[str, Any]:
        if self.cache == "none":
            raise RuntimeError("no ccache in .device/bin or on PATH: nothing to rebuild warm")
        if not self.dry:
            os.rename(self.wh, self.wh.with_name("wh-cold"))  # the warm build starts with no wheelhouse
        return self.timed_build("warm", self.work / "warm.log")

    def do_mem32(self) -> dict[str, Any]:
        rec: dict[str, Any] = {"step": "mem32", "limit_bytes": 32 * GIB, "cores": os.cpu_count() or 1}
        # --no-isolation and no --with: planning reads the machine's torch, no network
        plan_argv = ["python3", "-m", "invoke", "plan", RECIPE, "--no-isolation", "--cuda", "auto", "--arch", self.arch,
                     "--compiler-cache", "none", "--json"]
        if self.dry:
            self.say("# in a child memory cgroup limited to 32 GiB: " + shlex.join(plan_argv))
            return rec
        with MemoryCgroup(32 * GIB, f"wheelforge-flash-mem32-{os.getpid()}") as cg:
            if cg.path is None:
                raise RuntimeError(f"no memory cgroup: {cg.why}")
            rec["cgroup"] = f"v{cg.version} {cg.path}"
            p = self.r.run_simple(cg.wrap(plan_argv), cwd=REPO, env=self.env())
            if p.returncode != 0:
                raise RuntimeError(f"invoke plan in the cgroup failed: {(p.stderr or p.stdout).strip()[-400:]}")
            plan = json.loads(p.stdout[p.stdout.index("{"):])
            rec.update(jobs=plan["jobs"], jobs_reason=plan["jobs_reason"], plan_command=shlex.join(plan_argv))
            if self.oom_demo_s and self.left() > 2 * self.oom_demo_s + 30:
                rec["demo"] = self.oom_demo(cg)
        return rec

    def oom_demo(self, cg: MemoryCgroup) -> dict[str, Any]:
        """oom_demo_s seconds each of the naive build and of wheelforge's (compiler cache off), inside the cgroup."""
        tree = self.work / "demo-src"
        shutil.rmtree(tree, ignore_errors=True)
        tree.mkdir(parents=True)
        subprocess.run(["tar", "xzf", str(REPO / SDIST), "-C", str(tree)], check=True)
        top = tree / SDIST.name.removesuffix(".tar.gz")
        cores = str(os.cpu_count() or 1)
        naive_env = {**self.r.env, "FLASH_ATTN_CUDA_ARCHS": self.arch.replace(".", ""), "MAX_JOBS": cores, "NVCC_THREADS": "2",
                     "FLASH_ATTENTION_FORCE_BUILD": "TRUE"}
        wf_argv = self.build_argv()
        wf_argv[wf_argv.index(str(self.wh))] = str(self.work / "wh-cgroup")
        wf_argv[wf_argv.index("--compiler-cache") + 1] = "none"  # a warm cache would compile nothing
        runs = {"naive": (["python3", "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-v", "--wheel-dir", str(tree / "out"), "."],
                          naive_env, top),
                "wheelforge": (wf_argv, self.env(), REPO)}
        out: dict[str, Any] = {}
        for name, (argv, env, cwd) in runs.items():
            before = cg.read()
            timeout, self.r.timeout = self.r.timeout, self.oom_demo_s  # Runner.timed kills the session at its timeout
            try:
                t = self.r.timed(cg.wrap(argv), env, cwd, self.work / f"mem32-{name}.log")
            finally:
                self.r.timeout = timeout
            after = cg.read()
            out[name] = {"rc": t["rc"], "wall": t["wall"], "seconds_allowed": self.oom_demo_s, "cgroup_before": before,
                         "cgroup_after": after, "oom_kills": (after.get("oom_kills") or 0) - (before.get("oom_kills") or 0),
                         "command": shlex.join(argv), "max_jobs": cores if name == "naive" else None}
        return out

    def run(self) -> int:
        self.r.setup()
        self.say(f"# flash-attn {self.arch} on {self.r.machine['name']}; budget {self.budget} s; compiler cache {self.cache}")
        try:
            self.seed_source_cache()
        except (OSError, RuntimeError) as exc:
            self.say(f"!! {exc}")
            self.save("failed: no sdist")
            return 1
        if "build" in self.steps:
            self.step("build", self.do_build)
        built = self.dry or any(r["step"] == "build" and r.get("ok") for r in self.records)
        for name, fn in (("verify", self.do_verify), ("warm", self.do_warm)):
            if name not in self.steps:
                continue
            if built:
                self.step(name, fn)
            else:
                self.records.append({"step": name, "ok": False, "skipped": True, "error": "no build step succeeded in this run"})
        if "mem32" in self.steps:
            self.step("mem32", self.do_mem32)
        failed = [r["step"] for r in self.records if not r.get("ok")]
        self.save("done" + (f", not ok: {' '.join(failed)}" if failed else ""))
        self.say(summary(self.records))
        return 1 if failed else 0


# --------------------------------------------------------------------------- rows and summary (pure)


def rows_from(records: Iterable[Mapping[str, Any]], machine: Mapping[str, Any]) -> list[dict[str, Any]]:
    by = {r["step"]: r for r in records if r.get("ok")}
    rows: list[dict[str, Any]] = []
    label = f"{RECIPE} {ARCH}"
    b = by.get("build")
    if b:
        eff = b["cpu"] / (b["wall"] * b["cores"])
        rows.append(dev._row("4", f"parallel efficiency, {label}", eff, "ratio", {"op": ">=", "value": 0.85},
                             extra={"package": RECIPE, "archs": [ARCH], "jobs": b.get("jobs"), "jobs_reason": b.get("jobs_reason"),
                                    "cpu_seconds": b["cpu"], "wall_seconds": b["wall"], "peak_tree_rss_bytes": b["peak_tree_rss"],
                                    "peak_used_bytes": b["peak_used"], "used_before_bytes": b["used_before"], "wheel_bytes": b.get("wheel_bytes"),
                                    "cubins": b.get("cubins"), "cache": b.get("cache_line"),
                                    "note": (f"{b['wall'] / 60:.1f} min wall, {b['cpu'] / 3600:.2f} CPU h at {b.get('jobs')} jobs (ccache filling); "
                                             f"peak build-tree memory {b['peak_tree_rss'] / GIB:.1f} GiB, machine in use "
                                             f"{b['used_before'] / GIB:.1f} -> peak {b['peak_used'] / GIB:.1f} GiB; beside the " + PLAIN_REFERENCE)},
                             command=b["command"], machine=machine, date=b["finished"]))
    w = by.get("warm")
    if b and w:
        rows.append(dev._row("3", f"warm compiler-cache rebuild / cold, {label}", w["wall"] / b["wall"], "ratio", {"op": "<", "value": 0.20},
                             baseline={"name": "cache-filling build", "value": b["wall"], "unit": "s"},
                             extra={"package": RECIPE, "archs": [ARCH], "seconds_warm": w["wall"], "seconds_cold": b["wall"],
                                    "cache": w.get("cache_line"), "note": f"warm {w['wall']:.0f} s vs cold {b['wall']:.0f} s; {w.get('cache_line') or ''}"},
                             command=w["command"] + "  (a private ccache dir, filled by the build before)", machine=machine, date=w["finished"]))
    m = by.get("mem32")
    if m and m.get("jobs"):
        demo = m.get("demo") or {}
        note = f"inside a child memory cgroup ({m['cgroup']}) limited to 32 GiB: wheelforge picks {m['jobs_reason']}"
        for name, d in demo.items():
            note += (f"; {name} ({d['command'][:60]}...) for {d['seconds_allowed']} s: exit {d['rc']}, {d['oom_kills']} OOM kills, "
                     f"cgroup peak {(d['cgroup_after'].get('peak_bytes') or 0) / GIB:.1f} GiB")
        rows.append(dev._row("4", f"jobs on a {m['cores']}-core 32 GiB machine, {RECIPE} (GPU machine cgroup)", float(m["jobs"]), "jobs", None,
                             baseline={"name": f"naive MAX_JOBS={m['cores']}", "value": float(m["cores"]), "unit": "jobs"},
                             extra={"package": RECIPE, "cgroup": m["cgroup"], "jobs_reason": m["jobs_reason"], "demo": demo, "note": note},
                             command=m["plan_command"] + "  (inside the 32 GiB cgroup)", machine=machine, date=m["finished"]))
    return rows


def summary(records: Iterable[Mapping[str, Any]]) -> str:
    out = ["# summary"]
    for r in records:
        if not r.get("ok"):
            out.append(f"{r['step']}: {'skipped' if r.get('skipped') else 'FAILED'}: {r.get('error', '')[:300]}")
        elif r["step"] in ("build", "warm"):
            out.append(f"{r['step']}: {r['wall']:.0f} s wall, {r['cpu']:.0f} s CPU, jobs {r.get('jobs')}, peak tree "
                       f"{r['peak_tree_rss'] / GIB:.1f} GiB, machine peak {r['peak_used'] / GIB:.1f} GiB (before {r['used_before'] / GIB:.1f}), "
                       f"ninja {r.get('ninja_steps')}, {r.get('cache_line')}, wheel {r.get('wheel')} {r.get('wheel_bytes')} bytes, "
                       f"cubins {json.dumps({k: v.get('elf') for k, v in (r.get('cubins') or {}).items()})}")
        elif r["step"] == "verify":
            rep = r.get("report") or {}
            out.append(f"verify: {rep.get('result')} {rep.get('counts')} in {r['wall']:.0f} s; GPU {rep.get('gpu')}")
        elif r["step"] == "mem32":
            out.append(f"mem32: {r.get('cgroup')}: {r.get('jobs_reason')}; demo {json.dumps(r.get('demo'))[:600]}")
    return "\n".join(out)


# --------------------------------------------------------------------------- poll


def poll(state: Path) -> int:
    status_file = state / "status.json"
    if not status_file.exists():
        print(f"no run in {state} (start one with --background)")
        return 1
    status = json.loads(status_file.read_text())
    try:
        os.kill(int(status.get("pid", 0)), 0)
        alive = True
    except (OSError, ValueError):
        alive = False
    print(json.dumps({**status, "process_alive": alive}))
    wh = Path(status.get("wheelhouse", state / "work" / "wh"))
    log = build_log(wh)
    step = last_step(log) if log else None
    if step and status.get("step_started") and status.get("current") in ("build", "warm"):
        started = datetime.fromisoformat(status["step_started"])
        elapsed = (datetime.now(timezone.utc) - started).total_seconds()
        eta = eta_seconds(step[0], step[1], elapsed)
        print(f"ninja {step[0]}/{step[1]} after {elapsed:.0f} s; ETA {'-' if eta is None else f'{eta:.0f} s'}")
    used = meminfo_used()
    print(f"memory in use now {used / GIB:.1f} GiB" if used else "memory: unknown")
    lines = dev._read_lines(state / "device.log")
    print("".join(f"  {ln}\n" for ln in list(lines)[-15:]), end="")
    out = os.environ.get("OUT")
    if out:
        for p in [state / n for n in ("device_rows.json", "status.json", "device.log", "mem.csv")] + sorted(state.glob("flash-attn-*.log")) \
                + sorted((state / "work").glob("*.log")):
            if p.is_file():
                shutil.copy2(p, Path(out) / p.name)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--state", default="/tmp/wheelforge-flash-attn", help="results and build folders (outside the repository copy)")
    ap.add_argument("--arch", default=ARCH, help="CUDA arch to build (default 9.0: the GPU machine's H200)")
    ap.add_argument("--budget-s", type=int, default=1500, help="seconds from the start after which no further step begins (default 1500)")
    ap.add_argument("--step-timeout", type=int, default=1800, help="seconds before a build is killed")
    ap.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated subset of {','.join(STEPS)} (verify and warm need "
                                                             "build in the same run)")
    ap.add_argument("--oom-demo-s", type=int, default=0, help="seconds of the naive and of wheelforge's build inside the 32 GiB cgroup (0: none)")
    ap.add_argument("--background", action="store_true", help="detach (own session), log to STATE/device.log, return at once")
    ap.add_argument("--poll", action="store_true", help="status, ninja progress and ETA, memory; copy results into $OUT")
    ap.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    args = ap.parse_args(argv)
    steps = [x for x in args.steps.split(",") if x]
    if not steps or set(steps) - set(STEPS):
        ap.error(f"--steps takes a comma-separated subset of {','.join(STEPS)}, not {args.steps!r}")
    state = Path(args.state).resolve()
    if args.poll:
        return poll(state)
    if args.background and not args.dry_run:
        if state.exists():
            shutil.rmtree(state)
        state.mkdir(parents=True)
        child = [sys.executable, str(Path(__file__).resolve()), *[a for a in (argv if argv is not None else sys.argv[1:]) if a != "--background"]]
        env = {k: v for k, v in os.environ.items() if k != "OUT"}  # $OUT belongs to the launching call only
        with open(state / "device.log", "w") as log:
            p = subprocess.Popen(child, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        print(f"started pid {p.pid} (own session); poll with: python3 bench/device_flash_attn.py --poll")
        return 0
    return FlashRun(state, dry=args.dry_run, budget_s=args.budget_s, step_timeout=args.step_timeout, oom_demo_s=args.oom_demo_s,
                    arch=args.arch, steps=steps).run()


if __name__ == "__main__":
    sys.exit(main())
