#!/usr/bin/env python3
"""Benchmarks on the GPU machine: wheelforge builds of xformers and llama-cpp-python beside the manual way.

Self-contained (standard library only).  Run from the repository root on the GPU machine:

    python3 bench/device.py --plan 'xformers-manual:9.0;12.0 xformers-wf:9.0;12.0 xformers-noop' --background
    python3 bench/device.py --poll          # status, log tail; copies results into $OUT
    python3 bench/device.py --plan '...' --dry-run   # print the commands only

Steps (space- or comma-separated; arch lists use ';'):
    <pkg>-manual:<archs>  the plan's compile command by hand: `pip wheel --no-deps --no-build-isolation .`
                          with the env `invoke plan` gives (identical flags), on the unpatched source
    <pkg>-plain:<archs>   the bare manual command of shared/README.md (TORCH_CUDA_ARCH_LIST + MAX_JOBS, or
                          CMAKE_BUILD_PARALLEL_LEVEL + CMAKE_ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=..")
    <pkg>-wf:<archs>      `invoke build <recipe> --no-isolation --source <fresh copy> --compiler-cache none`
    <pkg>-warm:<archs>    two wheelforge builds with a private sccache (--warm-cache ccache: a private ccache dir;
                          ccache from PATH or .device/bin): one fills it, the next (fresh
                          wheelhouse and build folder) is the warm rebuild
    <pkg>-noop            the last <pkg>-wf build's command again, 5 times (key already built)
    <pkg>-verify          `invoke verify` on the last <pkg>-wf wheel: a fresh venv that also sees the machine's
                          torch (--system-site-packages), missing test wheels from .device/whl, the suite on the GPU
<pkg> is xformers or llama (llama-cpp-python).  Sources: .device/src/xformers-0.0.35.tar.gz and
.device/src/llama-trimmed.tar.gz; wheels in .device/whl are installed with pip --target .device/pylib.

Results go to --state (default /tmp/wheelforge-device-bench) after every step: device_rows.json (rows for
`bench/run.py --merge`, and raw step records), device.log, status.json.  A failed step is
recorded and the next one runs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path.cwd()
PACKAGES = {
    "xformers": {"recipe": "xformers", "tarball": ".device/src/xformers-0.0.35.tar.gz"},
    "llama": {"recipe": "llama-cpp-python", "tarball": ".device/src/llama-trimmed.tar.gz"},
}
VARIANTS = ("manual", "plain", "wf", "warm", "noop", "verify")
NO_ARCH_VARIANTS = ("noop", "verify")  # act on the last <pkg>-wf build
OFFICIAL_CU128 = "7.0;7.5;8.0;8.6;9.0;10.0;12.0"
LAUNCHER_KEYS = ("CMAKE_C_COMPILER_LAUNCHER", "CMAKE_CXX_COMPILER_LAUNCHER", "CMAKE_CUDA_COMPILER_LAUNCHER", "PYTORCH_NVCC")
#: llama-cpp-python wheel size goals (issue 8, figure 6), bytes, by arch list
SIZE_GOALS = {("9.0", "12.0"): 110e6, ("12.0",): 70e6}
#: stock llama-cpp-python wheel sizes measured by the team on the GPU machine (../shared/README.md,
#: "Baseline: the manual way"); cited, marked as such, only where a run built no stock wheel itself
SHARED_STOCK_BYTES = {("9.0", "12.0"): 501_921_591, ("12.0",): 278_770_567}
NOOP_RUNS = 5


# --------------------------------------------------------------------------- steps (pure)


@dataclass(frozen=True)
class Step:
    package: str  # "xformers" | "llama"
    variant: str  # one of VARIANTS
    archs: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        return f"{self.package}-{self.variant}" + (f":{';'.join(self.archs)}" if self.archs else "")

    @property
    def recipe(self) -> str:
        return PACKAGES[self.package]["recipe"]


def normalize_arch(a: str) -> str:
    """``90`` / ``sm_90`` / ``9.0`` -> ``9.0``; ``120a`` -> ``12.0a``."""
    a = a.strip().lower().removeprefix("sm_").removeprefix("compute_")
    m = re.fullmatch(r"(\d+)\.(\d)([af]?)", a) or re.fullmatch(r"(\d+)(\d)([af]?)", a)
    if not m:
        raise ValueError(f"cannot read CUDA arch {a!r}; write 9.0, 90 or sm_90")
    return f"{int(m.group(1))}.{m.group(2)}{m.group(3)}"


def parse_plan(text: str) -> list[Step]:
    """``'xformers-wf:9.0;12.0, llama-noop'`` -> steps; a bad step names itself and the accepted form."""
    steps = []
    for item in re.split(r"[\s,]+", text.strip()):
        if not item:
            continue
        head, _, archs = item.partition(":")
        pkg, _, variant = head.rpartition("-")
        if pkg == "llama-cpp-python":
            pkg = "llama"
        if pkg not in PACKAGES or variant not in VARIANTS:
            raise ValueError(f"cannot read plan step {item!r}; write <{'|'.join(PACKAGES)}>-<{'|'.join(VARIANTS)}>[:<archs>], "
                             "e.g. xformers-wf:9.0;12.0")
        arch_list = tuple(normalize_arch(a) for a in re.split(r"[;]", archs) if a.strip())
        if variant in NO_ARCH_VARIANTS and arch_list:
            raise ValueError(f"plan step {item!r}: {variant} acts on the last {pkg}-wf build; give it no archs")
        if variant not in NO_ARCH_VARIANTS and not arch_list:
            raise ValueError(f"plan step {item!r} needs archs, e.g. {item}:9.0;12.0")
        steps.append(Step(pkg, variant, arch_list))
    if not steps:
        raise ValueError("the plan is empty; pass --plan 'xformers-wf:9.0;12.0 ...'")
    return steps


def torch_arch_list(archs: Sequence[str]) -> str:
    return ";".join(archs)


def cmake_arch_list(archs: Sequence[str]) -> str:
    return ";".join(a.replace(".", "") for a in archs)


def plain_command(step: Step, jobs: int) -> tuple[list[str], dict[str, str]]:
    """The bare manual command of shared/README.md."""
    argv = ["python3", "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", "{out}", "."]
    if step.package == "xformers":
        return argv, {"TORCH_CUDA_ARCH_LIST": torch_arch_list(step.archs), "MAX_JOBS": str(jobs)}
    return argv, {"CMAKE_BUILD_PARALLEL_LEVEL": str(jobs),
                  "CMAKE_ARGS": f"-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES={cmake_arch_list(step.archs)}"}


def wf_command(step: Step, *, source: str, wheelhouse: str, cache: str = "none", root: str | None = None) -> list[str]:
    head = ["python3", "-m", "invoke"] + (["-r", root] if root else [])
    return [*head, "build", step.recipe, "--no-isolation", "--cuda", "auto", "--arch", ";".join(step.archs), "--source", source,
            "--wheelhouse", wheelhouse, "--compiler-cache", cache, "--no-verify", "--offline"]


def plan_command(step: Step, *, source: str) -> list[str]:
    return ["python3", "-m", "invoke", "plan", step.recipe, "--no-isolation", "--cuda", "auto", "--arch", ";".join(step.archs),
            "--source", source, "--compiler-cache", "none", "--json"]


def count_elf(listing: str) -> dict[str, int]:
    """``cuobjdump --list-elf`` output -> {"sm_90": 11, "sm_120a": 144}."""
    out: dict[str, int] = {}
    for m in re.finditer(r"\.(sm_\d+[af]?)\.cubin", listing):
        out[m.group(1)] = out.get(m.group(1), 0) + 1
    return dict(sorted(out.items()))


# --------------------------------------------------------------------------- rows (pure)


def _median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


def _row(figure: str, name: str, value: float, unit: str, goal: Mapping[str, Any] | None, *, samples: Sequence[float] = (),
         baseline: Mapping[str, Any] | None = None, extra: Mapping[str, Any] | None = None, command: str = "",
         machine: Mapping[str, Any], date: str, series: str | None = None) -> dict[str, Any]:
    row = {"figure": figure, "name": name, "value": float(value), "unit": unit, "goal": dict(goal or {}),
           "samples": [float(s) for s in samples], "baseline": dict(baseline) if baseline else None, "extra": dict(extra or {}),
           "command": command, "machine": dict(machine), "date": date}
    if series:  # rows of one series replace each other when merged, whatever their names say
        row["series"] = series
    return row


def _label(pkg: str, archs: Sequence[str]) -> str:
    return f"{PACKAGES[pkg]['recipe']} {';'.join(archs)}"


def rows_from_records(records: Sequence[Mapping[str, Any]], machine: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Figure rows (1, 2, 3, 4, 5, 6) from the step records that finished so far."""
    ok = [r for r in records if r.get("ok")]
    by: dict[tuple[str, str, tuple[str, ...]], list[Mapping[str, Any]]] = {}
    for r in ok:
        by.setdefault((r["package"], r["variant"], tuple(r["archs"])), []).append(r)
    rows: list[dict[str, Any]] = []
    points = [{"package": PACKAGES[r["package"]]["recipe"], "variant": {"wf": "wheelforge", "warm": "wheelforge-warm"}.get(r["variant"], r["variant"]),
               "archs": list(r["archs"]), "seconds": r["wall"], "wheel_bytes": r.get("wheel_bytes")}
              for r in ok if r["variant"] in ("wf", "manual", "plain", "warm")]
    # a warm step's first build is a cold wheelforge build with the compiler cache filling
    points += [{"package": PACKAGES[r["package"]]["recipe"], "variant": "wheelforge (cache filling)", "archs": list(r["archs"]),
                "seconds": r["populate_wall"], "wheel_bytes": None} for r in ok if r["variant"] == "warm" and r.get("populate_wall")]

    for (pkg, variant, archs), recs in sorted(by.items()):
        date = max(r["finished"] for r in recs)
        label = _label(pkg, archs)
        if variant == "wf":
            manual = by.get((pkg, "manual", archs)) or by.get((pkg, "plain", archs))
            wf_s = _median([r["wall"] for r in recs])
            if manual:
                man_s = _median([r["wall"] for r in manual])
                rows.append(_row("2", f"cold build overhead, {label}", (wf_s - man_s) / man_s * 100, "%", {"op": "<", "value": 3.0},
                                 samples=[(w["wall"] - m["wall"]) / m["wall"] * 100 for w, m in zip(recs, manual, strict=True)],
                                 baseline={"name": f"manual ({manual[0]['variant']})", "value": man_s, "unit": "s",
                                           "samples": [m["wall"] for m in manual]},
                                 extra={"package": PACKAGES[pkg]["recipe"], "archs": list(archs), "seconds_cold": wf_s,
                                        "manual_command": manual[0]["command"], "points": points,
                                        "note": f"wheelforge {wf_s:.0f} s vs manual {man_s:.0f} s on the GPU machine"},
                                 command=recs[0]["command"], machine=machine, date=max(date, max(m["finished"] for m in manual))))
            r0 = recs[-1]
            rows.append(_row("4", f"parallel efficiency, {label}", r0["cpu"] / (r0["wall"] * r0["cores"]), "ratio",
                             {"op": ">=", "value": 0.85}, samples=[r["cpu"] / (r["wall"] * r["cores"]) for r in recs],
                             extra={"package": PACKAGES[pkg]["recipe"], "archs": list(archs), "jobs": r0.get("jobs"),
                                    "jobs_reason": r0.get("jobs_reason"), "cpu_seconds": r0["cpu"], "wall_seconds": r0["wall"],
                                    "peak_tree_rss_bytes": r0.get("peak_rss"),
                                    "note": f"peak build-tree memory {(r0.get('peak_rss') or 0) / 2**30:.1f} GiB at {r0.get('jobs')} jobs"},
                             command=r0["command"], machine=machine, date=date))
        if variant in ("wf", "warm") and pkg == "llama" and archs in SIZE_GOALS and recs[-1].get("wheel_bytes") \
                and not (variant == "warm" and by.get((pkg, "wf", archs))):
            rows.append(_size_row(pkg, archs, recs[-1], by.get((pkg, "manual", archs)) or by.get((pkg, "plain", archs)),
                                  machine=machine, date=date))
        if variant == "warm":
            cold = by.get((pkg, "wf", archs))
            warm_samples = [w for r in recs for w in (r.get("samples") or [r["wall"]])]
            warm_s = _median(warm_samples)
            cold_s = _median([r["wall"] for r in cold]) if cold else _median([r["populate_wall"] for r in recs])
            rows.append(_row("3", f"warm compiler-cache rebuild / cold, {label}", warm_s / cold_s, "ratio", {"op": "<", "value": 0.20},
                             samples=[w / cold_s for w in warm_samples],
                             baseline={"name": "cold wheelforge build (cache off)" if cold else "cache-filling build",
                                       "value": cold_s, "unit": "s"},
                             extra={"package": PACKAGES[pkg]["recipe"], "archs": list(archs), "seconds_warm": warm_s,
                                    "seconds_cold": cold_s, "populate_wall": recs[-1]["populate_wall"], "cache": recs[-1].get("cache_line"),
                                    "note": f"warm {warm_s:.0f} s vs cold {cold_s:.0f} s; {recs[-1].get('cache_line') or ''}"},
                             command=recs[-1]["command"], machine=machine, date=date))
        elif variant == "noop":
            r0 = recs[-1]
            rows.append(_row("1", f"no-op rebuild, {PACKAGES[pkg]['recipe']}", _median(r0["samples"]), "s", {"op": "<", "value": 0.5},
                             samples=r0["samples"], extra={"package": PACKAGES[pkg]["recipe"], "seconds_noop": _median(r0["samples"]),
                                                          "note": "goal is stated for a 2-core machine; measured on the GPU machine"},
                             command=r0["command"], machine=machine, date=date))

    # figure 5: 12.0 alone versus the longest arch list built the same way
    for pkg in PACKAGES:
        for variant in ("wf", "manual", "plain"):
            single = by.get((pkg, variant, ("12.0",)))
            if not single and variant == "wf" and by.get((pkg, "warm", ("12.0",))):
                # a warm step's first build is a cold wheelforge build (its compiler cache filling)
                single = [{**r, "wall": r["populate_wall"]} for r in by[(pkg, "warm", ("12.0",))]]
            multi = sorted((k for k in by if k[0] == pkg and k[1] == variant and len(k[2]) > 1), key=lambda k: len(k[2]))
            if not single or not multi:
                continue
            big = multi[-1]
            s, m = _median([r["wall"] for r in single]), _median([r["wall"] for r in by[big]])
            official = ";".join(big[2]) == OFFICIAL_CU128
            rows.append(_row("5", f"12.0 alone / {';'.join(big[2])}, {PACKAGES[pkg]['recipe']} ({variant})", s / m, "ratio",
                             {"op": "<=", "value": 0.25}, baseline={"name": f"archs {';'.join(big[2])}", "value": m, "unit": "s"},
                             extra={"package": PACKAGES[pkg]["recipe"], "seconds_single": s, "seconds_multi": m,
                                    "official_cu128_list": official, "points": points,
                                    "note": "" if official else f"compared with {';'.join(big[2])}, not PyTorch's cu128 list "
                                                                f"{OFFICIAL_CU128} (not built in this run)"},
                             command=single[-1]["command"], machine=machine,
                             series=f"12.0 alone / the longest arch list built, {PACKAGES[pkg]['recipe']} ({variant})",
                             date=max(max(r["finished"] for r in single), max(r["finished"] for r in by[big]))))
            break
    if rows and points:
        rows[0]["extra"].setdefault("points", points)
    return rows


