"""The planner is pure; its key is stable across processes and moves with every input."""

import dataclasses
import json
import subprocess
import sys
from pathlib import PurePosixPath

import pytest
from recipe_support import VALID, write

from wheelforge.model.errors import ArchError, PlanError
from wheelforge.model.facts import Tool, ToolchainFacts
from wheelforge.model.lock import BuildLock, LockedPackage
from wheelforge.model.plan import BuildDependency
from wheelforge.model.planner import make_plan
from wheelforge.model.recipe import load_recipe
from wheelforge.model.settings import resolve_settings

FACTS = ToolchainFacts(
    cuda_version="12.8", cuda_home="/usr/local/cuda-12.8", nvcc="/usr/local/cuda-12.8/bin/nvcc",
    host_compiler=Tool("/usr/bin/g++", "12.2.0"), host_compiler_limit=14, cmake=Tool("/usr/bin/cmake", "3.31.0"),
)
WORK = PurePosixPath("/w/attempt")


def _target(tmp_path, **flags):
    flags.setdefault("cuda", "auto")  # follow FACTS, so a test may change the toolkit alone
    return resolve_settings(flags, env={}, pyproject={}, cwd=tmp_path).target


def _plan(tmp_path, recipe_text=VALID, facts=FACTS, **kw):
    recipe = load_recipe(write(tmp_path, recipe_text))
    kw.setdefault("patches", [("0001-fix.patch", "a" * 64)])
    target = kw.pop("target", None) or _target(tmp_path)
    return make_plan(recipe, kw.pop("version", None), target, facts, workdir=WORK, **kw)


def test_plan_shape(tmp_path):
    plan = _plan(tmp_path)
    assert plan.env["TORCH_CUDA_ARCH_LIST"] == "12.0"
    assert plan.env["BUILD_VERSION"] == "1.0.0+cu128.sm120"
    assert plan.full_version == "1.0.0+cu128.sm120"
    py = f"cp{sys.version_info.major}{sys.version_info.minor}"
    assert plan.wheel_name == f"demo_pkg-1.0.0+cu128.sm120-{py}-{py}-linux_x86_64.whl"
    assert [c.phase for c in plan.commands] == ["env", "env", "compile"]
    argv = plan.commands[-1].argv
    assert argv[1:6] == ("-m", "pip", "wheel", "--no-deps", "--no-build-isolation")
    assert plan.source.digest == "sha256:f7fc183a58e4bf0e2ae339a18fb1b1d4a37854c0f2545b4f360fef001646ab76"
    assert len(plan.key) == 64
    json.dumps(plan.to_json())  # JSON-ready


def test_jobs_and_launchers_do_not_change_key(tmp_path):
    a = _plan(tmp_path, jobs=1)
    b = _plan(tmp_path, jobs=16, launcher_env={"CMAKE_CUDA_COMPILER_LAUNCHER": "sccache"})
    assert a.key == b.key
    assert b.env["MAX_JOBS"] == "16" and b.env["CMAKE_CUDA_COMPILER_LAUNCHER"] == "sccache"


