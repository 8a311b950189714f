"""Gating: only verified wheels reach users; an interrupted or concurrent build says what is true.

Real processes: ``invoke build`` of demo-cuda with the real nvcc, interrupted with SIGINT as a
terminal's Ctrl-C would (the whole process group), and the index built from what it left.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
NVCC = Path("/usr/local/cuda/bin/nvcc")


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "invoke", "-r", str(REPO), *args]


def _key(wheelhouse: Path, env: dict[str, str]) -> str:
    out = subprocess.run(_cmd("plan", "demo-cuda", "--cuda", "auto", "--json"), capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout)["key"]


def _wait_for(path: Path, text: str, proc: subprocess.Popen, timeout: float = 600, poll: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and text in path.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            raise AssertionError(f"the build ended ({proc.returncode}) before {text!r} appeared in {path}")
        time.sleep(poll)
    raise AssertionError(f"{text!r} did not appear in {path} within {timeout} s")


def _served(wheelhouse: Path, env: dict[str, str]) -> list[str]:
    subprocess.run(_cmd("index", "--wheelhouse", str(wheelhouse)), capture_output=True, text=True, env=env, check=True)
    return sorted(p.name for p in (wheelhouse / "index" / "files").glob("*.whl"))


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    if not NVCC.exists():
        pytest.skip("needs the CUDA toolkit at /usr/local/cuda")
    return dict(os.environ, WHEELFORGE_CACHE=str(tmp_path / "cache"), WHEELFORGE_COMPILER_CACHE="none")


def test_ctrl_c_during_verify_leaves_a_truthful_unverified_entry_that_the_next_build_verifies(tmp_path, env):
    wh = tmp_path / "wh"
    log = wh / "logs" / f"{_key(wh, env)}.log"
    # SIGINT back to its default in the child: a test run started in the background (`pytest &`) ignores it,
    # and Python keeps an ignored SIGINT ignored, so Ctrl-C would never reach the build
    proc = subprocess.Popen(_cmd("build", "demo-cuda", "--cuda", "auto", "--wheelhouse", str(wh)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    _wait_for(log, "step 9/9: verify", proc, poll=0.02)
    # at once: with the suite's packages cached, the whole verify step takes about a second
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "error[build.interrupted]" in err and "is stored unverified, and the index does not serve it" in err
    assert "Traceback" not in err
    (entry,) = (wh / "entries").iterdir()
    manifest = json.loads((entry / "entry.json").read_text())
    assert manifest["state"] == "unverified" and manifest["verify"] is None
    assert _served(wh, env) == []

    again = subprocess.run(_cmd("build", "demo-cuda", "--cuda", "auto", "--wheelhouse", str(wh)), capture_output=True, text=True,
                           env=env, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "is stored but not verified: verifying it" in again.stderr
    assert json.loads((entry / "entry.json").read_text())["state"] == "verified"
    assert "compile" not in again.stderr.split("verifying it", 1)[1].split("PASSED", 1)[0].replace("compiled", "")  # nothing rebuilt
    assert _served(wh, env) == [manifest["wheel"]]


def test_a_second_build_waits_for_the_first_and_reports_its_outcome(tmp_path, env):
    wh = tmp_path / "wh"
    log = wh / "logs" / f"{_key(wh, env)}.log"
    first = subprocess.Popen(_cmd("build", "demo-cuda", "--cuda", "auto", "--wheelhouse", str(wh)), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    _wait_for(log, "step 4/9: compile", first)
    second = subprocess.run(_cmd("build", "demo-cuda", "--cuda", "auto", "--wheelhouse", str(wh)), capture_output=True, text=True,
                            env=env, timeout=900)
    out, err = first.communicate(timeout=900)
    assert first.returncode == 0 and second.returncode == 0, err + second.stderr
    assert "another process is building key" in second.stderr and "waiting for its outcome" in second.stderr
    # not "up to date" before the outcome was known: the first build's verification is what it reports
    assert "up to date -> " in second.stderr + second.stdout and "; verified" in second.stderr + second.stdout
    assert "demo-cuda: built " in out + err
