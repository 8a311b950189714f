"""Figure modules for ``bench/run.py``: each exposes ``measure() -> list[dict]`` and ``NEEDS_GPU``.

Shared helpers live here: a row constructor in the shape the runner expects, the
median, and a timed subprocess runner that reports wall time, CPU seconds of the
whole process tree (``getrusage(RUSAGE_CHILDREN)`` deltas) and the peak resident
memory of that tree (sampled from ``/proc``: ``ru_maxrss`` alone only knows the
largest single process).  Nothing here imports wheelforge, so ``bench/device.py``
can copy the same logic without the package installed.
"""

from __future__ import annotations

import os
import resource
import shlex
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def make_row(figure: str, name: str, value: float, unit: str, goal: Mapping[str, Any], *, samples: Sequence[float] = (),
             baseline: Mapping[str, Any] | None = None, extra: Mapping[str, Any] | None = None, command: str = "") -> dict[str, Any]:
    """A figure row; the runner adds machine, date and met."""
    return {"figure": str(figure), "name": name, "value": float(value), "unit": unit, "goal": dict(goal),
            "samples": [float(s) for s in samples], "baseline": dict(baseline) if baseline else None,
            "extra": dict(extra or {}), "command": command}


def median(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("median of no samples")
    return float(statistics.median(values))


def _session_rss(sid: int) -> int:
    """Sum of RSS (bytes) of every process in session ``sid``."""
    total = 0
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                stat = fh.read().decode(errors="replace")
        except OSError:
            continue
        # the command name may hold spaces: fields start after the last ')'
        rest = stat[stat.rfind(")") + 2:].split()
        try:
            if int(rest[3]) == sid:  # field 6 (session) is rest[3]
                total += int(rest[21]) * page  # field 24 (rss, pages)
        except (IndexError, ValueError):
            continue
    return total


@dataclass
class Timed:
    argv: list[str]
    returncode: int
    wall: float
    cpu: float  # user + system seconds of the whole tree
    peak_rss: int  # bytes, sum over the tree, sampled
    max_single_rss: int  # bytes, ru_maxrss of the largest process
    output_tail: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def timed_run(argv: Sequence[str], *, env: Mapping[str, str], cwd: str | os.PathLike[str] | None = None,
              log: str | os.PathLike[str] | None = None, interval: float = 0.5, echo: bool = True,
              preexec: Sequence[str] = ()) -> Timed:
    """Run ``argv`` in its own session, echoed first; output goes to ``log`` (or is kept as a tail).

    ``preexec`` is a shell prefix (e.g. moving the process into a cgroup) run by ``sh`` before exec.
    """
    argv = [str(a) for a in argv]
    if preexec:
        argv = ["sh", "-c", f"{' '.join(preexec)} && exec {shlex.join(argv)}"]
    if echo:
        print("$ " + (f"cd {shlex.quote(str(cwd))} && " if cwd else "") + shlex.join(argv), file=sys.stderr, flush=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = open(log, "w", encoding="utf-8") if log else subprocess.PIPE  # noqa: SIM115 - closed below
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=dict(env), cwd=cwd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            text=True, errors="replace", start_new_session=True)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _session_rss(proc.pid))
            stop.wait(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        stdout, _ = proc.communicate()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        stop.set()
        sampler.join()
        if log:
            out.close()  # type: ignore[union-attr]
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if log:
        tail = Path(log).read_text(errors="replace").splitlines()[-30:]
    else:
        tail = (stdout or "").splitlines()[-30:]
    return Timed(argv, proc.returncode, wall, cpu, peak, after.ru_maxrss * 1024, tail)