def test_key_stable_across_processes(tmp_path):
    plan = _plan(tmp_path)
    code = (
        "import sys; sys.path[:0] = sys.argv[1:3]\n"
        "from pathlib import Path\n"
        "import test_plan as t\n"
        "print(t._plan(Path(sys.argv[3])).key)\n"
    )
    here = str(__import__("pathlib").Path(__file__).parent)
    support = str(__import__("pathlib").Path(__file__).parent.parent)
    out = subprocess.run([sys.executable, "-c", code, here, support, str(tmp_path)], capture_output=True, text=True,
                         check=True, env={"PYTHONHASHSEED": "123", "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == plan.key


LOCK = BuildLock(recipe="demo-pkg", python="cp311", platform="manylinux_x86_64", input_digest="sha256:" + "0" * 64,
                 packages=(LockedPackage("setuptools", "80.9.0", "1" * 64), LockedPackage("wheel", "0.45.1", "2" * 64)),
                 path="/recipes/locks/demo-pkg/cp311.txt")

DEP = BuildDependency("torch", "2.15.0", "sha256:" + "b" * 64, "/wh/torch.whl", cuda_version="12.8", recipe="torch")

CHANGES = {
    "version": dict(version="0.9.0"),
    "arch": dict(target="ARCH"),
    "cuda": dict(facts=dataclasses.replace(FACTS, cuda_version="12.9")),
    "host_compiler": dict(facts=dataclasses.replace(FACTS, host_compiler=Tool("/usr/bin/g++", "13.1.0"))),
    "nvcc_patch_release": dict(facts=dataclasses.replace(FACTS, nvcc_version="12.8.93")),
    "build_lock_file": dict(lock="changed"),
    "python": dict(target="PY"),
    "patch_digest": dict(patches=[("0001-fix.patch", "c" * 64)]),
    "patch_added": dict(patches=[("0001-fix.patch", "a" * 64), ("0002-more.patch", "d" * 64)]),
    "build_dep_hash": dict(build_deps=[DEP]),
    "isolation": dict(isolation=False),
    "recipe_env": dict(recipe_text=VALID.replace('BUILD_VERSION = "{full_version}"', 'BUILD_VERSION = "{full_version}"\nFOO = "1"')),
    "recipe_requires": dict(recipe_text=VALID.replace('"wheel"]', '"wheel>=0.43"]')),
    "source_sha": dict(recipe_text=VALID.replace("f7fc183a", "00000000")),
    "platform": dict(platform="linux_aarch64"),
}


@pytest.mark.parametrize("name", sorted(CHANGES))
def test_key_sensitive_to_each_input(tmp_path, name):
    base = _plan(tmp_path, build_deps=[]).key
    kw = dict(CHANGES[name])
    if kw.get("target") == "ARCH":
        kw["target"] = _target(tmp_path, arch="9.0;12.0")
    elif kw.get("target") == "PY":
        kw["target"] = dataclasses.replace(_target(tmp_path), python_version="3.99")
    if kw.get("lock") == "changed":
        base = _plan(tmp_path, build_deps=[], lock=LOCK).key
        kw["lock"] = dataclasses.replace(LOCK, packages=(LOCK.packages[0], dataclasses.replace(LOCK.packages[1], sha256="9" * 64)))
    changed = _plan(tmp_path, **kw).key
    assert changed != base, name


def test_dep_hash_change_changes_key(tmp_path):
    a = _plan(tmp_path, build_deps=[DEP]).key
    b = _plan(tmp_path, build_deps=[dataclasses.replace(DEP, identity="sha256:" + "e" * 64)]).key
    assert a != b


def test_dep_built_for_other_cuda_major_stops_at_planning(tmp_path):
    dep = dataclasses.replace(DEP, identity="pypi:torch==2.15.0", cuda_version="13.2")
    with pytest.raises(PlanError) as exc:
        _plan(tmp_path, build_deps=[dep])
    assert exc.value.id == "plan.dep-cuda-major"
    assert "torch 2.15.0 was built for CUDA 13.2" in exc.value.message and "CUDA 12.8" in exc.value.message


def test_arch_the_toolkit_cannot_build(tmp_path):
    with pytest.raises(ArchError) as exc:
        _plan(tmp_path, facts=dataclasses.replace(FACTS, cuda_version="12.6"))
    assert "sm_120 needs CUDA >= 12.8" in str(exc.value)


def test_cuda_arch_numbers_placeholder(tmp_path):
    text = VALID.replace('[env]\n', '[env]\nFLASH_ATTN_CUDA_ARCHS = "{cuda_arch_numbers}"\n', 1)
    plan = _plan(tmp_path, text, target=_target(tmp_path, arch="9.0;12.0a;10.0+PTX"))
    assert plan.env["FLASH_ATTN_CUDA_ARCHS"] == "90;100;120a"  # nvcc's numbers, suffix kept, +PTX dropped


def test_archs_outside_supported_archs_stop_at_planning(tmp_path):
    text = VALID.replace("ram_per_job_gb = 2.0", 'ram_per_job_gb = 2.0\nsupported_archs = ["8.0", "9.0", "12.0"]', 1)
    assert _plan(tmp_path, text, target=_target(tmp_path, arch="9.0;12.0")).env["TORCH_CUDA_ARCH_LIST"] == "9.0;12.0"
    for arch, bad in (("12.0a", "12.0a"), ("8.6;12.0", "8.6"), ("12.0+PTX", "12.0+PTX")):
        with pytest.raises(PlanError) as exc:
            _plan(tmp_path, text, target=_target(tmp_path, arch=arch))
        assert exc.value.id == "plan.arch-unsupported"
        assert exc.value.message == f"demo builds no code for {bad}"
        assert "8.0, 9.0, 12.0" in exc.value.hint


def test_supported_archs_enter_the_key_only_when_set(tmp_path):
    plain = _plan(tmp_path)
    assert "supported_archs" not in plain.key_inputs["recipe"]  # keys of recipes without it are unchanged
    text = VALID.replace("ram_per_job_gb = 2.0", 'ram_per_job_gb = 2.0\nsupported_archs = ["12.0"]', 1)
    limited = _plan(tmp_path, text)
    assert limited.key_inputs["recipe"]["supported_archs"] == ["12.0"] and limited.key != plain.key


def test_uv_fills_the_build_venv_with_the_same_requirements(tmp_path):
    pip = _plan(tmp_path)
    uv = _plan(tmp_path, uv="/opt/bin/uv")
    assert uv.key == pip.key  # same requirements; the resolved versions are what the key holds
    assert [c.phase for c in uv.commands] == ["env", "env", "compile"]
    assert uv.commands[0].argv[:3] == ("/opt/bin/uv", "venv", "--seed")  # the compile step runs the venv's pip
    assert uv.commands[1].argv[:5] == ("/opt/bin/uv", "pip", "install", "--python", str(WORK / "env" / "bin" / "python"))
    assert uv.commands[1].argv[5:] == pip.commands[1].argv[5:]
    assert uv.commands[2] == pip.commands[2]


def test_no_isolation_uses_current_python(tmp_path):
    plan = _plan(tmp_path, isolation=False)
    assert [c.phase for c in plan.commands] == ["compile"]
    assert plan.commands[0].argv[0] == sys.executable


def test_target_cuda_must_match_facts(tmp_path):
    with pytest.raises(PlanError) as exc:
        _plan(tmp_path, target=_target(tmp_path, cuda="13.0"))
    assert exc.value.id == "plan.cuda-mismatch"


def test_cmake_on_path_is_keyed_only_without_isolation(tmp_path):
    """With isolation the build runs the locked build venv's cmake, so the one on PATH cannot change the bytes."""
    other = dataclasses.replace(FACTS, cmake=Tool("/opt/fake/cmake", "4.0.0"))
    assert _plan(tmp_path, lock=LOCK).key == _plan(tmp_path, lock=LOCK, facts=other).key
    assert _plan(tmp_path, isolation=False).key != _plan(tmp_path, isolation=False, facts=other).key


def test_the_lock_fills_the_build_venv_with_hashes_required(tmp_path):
    plan = _plan(tmp_path, lock=LOCK, build_deps=[DEP])
    lock_cmd, deps_cmd = plan.commands[1].argv, plan.commands[2].argv
    assert lock_cmd[-4:] == ("--require-hashes", "--no-deps", "-r", LOCK.path) and "setuptools>=64" not in lock_cmd
    assert deps_cmd[-1] == DEP.requirement
    assert plan.key_inputs["build_lock"] == [{"name": "setuptools", "version": "80.9.0", "sha256": "1" * 64},
                                             {"name": "wheel", "version": "0.45.1", "sha256": "2" * 64}]
    assert "build_requires" not in plan.key_inputs


def test_label_names_ptx_and_the_torch_an_extension_is_bound_to(tmp_path):
    ptx = _plan(tmp_path, target=_target(tmp_path, arch="12.0+PTX"))
    assert ptx.full_version == "1.0.0+cu128.sm120ptx"
    recipe_text = VALID.replace("recipes = []", 'recipes = ["torch"]')
    a = _plan(tmp_path, recipe_text=recipe_text, build_deps=[DEP])
    b = _plan(tmp_path, recipe_text=recipe_text, build_deps=[dataclasses.replace(DEP, version="2.11.0+cu128", identity="pypi:torch==2.11.0+cu128")])
    assert a.full_version == "1.0.0+cu128.sm120.torch2.15.0" and b.full_version == "1.0.0+cu128.sm120.torch2.11.0"
    assert a.wheel_name != b.wheel_name
