"""Identity: a wheel's name, its cache key and its bytes agree (real plans and real nvcc builds of demo-cuda).

Builds are of a copy of examples/demo-cuda given with ``--source`` so a test can change one input;
each build runs through ``invoke`` as a user's would.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from build_support import cuda_build_root

from wheelforge.model import bundled

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def invoke(*args: str, cwd: Path = REPO, env: dict[str, str] | None = None, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "invoke", "-r", str(REPO), *args], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=timeout)


def plan(*args: str, env: dict[str, str] | None = None) -> dict:
    out = invoke("plan", *args, "--json", env=env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


# --------------------------------------------------------------------------- names and keys (plans only)


def test_two_torch_pins_give_two_xformers_wheel_names():
    a = plan("xformers", "--cuda", "auto", "--with", "torch==2.11.0+cu130")
    b = plan("xformers", "--cuda", "auto", "--with", "torch==2.12.0+cu130")
    assert a["key"] != b["key"] and a["wheel_name"] != b["wheel_name"]
    assert "+cu130.sm120.torch2.11.0-" in a["wheel_name"] and "+cu130.sm120.torch2.12.0-" in b["wheel_name"]


def test_sass_only_and_sass_with_ptx_are_two_names():
    a = plan("demo-cuda", "--cuda", "auto", "--arch", "12.0")
    b = plan("demo-cuda", "--cuda", "auto", "--arch", "12.0+PTX")
    assert a["wheel_name"].startswith("demo_cuda-0.1.0+cu130.sm120-") and b["wheel_name"].startswith("demo_cuda-0.1.0+cu130.sm120ptx-")
    assert a["key"] != b["key"]


def test_a_cmake_first_on_path_does_not_change_the_isolated_key(tmp_path):
    fake = tmp_path / "bin" / "cmake"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'cmake version 9.9.9'\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    env = dict(os.environ, WHEELFORGE_CACHE=str(tmp_path / "cache"))
    base = plan("demo-cuda", "--cuda", "auto", env=env)
    faked = plan("demo-cuda", "--cuda", "auto", env={**env, "PATH": f"{fake.parent}{os.pathsep}{env['PATH']}"})
    assert faked["key"] == base["key"]
    # the cmake the build runs is the locked one, and that is what the plan records
    assert base["toolchain"]["cmake"] == next(p["version"] for p in base["build_lock"] if p["name"] == "cmake")
    # without isolation the target's PATH is the build's, so its cmake is keyed
    a = plan("demo-cuda", "--cuda", "auto", "--no-isolation", env=env)
    b = plan("demo-cuda", "--cuda", "auto", "--no-isolation", env={**env, "PATH": f"{fake.parent}{os.pathsep}{env['PATH']}"})
    assert a["key"] != b["key"]


def test_changing_one_locked_build_requirement_changes_the_key(tmp_path):
    recipes = tmp_path / "recipes"
    shutil.copytree(bundled.recipes_dir(), recipes)
    shutil.copytree(bundled.root() / "examples", tmp_path / "examples")
    shutil.copytree(bundled.root() / "tests" / "postbuild", tmp_path / "tests" / "postbuild")  # the recipes name their suites relative to themselves
    base = plan("demo-cuda", "--cuda", "auto", "--recipes-dir", str(recipes))
    lock = recipes / "locks" / "demo-cuda" / f"cp{sys.version_info.major}{sys.version_info.minor}.txt"
    text = lock.read_text()
    old = next(ln for ln in text.splitlines() if ln.startswith("ninja=="))
    lock.write_text(text.replace(old, old.replace("ninja==", "ninja==").split("--hash=sha256:")[0] + "--hash=sha256:" + "0" * 64))
    changed = plan("demo-cuda", "--cuda", "auto", "--recipes-dir", str(recipes))
    assert changed["key"] != base["key"]
    assert {p["name"]: p["sha256"] for p in changed["build_lock"]}["ninja"] == "0" * 64


def test_a_stale_or_missing_lock_names_the_command_that_refreshes_it(tmp_path):
    recipes = tmp_path / "recipes"
    shutil.copytree(bundled.recipes_dir(), recipes)
    shutil.copytree(bundled.root() / "examples", tmp_path / "examples")
    shutil.copytree(bundled.root() / "tests" / "postbuild", tmp_path / "tests" / "postbuild")  # the recipes name their suites relative to themselves
    recipe = recipes / "demo-cuda.toml"
    recipe.write_text(recipe.read_text().replace('"ninja>=1.11"', '"ninja>=1.12"'))
    out = invoke("plan", "demo-cuda", "--cuda", "auto", "--recipes-dir", str(recipes))
    assert out.returncode == 2 and "error[plan.lock-stale]" in out.stderr
    assert f"invoke lock demo-cuda --python {sys.version_info.major}.{sys.version_info.minor}" in out.stderr
    assert "Traceback" not in out.stderr
    shutil.rmtree(recipes / "locks" / "demo-cuda")
    out = invoke("plan", "demo-cuda", "--cuda", "auto", "--recipes-dir", str(recipes))
    assert out.returncode == 2 and "error[plan.no-lock]" in out.stderr and "invoke lock demo-cuda" in out.stderr


# --------------------------------------------------------------------------- bytes (real builds)


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """demo-cuda built twice from the same inputs into two fresh wheelhouses, then from an edited source into the first."""
    root = cuda_build_root(tmp_path_factory, "identity")
    src = root / "demo-cuda"
    shutil.copytree(bundled.root() / "examples" / "demo-cuda", src)
    env = dict(os.environ, WHEELFORGE_CACHE=str(root / "cache"))
    common = ["--cuda", "auto", "--arch", "12.0", "--no-verify", "--compiler-cache", "none", "--source", str(src)]
    first = [invoke("build", "demo-cuda", *common, "--wheelhouse", str(root / f"wh{i}"), env=env) for i in (1, 2)]
    made = [(w.parent.name, w.name, w.read_bytes()) for i in (1, 2) for w in _wheels(root / f"wh{i}")]
    kernel = src / "csrc" / "add.cu"
    kernel.write_text(kernel.read_text() + "\n// edited: the same name, other bytes\n__global__ void wf_identity_probe(float* x) { x[0] = 1.0f; }\n")
    refused = invoke("build", "demo-cuda", *common, "--wheelhouse", str(root / "wh1"), env=env)
    replaced = invoke("build", "demo-cuda", *common, "--wheelhouse", str(root / "wh1"), "--replace", env=env)
    return {"root": root, "first": first, "made": made, "refused": refused, "replaced": replaced, "env": env}


def _wheels(wheelhouse: Path) -> list[Path]:
    return sorted(wheelhouse.glob("entries/*/*.whl"))


def test_two_clean_builds_of_one_key_are_byte_identical(builds: dict) -> None:
    for out in builds["first"]:
        assert out.returncode == 0, out.stderr[-3000:]
    (key_a, name_a, bytes_a), (key_b, name_b, bytes_b) = builds["made"]
    assert name_a == name_b and key_a == key_b  # same name, same key
    assert bytes_a == bytes_b
    with zipfile.ZipFile(io.BytesIO(bytes_a)) as zf:
        assert {i.date_time for i in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}  # SOURCE_DATE_EPOCH, not the clock


def test_a_different_wheel_under_a_taken_name_is_refused_naming_both_keys(builds: dict) -> None:
    out = builds["refused"]
    assert out.returncode == 2, out.stdout + out.stderr
    assert "error[wheelhouse.name-taken]" in out.stderr and "Traceback" not in out.stderr
    assert "demo_cuda-0.1.0+cu130.sm120-cp311-cp311-linux_x86_64.whl is already in the wheelhouse with other bytes" in out.stderr
    assert "source: " in out.stderr and "--replace" in out.stderr
    # the build said why it was not a no-op before it ran
    assert "rebuilding: the wheelhouse has demo_cuda-0.1.0+cu130.sm120" in out.stderr and "source: \"tree:" in out.stderr


def test_replace_publishes_the_next_build_number_and_yanks_the_old_file(builds: dict) -> None:
    out = builds["replaced"]
    assert out.returncode == 0, out.stderr[-3000:]
    wh = builds["root"] / "wh1"
    names = sorted(w.name for w in _wheels(wh))
    old, new = "demo_cuda-0.1.0+cu130.sm120-cp311-cp311-linux_x86_64.whl", "demo_cuda-0.1.0+cu130.sm120-1-cp311-cp311-linux_x86_64.whl"
    assert names == sorted([old, new])
    yanked = (wh / "yanked.toml").read_text()
    assert f'file = "{old}"' in yanked and "replaced by " + new in yanked
    with zipfile.ZipFile(next(w for w in _wheels(wh) if w.name == new)) as zf:
        wheel_file = next(n for n in zf.namelist() if n.endswith(".dist-info/WHEEL"))
        assert "Build: 1" in zf.read(wheel_file).decode()
    # both are served (the old one yanked, so pinned installs keep working), each name with one sha256
    idx = invoke("index", "--wheelhouse", str(wh), "--include-unverified", env=builds["env"])
    assert idx.returncode == 0, idx.stderr
    page = json.loads((wh / "index" / "simple" / "demo-cuda" / "index.json").read_text())
    by_name = {f["filename"]: f for f in page["files"]}
    assert set(by_name) == {old, new} and by_name[old]["yanked"] and not by_name[new]["yanked"]