def _size_row(pkg: str, archs: tuple[str, ...], rec: Mapping[str, Any], stock: Sequence[Mapping[str, Any]] | None, *,
              machine: Mapping[str, Any], date: str) -> dict[str, Any]:
    """Figure 6: the wheel's size beside the stock wheel of the same archs and flags."""
    if stock and stock[-1].get("wheel_bytes"):
        baseline = {"name": "stock wheel (manual build, same run)", "value": stock[-1]["wheel_bytes"], "unit": "bytes"}
        note = ""
    else:
        baseline = {"name": "stock wheel (shared/README.md baseline, not this run)", "value": SHARED_STOCK_BYTES[archs], "unit": "bytes"}
        note = "no stock wheel was built in this run; the baseline is the team's measurement on the same GPU machine"
    return _row("6", f"wheel size, {_label(pkg, archs)}", rec["wheel_bytes"], "bytes", {"op": "<=", "value": SIZE_GOALS[archs]},
                baseline=baseline,
                extra={"package": PACKAGES[pkg]["recipe"], "archs": list(archs), "wheel": rec.get("wheel"), "cubins": rec.get("cubins"),
                       "stock_cubins": stock[-1].get("cubins") if stock else None, "note": note},
                command=rec["command"], machine=machine, date=date)


# --------------------------------------------------------------------------- running (impure)


