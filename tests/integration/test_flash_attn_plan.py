"""flash-attn is planned, not built, in CI: the plan's env, pins and refusals, through the real CLI.

A flash-attn build takes about 15 minutes per arch on 16 cores (hours on CI's 2), so CI checks
what the build would run: `invoke plan flash-attn --with torch==2.11.0 --cuda auto --json`.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
SDIST_SHA256 = "d0f9f0b08a986cdeadbffcf5ec8b3a8f514366c68ad1853d3ab061bc83cc340b"  # PyPI's JSON simple API


def invoke(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHEELFORGE_")}
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=REPO, capture_output=True, text=True, timeout=180, env=env)


@pytest.fixture(scope="module")
def plan() -> dict:
    """The issue's command: against PyPI's torch 2.11.0 (its CUDA read from PyPI), default arch 12.0."""
    out = invoke("plan", "flash-attn", "--with", "torch==2.11.0", "--cuda", "auto", "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_env_drives_flash_attn_setup_py(plan: dict) -> None:
    env = plan["env"]
    assert env["FLASH_ATTN_CUDA_ARCHS"] == "120"  # setup.py's form: 12.0 -> 120
    assert env["TORCH_CUDA_ARCH_LIST"] == "12.0"
    assert env["MAX_JOBS"] == str(plan["jobs"]) and plan["jobs"] >= 1
    assert "GiB per job" in plan["jobs_reason"]  # chosen from memory, not cores alone
    assert env["NVCC_THREADS"] == "1"
    assert env["FLASH_ATTENTION_FORCE_BUILD"] == "TRUE"  # never a prebuilt wheel from the network
    assert env["FLASH_ATTENTION_SKIP_CUDA_BUILD"] == "FALSE"
    assert env["BUILD_TARGET"] == "cuda"
    cu = "cu" + plan["target"]["cuda"].replace(".", "")
    assert env["FLASH_ATTN_LOCAL_VERSION"] == f"{cu}.sm120.torch2.11.0" == plan["target"]["label"]  # bound to its torch
    assert plan["full_version"] == f"2.8.3.post2+{cu}.sm120.torch2.11.0"
    py = plan["target"]["python"]
    assert plan["wheel_name"] == f"flash_attn-2.8.3.post2+{cu}.sm120.torch2.11.0-{py}-{py}-linux_x86_64.whl"
    assert plan["expected_sass"] == ["120"]


def test_pinned_sdist_patch_and_torch(plan: dict) -> None:
    assert {k: plan["source"][k] for k in ("type", "name", "version", "digest", "sha256")} == {
        "type": "sdist", "name": "flash-attn", "version": "2.8.3.post2", "digest": f"sha256:{SDIST_SHA256}", "sha256": SDIST_SHA256}
    patch = REPO / "patches" / "flash-attn" / "0001-pin-exact-torch.patch"
    assert plan["patches"] == [{"file": patch.name, "sha256": hashlib.sha256(patch.read_bytes()).hexdigest()}]
    (torch,) = plan["build_deps"]
    assert torch["identity"] == "pypi:torch==2.11.0" and torch["cuda_version"] == "13.0"  # read from PyPI's metadata
    argv = next(s for s in plan["steps"] if s["name"] == "compile")["commands"][-1]["argv"]
    assert argv[1:6] == ["-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    locked, install = ([c for s in plan["steps"] for c in s.get("commands", [])][i]["argv"] for i in (1, 2))
    assert locked[-4:-1] == ["--require-hashes", "--no-deps", "-r"] and "ninja" in {p["name"] for p in plan["build_lock"]}
    assert "torch==2.11.0" in install


def test_arch_lists_in_setup_py_form() -> None:
    out = invoke("plan", "flash-attn", "--with", "torch==2.11.0+cu130", "--cuda", "auto", "--arch", "9.0;12.0", "--json")
    assert out.returncode == 0, out.stderr
    plan = json.loads(out.stdout)
    assert plan["env"]["FLASH_ATTN_CUDA_ARCHS"] == "90;120"
    assert plan["expected_sass"] == ["90", "120"]


@pytest.mark.parametrize("arch", ["12.0a", "8.6", "12.0+PTX"])
def test_archs_setup_py_would_skip_stop_at_planning(arch: str) -> None:
    """setup.py emits -gencode only for 80/90/100/120 and drops other tokens silently."""
    out = invoke("plan", "flash-attn", "--with", "torch==2.11.0+cu130", "--cuda", "auto", "--arch", arch)
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert lines[-2] == f"error[plan.arch-unsupported]: flash-attn builds no code for {arch}"
    assert lines[-1].startswith("hint: pick from 8.0, 9.0, 10.0, 12.0")
    assert "Traceback" not in out.stderr
