"""bench/device/llama_cpp_gpu.sh: the parts that need no GPU (syntax, usage, poll without a run, step names)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "device" / "llama_cpp_gpu.sh"


def _bash(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=60, env=env)


def test_script_parses() -> None:
    proc = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_no_arguments_prints_usage() -> None:
    proc = _bash()
    assert proc.returncode == 2 and "--background" in proc.stdout and "--poll" in proc.stdout


def test_poll_without_a_run_says_so(tmp_path: Path) -> None:
    proc = _bash("--poll", env={"PATH": "/usr/bin:/bin", "LLAMA_GPU_STATE": str(tmp_path / "none")})
    assert proc.returncode == 1 and "no run in" in proc.stdout


def test_every_default_step_has_a_branch() -> None:
    text = SCRIPT.read_text()
    steps = re.search(r'^DEFAULT_STEPS="([^"]+)"', text, re.M).group(1).split()
    branches = set(re.findall(r"^\s+([a-z-]+)\) ", text[text.index("run_steps()"):], re.M))
    assert steps and set(steps) <= branches, (steps, branches)
