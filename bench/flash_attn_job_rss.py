#!/usr/bin/env python3
"""RAM and time of ONE flash-attn compile job, measured with the exact nvcc command its build runs.

flash-attn's setup.py hands every kernel file to torch's BuildExtension, which writes a
ninja file and runs one nvcc per file.  This script takes the command of one file from such
a ``build.ninja`` (``ninja -t commands``), changes only the ``-gencode`` targets and
``--threads`` to the configuration asked for, runs it alone and records:

* ``tree_peak_bytes``: the peak of the summed RSS of the job's whole process tree (nvcc,
  cudafe++, cicc, ptxas, gcc), sampled every 0.2 s: what one ninja job adds to the machine;
* ``max_process_rss_bytes``: the largest single process (``ru_maxrss`` of the children);
* wall and CPU seconds.

Get a ``build.ninja`` by starting the build with the plan's env and stopping it once the file
exists (torch writes it before compiling)::

    FLASH_ATTN_CUDA_ARCHS=90 NVCC_THREADS=1 MAX_JOBS=1 FLASH_ATTENTION_FORCE_BUILD=TRUE ... \\
        python -m pip wheel --no-deps --no-build-isolation -v .   # stop it when build/temp*/build.ninja appears

then, for example::

    python3 bench/flash_attn_job_rss.py --build-ninja build/temp.linux-x86_64-cpython-311/build.ninja \\
        --file flash_bwd_hdim256_bf16_causal_sm80 --archs 90 --threads 1 --out bench/flash_attn_job_rss.json

Each run appends one record to ``--out`` (written atomically); the figure module
``bench/figures/flash_attn_memory.py`` reads them.  Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from device import session_rss  # noqa: E402  bench/device.py, standard library only too


def job_command(ninja_file: Path, stem: str) -> str:
    """The shell command ninja would run for ``<stem>.o``."""
    text = ninja_file.read_text()
    m = re.search(rf"^build (\S*/{re.escape(stem)}\.o):", text, re.M)
    if not m:
        raise SystemExit(f"error: no build edge for {stem}.o in {ninja_file}")
    out = subprocess.run(["ninja", "-f", str(ninja_file), "-t", "commands", m.group(1)], capture_output=True, text=True,
                         cwd=ninja_file.parent, check=True).stdout.strip().splitlines()
    return out[-1]  # the last command is the edge itself (no dependencies run before a compile)


def configure(command: str, archs: list[str], threads: int, obj: Path) -> str:
    """The same command with other -gencode targets, --threads and output files."""
    gencode = " ".join(f"-gencode arch=compute_{a},code=sm_{a}" for a in archs)
    command, n = re.subn(r"(?:-gencode arch=compute_\w+,code=sm_\w+ ?)+", gencode + " ", command)
    if n != 1:
        raise SystemExit("error: the command has no contiguous -gencode list to replace")
    command, n = re.subn(r"--threads \d+", f"--threads {threads}", command)
    if n != 1:
        raise SystemExit("error: the command has no --threads N (is this flash-attn's nvcc command?)")
    command = re.sub(r" -o \S+\.o ", f" -o {shlex.quote(str(obj))} ", command)
    return re.sub(r" -MF \S+\.o\.d ", f" -MF {shlex.quote(str(obj))}.d ", command)


def portable(command: str, src_root: Path) -> str:
    """The command with this machine's folders named by role ($SRC, $VENV, $PYTHON, $TMP)."""
    command = command.replace(str(src_root), "$SRC")
    venv = re.search(r"-I(\S+)/lib/python3\.\d+/site-packages/torch/include ", command)
    if venv:
        command = command.replace(venv.group(1) + "/", "$VENV/")
    command = re.sub(r"-I\S+/include/python(3\.\d+)\b", r"-I$PYTHON/include/python\1", command)
    return re.sub(r"(-o |-MF )\S+/([\w.]+)", r"\1$TMP/\2", command)


def measure(command: str, *, nice: int) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(["nice", "-n", str(nice), "bash", "-c", command], start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak, stop = 0, threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, session_rss(proc.pid))
            stop.wait(0.2)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    output, _ = proc.communicate()
    stop.set()
    th.join()
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"error: the compile failed ({proc.returncode}):\n{output[-3000:]}")
    return {"wall_s": round(wall, 1), "cpu_s": round((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 1),
            "tree_peak_bytes": peak, "max_process_rss_bytes": after.ru_maxrss * 1024}


def torch_version(command: str) -> str | None:
    """``__version__`` of the torch whose headers the command includes (torch/version.py beside torch/include)."""
    m = re.search(r"-I(\S+/torch)/include ", command)
    if not m:
        return None
    try:
        found = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", (Path(m.group(1)) / "version.py").read_text(), re.M)
    except OSError:
        return None
    return found.group(1) if found else None


def tool_version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=False).stdout
    except OSError:
        return ""
    return out.strip().splitlines()[-1] if out.strip() else ""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build-ninja", required=True, type=Path, help="build.ninja of a flash-attn build (torch writes it first)")
    ap.add_argument("--file", required=True, help="kernel file stem, e.g. flash_bwd_hdim256_bf16_causal_sm80")
    ap.add_argument("--archs", required=True, help="';'-separated nvcc arch numbers, e.g. 90 or 90;120")
    ap.add_argument("--threads", type=int, required=True, help="nvcc --threads (NVCC_THREADS)")
    ap.add_argument("--out", required=True, type=Path, help="JSON file the record is appended to")
    ap.add_argument("--nice", type=int, default=19, help="niceness of the compile (default 19: others keep working)")
    args = ap.parse_args(argv)

    archs = [a for a in args.archs.split(";") if a]
    load_before = os.getloadavg()[0]
    base = job_command(args.build_ninja.resolve(), args.file)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = configure(base, archs, args.threads, Path(tmp) / f"{args.file}.o")
        print(f"$ {cmd}", flush=True)
        result = measure(cmd, nice=args.nice)
    cmd_record = portable(cmd, args.build_ninja.resolve().parents[2])
    record = {
        "file": f"csrc/flash_attn/src/{args.file}.cu",
        "archs": archs,
        "nvcc_threads": args.threads,
        **result,
        "nvcc": tool_version([re.split(r"\s+", base)[0], "--version"]),
        "torch": torch_version(base),
        "command": cmd_record,
        "machine": {"cores": os.cpu_count(), "cpu": platform.processor() or platform.machine(),
                    "ram_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)},
        "nice": args.nice,
        # other work on the machine stretches wall time (not RSS): the 1-minute load before and after
        "loadavg_before": load_before, "loadavg_after": os.getloadavg()[0],
        "date": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
    }
    data = json.loads(args.out.read_text()) if args.out.exists() else {"records": []}
    data["records"].append(record)
    tmp_out = args.out.with_name(f".{args.out.name}.tmp")
    tmp_out.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp_out, args.out)
    gib = 2**30
    print(f"{record['file']} archs {';'.join(archs)} threads {args.threads}: wall {result['wall_s']} s, CPU {result['cpu_s']} s, "
          f"tree peak {result['tree_peak_bytes'] / gib:.2f} GiB, largest process {result['max_process_rss_bytes'] / gib:.2f} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
