"""bench/device.py kills a step past its timeout whole, ninja's jobs included."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import device  # noqa: E402

pytestmark = pytest.mark.integration


def test_timeout_kills_jobs_in_their_own_process_groups(tmp_path: Path) -> None:
    # ninja starts each job in a process group of its own; a killpg of the step's group missed them
    # (flash-attn's cicc processes, GiBs each, kept running after a timed-out build)
    marker = f"wf-step-timeout-{os.getpid()}"
    script = ("import subprocess, time\n"
              f"for _ in range(2):\n    subprocess.Popen(['sh', '-c', 'sleep 120 # {marker}'], process_group=0)\n"
              "time.sleep(120)\n")
    runner = device.Runner(tmp_path / "state", 1, False, 2)
    t = runner.timed([sys.executable, "-c", script], dict(os.environ), None, tmp_path / "step.log")
    assert t["rc"] == -9 and t["wall"] < 30
    deadline = time.monotonic() + 5
    while True:
        left = [p for p in os.listdir("/proc") if p.isdigit() and marker.encode() in _cmdline(p)]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert left == [], f"processes of the killed step still run: {left}"
    assert "killed after 2 s" in (tmp_path / "step.log").read_text()


def _cmdline(pid: str) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read()
    except OSError:
        return b""