def utc_now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def machine_info() -> dict[str, Any]:
    cores = os.cpu_count() or 1
    gpu = None
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True,
                                 timeout=30, env=dict(os.environ), check=False)
            gpu = ", ".join(x.strip() for x in out.stdout.splitlines() if x.strip()) or None
        except (OSError, subprocess.TimeoutExpired):
            pass
    cpu, ram = "", None
    try:
        cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("model name")), "")
        ram = round(int(next(ln for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal:")).split()[1]) / 2**20, 1)
    except (OSError, StopIteration, ValueError):
        pass
    short = "H100" if gpu and "H100" in gpu else (gpu or "no GPU")
    return {"name": f"GPU machine ({short}, {cores} cores)", "hostname": socket.gethostname(), "cores": cores, "ram_gib": ram,
            "cpu": cpu, "gpu": gpu, "gpu_machine": True}


def _session_pids(sid: int) -> list[int]:
    """Processes whose session id is ``sid``."""
    pids = []
    for e in os.scandir("/proc"):
        if e.name.isdigit():
            try:
                with open(f"/proc/{e.name}/stat", "rb") as fh:
                    s = fh.read().decode(errors="replace")
                if int(s[s.rfind(")") + 2:].split()[3]) == sid:
                    pids.append(int(e.name))
            except (OSError, IndexError, ValueError):
                continue
    return pids


def session_rss(sid: int) -> int:
    """Summed RSS (bytes) of every process in session ``sid`` (a step, or a job, started its own)."""
    total, page = 0, os.sysconf("SC_PAGE_SIZE")
    for e in os.scandir("/proc"):
        if e.name.isdigit():
            try:
                with open(f"/proc/{e.name}/stat", "rb") as fh:
                    s = fh.read().decode(errors="replace")
                rest = s[s.rfind(")") + 2:].split()
                if int(rest[3]) == sid:
                    total += int(rest[21]) * page
            except (OSError, IndexError, ValueError):
                continue
    return total


class Runner:
    def __init__(self, state: Path, jobs: int, dry_run: bool, step_timeout: int, warm_cache: str = "sccache",
                 warm_runs: int = 1) -> None:
        self.state, self.jobs, self.dry, self.timeout = state, jobs, dry_run, step_timeout
        self.warm_cache, self.warm_runs = warm_cache, warm_runs
        self.work = state / "work"  # beside the results, outside anything a later sync replaces
        self.records: list[dict[str, Any]] = []
        self.machine = machine_info() if not dry_run else {"name": "GPU machine (dry run)", "gpu_machine": True}
        self.last_wf: dict[str, dict[str, Any]] = {}
        self.env = dict(os.environ)
        self.cache_env = self.env  # PATH with the compiler caches (setup())
        self.log_fh = None

    # -- output
    def say(self, line: str) -> None:
        print(line, flush=True)

    def save(self, status: str, current: str = "") -> None:
        if self.dry:
            return
        save_progress(self.state, self.machine, self.records, rows_from_records(self.records, self.machine),
                      status=status, current=current, updated=utc_now())
        out = os.environ.get("OUT")
        if out:
            for name in ("device_rows.json", "status.json"):
                shutil.copy2(self.state / name, Path(out) / name)

    # -- environment
    def setup(self) -> None:
        whl = REPO / ".device" / "whl"
        pylib = REPO / ".device" / "pylib"
        if whl.is_dir() and not pylib.is_dir():
            wheels = sorted(str(p) for p in whl.glob("*.whl"))
            if wheels:
                self.run_simple(["python3", "-m", "pip", "install", "--no-index", "--no-deps", "--target", str(pylib), *wheels])
        paths = [str(REPO / "src")] + ([str(pylib)] if pylib.is_dir() or self.dry else [])
        # Byte-compile up front, as pip does when it installs a wheel: the GPU machine's interpreter writes no
        # .pyc of its own there, and compiling wheelforge's modules on every run was a third of a no-op rebuild.
        self.run_simple([sys.executable, "-m", "compileall", "-q", *paths])
        self.env["PYTHONPATH"] = os.pathsep.join([*paths, *filter(None, [self.env.get("PYTHONPATH")])])
        self.env["PYTHONUNBUFFERED"] = "1"
        # llama.cpp's GGML_CCACHE (on by default) puts any sccache/ccache on PATH in front of every
        # compile when no launcher is set: steps without a compiler cache see pylib/bin minus sccache.
        shim = self.state / "bin-without-sccache"
        if not self.dry and (pylib / "bin").is_dir():
            shutil.rmtree(shim, ignore_errors=True)
            shim.mkdir(parents=True)
            for tool in (pylib / "bin").iterdir():
                if tool.name not in ("sccache", "ccache"):
                    (shim / tool.name).symlink_to(tool)
        base_path = self.env.get("PATH", "/usr/bin:/bin")
        # .device/bin: tools brought as plain binaries (ccache, with its libraries beside it: the image has none)
        cache_bins = [str(p) for p in (pylib / "bin", REPO / ".device" / "bin") if p.is_dir() or self.dry]
        self.cache_env = {**self.env, "PATH": os.pathsep.join([*cache_bins, base_path])}
        self.env["PATH"] = os.pathsep.join([str(shim), base_path])

    def run_simple(self, argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        self.say("$ " + shlex.join(argv))
        if self.dry:
            return subprocess.CompletedProcess(argv, 0, "", "")
        return subprocess.run(argv, capture_output=True, text=True, env=kw.pop("env", self.env), check=False, **kw)

    def extract(self, pkg: str, dest: Path) -> Path:
        tarball = REPO / PACKAGES[pkg]["tarball"]
        if self.dry:
            self.say(f"# extract {tarball} -> {dest}")
            return dest / "<top>"
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        self.say(f"# extract {tarball} -> {dest}")
        with tarfile.open(tarball) as tf:
            tf.extractall(dest, filter="data") if hasattr(tarfile, "data_filter") else tf.extractall(dest)
        tops = [p for p in dest.iterdir() if p.is_dir()]
        if (dest / "pyproject.toml").exists() or (dest / "setup.py").exists():
            return dest
        if len(tops) == 1:
            return tops[0]
        raise RuntimeError(f"{tarball} holds {len(tops)} top folders; expected one source tree")

    def timed(self, argv: list[str], env: Mapping[str, str], cwd: Path | None, log: Path) -> dict[str, Any]:
        self.say("$ " + (f"cd {shlex.quote(str(cwd))} && " if cwd else "") + shlex.join(argv) + f"   > {log}")
        if self.dry:
            return {"rc": 0, "wall": 0.0, "cpu": 0.0, "peak_rss": 0, "tail": []}
        log.parent.mkdir(parents=True, exist_ok=True)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        with open(log, "w") as fh:
            proc = subprocess.Popen(argv, env=dict(env), cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
            peak, stop = 0, threading.Event()

            def sample() -> None:
                nonlocal peak
                while not stop.is_set():
                    peak = max(peak, session_rss(proc.pid))
                    stop.wait(1.0)

            def kill() -> None:
                killed.set()
                # The build's own session, started above: every process in it, since ninja starts each
                # job in a process group of its own and killpg(proc.pid) alone left nvcc/cicc running
                # (seen with flash-attn, whose jobs hold several GiB each).
                for _ in range(2):
                    for pid in [proc.pid, *_session_pids(proc.pid)]:
                        try:
                            os.kill(pid, signal.SIGKILL)
                        except ProcessLookupError:
                            pass

            # A timer kills a build past --step-timeout; wait() itself takes no timeout, since
            # Popen.wait(timeout=) polls every 50 ms and would round the short timings up to that grain.
            th, killed, timer = threading.Thread(target=sample, daemon=True), threading.Event(), threading.Timer(self.timeout, kill)
            th.start()
            timer.start()
            try:
                rc = proc.wait()
            finally:
                timer.cancel()
                stop.set()
                th.join()
            if killed.is_set():
                fh.write(f"\n# killed after {self.timeout} s (--step-timeout)\n")
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        tail = log.read_text(errors="replace").splitlines()[-40:]
        return {"rc": rc, "wall": wall, "cpu": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
                "peak_rss": peak, "tail": tail}

    def plan_env(self, step: Step, source: Path) -> tuple[dict[str, str] | None, str]:
        argv = plan_command(step, source=str(source))
        p = self.run_simple(argv, cwd=REPO)
        if self.dry:
            return {}, "env of `" + shlex.join(argv) + "`"
        if p.returncode != 0:
            return None, f"invoke plan failed: {(p.stderr or p.stdout).strip().splitlines()[-1:]}"
        try:
            plan = json.loads(p.stdout[p.stdout.index("{"):])
        except ValueError as exc:
            return None, f"invoke plan printed no JSON ({exc})"
        return {k: v for k, v in plan["env"].items() if k not in LAUNCHER_KEYS}, shlex.join(argv)

    # -- wheels
    def inspect_wheel(self, folder: Path) -> dict[str, Any]:
        wheels = sorted(p for p in folder.rglob("*.whl") if "scratch" not in p.parts)
        if not wheels:
            return {"wheel": None}
        whl = wheels[-1]
        info: dict[str, Any] = {"wheel": whl.name, "wheel_bytes": whl.stat().st_size, "cubins": {}}
        cuobjdump = shutil.which("cuobjdump", path=self.env.get("PATH")) or next(
            (str(p) for p in (Path(self.env.get("CUDA_HOME", "/usr/local/cuda")) / "bin" / "cuobjdump",
                              Path("/usr/local/cuda/bin/cuobjdump")) if p.exists()), None)
        with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(whl) as zf:
            for name in zf.namelist():
                if re.search(r"\.so(\.\d+)*$", name):
                    path = Path(zf.extract(name, tmp))
                    entry: dict[str, Any] = {"bytes": path.stat().st_size}
                    if cuobjdump:
                        t0 = time.perf_counter()
                        p = subprocess.run([cuobjdump, "--list-elf", str(path)], capture_output=True, text=True, env=self.env, check=False)
                        entry.update(elf=count_elf(p.stdout), cuobjdump_s=round(time.perf_counter() - t0, 3))
                    info["cubins"][name] = entry
        if not cuobjdump:
            info["note"] = "cuobjdump not found; cubin counts missing"
        return info

    # -- steps
    def run_step(self, idx: int, step: Step) -> dict[str, Any]:
        d = self.work / f"{idx:02d}-{step.package}-{step.variant}-{cmake_arch_list(step.archs).replace(';', '-') or 'x'}"
        rec: dict[str, Any] = {"step": step.text, "package": step.package, "variant": step.variant, "archs": list(step.archs),
                               "cores": os.cpu_count() or 1, "started": utc_now(), "dir": str(d)}
        if step.variant == "noop":
            last = self.last_wf.get(step.package)
            if not last:
                raise RuntimeError(f"{step.text} needs an earlier {step.package}-wf step in the plan")
            samples = []
            for i in range(NOOP_RUNS):
                t = self.timed(last["argv"], self.env, REPO, d / f"noop{i}.log")
                if t["rc"] != 0:
                    raise RuntimeError(f"no-op run exited {t['rc']}: {' / '.join(t['tail'][-5:])}")
                if not self.dry and not any("up to date" in ln for ln in t["tail"]):
                    raise RuntimeError("the repeated build was not a no-op (no 'up to date' line); the key changed")
                samples.append(t["wall"])
            rec.update(samples=samples, wall=_median(samples), cpu=0.0, command=shlex.join(last["argv"]))
            return rec

        if step.variant == "verify":
            return self.verify_step(step, d, rec)

        src = self.extract(step.package, d / "src")
        if step.variant in ("manual", "plain"):
            out = d / "out"
            if not self.dry:
                out.mkdir(parents=True, exist_ok=True)
            argv, extra_env = plain_command(step, self.jobs)
            how = "plain"
            if step.variant == "manual":
                penv, how = self.plan_env(step, src)
                if penv is None:
                    rec["note"] = f"{how}; fell back to the plain command"
                    how = "plain (plan unavailable)"
                else:
                    extra_env = penv
            argv = [a.replace("{out}", str(out)) for a in argv]
            t = self.timed(argv, {**self.env, **extra_env}, src, d / "build.log")
            rec.update(env_from=how, env=extra_env,
                       command=" ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(extra_env.items())) + " " + shlex.join(argv))
            folder = out
        elif step.variant == "wf":
            argv = wf_command(step, source=str(src), wheelhouse=str(d / "wh"))
            t = self.timed(argv, self.env, REPO, d / "build.log")
            self.last_wf[step.package] = {"argv": argv, "wheelhouse": d / "wh"}
            rec["command"] = shlex.join(argv)
            folder = d / "wh"
        else:  # warm
            proj = d / "proj"
            port = _free_port()
            if not self.dry:
                proj.mkdir(parents=True, exist_ok=True)
                (proj / "pyproject.toml").write_text(f'[tool.wheelforge.sccache]\ndir = "{d / "sccache"}"\nport = "{port}"\n'
                                                     'idle_timeout = "900"\n')
            env = {**self.cache_env, "SCCACHE_SERVER_PORT": str(port), "SCCACHE_DIR": str(d / "sccache"), "CCACHE_DIR": str(d / "ccache")}
            # Fill and warm builds share one wheelhouse path (the fill's is moved aside in between):
            # sccache keys nvcc's device code by the build folder, and wheelforge builds in <wheelhouse>/scratch/<key>.
            fill = self.timed(wf_command(step, source=str(src), wheelhouse=str(d / "wh"), cache=self.warm_cache, root=str(REPO)),
                              env, proj, d / "fill.log")
            t, samples = fill, []
            argv = wf_command(step, source=str(src), wheelhouse=str(d / "wh"), cache=self.warm_cache, root=str(REPO))
            for i in range(self.warm_runs if fill["rc"] == 0 else 0):
                if not self.dry:  # the previous build's wheelhouse aside: each warm build starts with none
                    os.rename(d / "wh", d / ("wh-fill" if i == 0 else f"wh-warm{i}"))
                t = self.timed(argv, env, proj, d / "build.log")
                if t["rc"] != 0:
                    break
                samples.append(t["wall"])
            if samples:
                rec.update(command=shlex.join(argv) + f"  (a private {self.warm_cache} dir, filled once)", samples=samples)
            rec["populate_wall"] = fill["wall"]
            rec["cache_line"] = next((ln for ln in reversed(t["tail"]) if re.search(r"hit", ln, re.I) and "cache" in ln.lower()), None)
            sc = shutil.which("sccache", path=env.get("PATH")) if self.warm_cache == "sccache" else None
            if sc:  # the private server of this step
                self.run_simple([sc, "--stop-server"], env=env)
            folder = d / "wh"
        rec.update(rc=t["rc"], wall=_median(rec.get("samples") or [t["wall"]]), cpu=t["cpu"], peak_rss=t["peak_rss"], log=str(d / "build.log"))
        m = next((re.search(r"# jobs: ((\d+) jobs?.*)", ln) for ln in _read_lines(d / "build.log") if "# jobs:" in ln), None)
        if m:
            rec.update(jobs=int(m.group(2)), jobs_reason=m.group(1))
        else:
            rec["jobs"] = int(rec.get("env", {}).get("MAX_JOBS") or rec.get("env", {}).get("CMAKE_BUILD_PARALLEL_LEVEL") or self.jobs)
        if t["rc"] != 0:
            raise RuntimeError(f"exit {t['rc']}; last lines: {' / '.join(t['tail'][-8:])}")
        if not self.dry:
            rec.update(self.inspect_wheel(folder))
        return rec

    def verify_step(self, step: Step, d: Path, rec: dict[str, Any]) -> dict[str, Any]:
        last = self.last_wf.get(step.package)
        if not last:
            raise RuntimeError(f"{step.text} needs an earlier {step.package}-wf step in the plan")
        wh = Path(last["wheelhouse"])
        wheels = sorted(p for p in wh.rglob("*.whl") if "scratch" not in p.parts)
        if not wheels and not self.dry:
            raise RuntimeError(f"no wheel in {wh} to verify")
        wheel = wheels[-1] if wheels else wh / "<wheel>"
        argv = ["python3", "-m", "invoke", "verify", str(wheel), "--wheelhouse", str(wh), "--system-site-packages", "--offline",
                "--find-links", str(REPO / ".device" / "whl")]
        t = self.timed(argv, self.env, REPO, d / "verify.log")
        rec.update(rc=t["rc"], wall=t["wall"], cpu=t["cpu"], command=shlex.join(argv), log=str(d / "verify.log"), wheel=wheel.name)
        report = wheel.parent / "verify.json"
        if report.exists():
            rec["report"] = json.loads(report.read_text())
        if t["rc"] != 0:
            raise RuntimeError(f"verify exited {t['rc']}: {' / '.join(t['tail'][-8:])}")
        return rec

    def run(self, steps: Sequence[Step]) -> int:
        self.setup()
        self.say(f"# {len(steps)} steps on {self.machine['name']}: {' '.join(s.text for s in steps)}")
        failures = 0
        for i, step in enumerate(steps, 1):
            self.say(f"== step {i}/{len(steps)}: {step.text}  ({utc_now()})")
            self.save("running", step.text)
            try:
                rec = self.run_step(i, step)
                rec["ok"] = True
            except Exception as exc:  # recorded, not fatal: the next step still runs
                failures += 1
                rec = {"step": step.text, "package": step.package, "variant": step.variant, "archs": list(step.archs),
                       "ok": False, "error": f"{type(exc).__name__}: {exc}"}
                self.say(f"!! {step.text} failed: {exc}")
            rec["finished"] = utc_now()
            if not self.dry:
                self.records.append(rec)
                self.say(f"-- {step.text}: {'ok' if rec.get('ok') else 'FAILED'}"
                         + (f", {rec['wall']:.1f} s wall, {rec.get('cpu', 0):.0f} s CPU, wheel {rec.get('wheel_bytes')} bytes" if rec.get("ok") else ""))
            self.save("running", "")
        self.save("done" if not failures else f"done, {failures} failed")
        self.say(f"# finished: {len(steps) - failures} ok, {failures} failed; rows in {self.state / 'device_rows.json'}")
        return 1 if failures else 0


def _read_lines(path: Path) -> Iterable[str]:
    try:
        return path.read_text(errors="replace").splitlines()
    except OSError:
        return []


def save_progress(state: Path, machine: dict[str, Any], records: list[dict[str, Any]], rows: list[dict[str, Any]],
                  **status: Any) -> None:
    """``state``/device_rows.json (the records and their rows) and ``state``/status.json (``status``, the pid and
    the steps done and failed), each replaced whole: what --poll and a later call read while a run goes on."""
    state.mkdir(parents=True, exist_ok=True)
    _atomic(state / "device_rows.json", json.dumps({"machine": machine, "updated": utc_now(), "records": records,
                                                    "rows": rows}, indent=1))
    _atomic(state / "status.json", json.dumps({**status, "pid": os.getpid(), "done": [r["step"] for r in records],
                                               "failed": [r["step"] for r in records if not r.get("ok")]}))


def _atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def poll(state: Path, lines: int = 30) -> int:
    """Print the status and the log tail; copy the result files into $OUT."""
    status = state / "status.json"
    if not status.exists():
        print(f"no run found in {state} (start one with --plan ... --background)")
        return 1
    data = json.loads(status.read_text())
    alive = False
    try:
        os.kill(int(data.get("pid", 0)), 0)
        alive = True
    except (OSError, ValueError):
        pass
    print(json.dumps({**data, "process_alive": alive}, indent=1))
    log = state / "device.log"
    print("".join(f"  {ln}\n" for ln in _read_lines(log)[-lines:]), end="")
    out = os.environ.get("OUT")
    if out:
        for name in ("device_rows.json", "status.json", "device.log"):
            if (state / name).exists():
                shutil.copy2(state / name, Path(out) / name)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="wheelforge benchmarks on the GPU machine", formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 2)[2])
    ap.add_argument("--plan", help="steps, e.g. 'xformers-manual:9.0;12.0 xformers-wf:9.0;12.0 xformers-noop'")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel jobs of the plain manual command (default: cores)")
    ap.add_argument("--state", default="/tmp/wheelforge-device-bench",
                    help="folder for device_rows.json, device.log, status.json and the build folders (keep it outside the "
                         "repository copy: a later call that carries .device would replace it)")
    ap.add_argument("--step-timeout", type=int, default=2400, help="seconds before a step's build is killed")
    ap.add_argument("--warm-cache", choices=("sccache", "ccache"), default="sccache",
                    help="compiler cache of <pkg>-warm steps (the GPU image has none: bring one in .device/bin)")
    ap.add_argument("--warm-runs", type=int, default=1, help="warm rebuilds after the filling build of <pkg>-warm steps "
                                                            "(each from a fresh wheelhouse and build folder; the row takes the median)")
    ap.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    ap.add_argument("--background", action="store_true", help="detach (setsid), log to STATE/device.log, return at once")
    ap.add_argument("--poll", action="store_true", help="print status and log tail; copy results into $OUT")
    ap.add_argument("--rows-from", metavar="FILE", help="recompute the rows of a saved device_rows.json from its raw records "
                                                        "(after the row rules change); writes the file back")
    args = ap.parse_args(argv)
    state = (REPO / args.state).resolve()
    if args.poll:
        return poll(state)
    if args.rows_from:
        saved = Path(args.rows_from)
        data = json.loads(saved.read_text())
        data["rows"] = rows_from_records(data["records"], data["machine"])
        _atomic(saved, json.dumps(data, indent=1))
        print(f"{saved}: {len(data['rows'])} rows from {len(data['records'])} records")
        return 0
    if not args.plan:
        ap.error("--plan is required (or --poll)")
    try:
        steps = parse_plan(args.plan)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.background and not args.dry_run:
        state.mkdir(parents=True, exist_ok=True)
        for stale in ("status.json", "device_rows.json"):
            (state / stale).unlink(missing_ok=True)
        child = [sys.executable, str(Path(__file__).resolve()), *[a for a in (argv if argv is not None else sys.argv[1:]) if a != "--background"]]
        env = {k: v for k, v in os.environ.items() if k != "OUT"}  # $OUT belongs to the launching call only
        with open(state / "device.log", "w") as log:
            p = subprocess.Popen(child, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 start_new_session=True)
        print(f"started pid {p.pid} (own session); poll with: python3 bench/device.py --poll")
        return 0
    return Runner(state, args.jobs, args.dry_run, args.step_timeout, args.warm_cache, max(1, args.warm_runs)).run(steps)


if __name__ == "__main__":
    sys.exit(main())
