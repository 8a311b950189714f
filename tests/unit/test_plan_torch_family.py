"""Plans of the bundled torch, torchvision and torchaudio recipes for CUDA 12.8 (what `invoke plan --cuda 12.8` shows)."""

from __future__ import annotations

from pathlib import PurePosixPath

import pytest

from wheelforge.host.toolchain import Tool, ToolchainFacts
from wheelforge.model.errors import PlanError
from wheelforge.model.plan import BuildDependency
from wheelforge.model.planner import make_plan
from wheelforge.model.recipe import find_recipe, recipe_dirs
from wheelforge.model.settings import resolve_settings

FACTS = ToolchainFacts(
    cuda_version="12.8", cuda_home="/usr/local/cuda-12.8", nvcc="/usr/local/cuda-12.8/bin/nvcc",
    host_compiler=Tool("/usr/bin/g++", "12.2.0"), host_compiler_limit=14, cmake=Tool("/usr/bin/cmake", "3.31.0"),
)
WORK = PurePosixPath("/w/attempt")
TORCH = BuildDependency("torch", "2.15.0+cu128.sm120", "sha256:" + "b" * 64, "/wh/torch.whl", cuda_version="12.8", recipe="torch")


@pytest.fixture
def target(tmp_path):
    return resolve_settings({"arch": "12.0", "cuda": "12.8", "python": "/usr/bin/python3.11"}, env={}, pyproject={},
                            cwd=tmp_path).target


def _plan(name, target, **kw):
    recipe = find_recipe(name, recipe_dirs(None, env={}))
    return make_plan(recipe, None, target, FACTS, workdir=WORK, jobs=6, jobs_reason="test", **kw)


def test_torch_plan_is_a_scikit_build_core_build_with_the_official_features(target):
    plan = _plan("torch", target)
    site = f"/w/attempt/env/lib/python{target.python_version}/site-packages"
    env_install, compile_ = plan.commands[1].argv, plan.commands[-1].argv
    assert "scikit-build-core>=1.0" in env_install
    assert env_install[-4:] == ("nvidia-cudnn-cu12==9.26.0.51", "nvidia-nccl-cu12==2.30.7", "nvidia-cusparselt-cu12==0.8.1",
                                "nvidia-nvshmem-cu12==3.7.2")
    assert compile_[1:6] == ("-m", "pip", "wheel", "--no-deps", "--no-build-isolation")
    env = plan.env
    for flag in ("USE_CUDNN", "USE_NCCL", "USE_DISTRIBUTED", "USE_CUSPARSELT", "USE_NVSHMEM", "USE_CUFILE", "USE_SYSTEM_NCCL"):
        assert env[flag] == "1", flag
    assert env["USE_CUDSS"] == "0" and env["USE_STATIC_CUDNN"] == "0" and env["USE_STATIC_NCCL"] == "0"
    assert env["MAX_JOBS"] == env["CMAKE_BUILD_PARALLEL_LEVEL"] == "6"
    assert env["TORCH_NVCC_FLAGS"] == "-Xfatbin -compress-all"
    assert env["PYTORCH_BUILD_VERSION"] == "2.15.0+cu128.sm120" and env["PYTORCH_BUILD_NUMBER"] == "1"
    assert f"-DCUDNN_LIBRARY_PATH={site}/nvidia/cudnn/lib/libcudnn.so.9" in env["CMAKE_ARGS"]
    assert f"-DCUSPARSELT_LIBRARY_PATH={site}/nvidia/cusparselt/lib/libcusparseLt.so.0" in env["CMAKE_ARGS"]
    assert f"-DNCCL_LIBRARIES={site}/nvidia/nccl/lib/libnccl.so.2" in env["CMAKE_ARGS"]
    assert env["NVSHMEM_HOME"] == f"{site}/nvidia/nvshmem"
    extra = env["PYTORCH_EXTRA_INSTALL_REQUIREMENTS"].split("|")
    assert "triton~=3.9.0; platform_system == 'Linux' and python_version < '3.16'" in extra
    for pin in ("nvidia-cudnn-cu12==9.26.0.51", "nvidia-cublas-cu12==12.8.4.1", "nvidia-cuda-runtime-cu12==12.8.90",
                "nvidia-nccl-cu12==2.30.7", "nvidia-cusparselt-cu12==0.8.1", "nvidia-nvshmem-cu12==3.7.2"):
        assert pin in extra, pin
    assert plan.nvidia["versions"]["nvidia-cudnn-cu12"] == "9.26.0.51" and len(plan.nvidia["versions"]) == 15


def test_torch_plan_for_cuda_13_takes_the_cu13_wheels(tmp_path):
    facts = ToolchainFacts(cuda_version="13.0", cuda_home="/usr/local/cuda-13.0", nvcc="/usr/local/cuda-13.0/bin/nvcc",
                           host_compiler=Tool("/usr/bin/g++", "12.2.0"), host_compiler_limit=15)
    target = resolve_settings({"arch": "12.0", "cuda": "13.0"}, env={}, pyproject={}, cwd=tmp_path).target
    recipe = find_recipe("torch", recipe_dirs(None, env={}))
    plan = make_plan(recipe, None, target, facts, workdir=WORK)
    assert plan.commands[1].argv[-4:] == ("nvidia-cudnn-cu13==9.26.0.51", "nvidia-nccl-cu13==2.30.7",
                                          "nvidia-cusparselt-cu13==0.8.1", "nvidia-nvshmem-cu13==3.7.2")
    assert "/nvidia/cudnn/lib/libcudnn.so.9" in plan.env["CMAKE_ARGS"]


@pytest.mark.parametrize("name,version", [("torchvision", "0.29.2"), ("torchaudio", "2.11.1")])
def test_family_pins_the_torch_it_compiles_against(name, version, target):
    plan = _plan(name, target, build_deps=[TORCH])
    assert plan.env["PYTORCH_VERSION"] == "2.15.0+cu128.sm120"
    assert plan.env["BUILD_VERSION"] == f"{version}+cu128.sm120.torch2.15.0"  # the torch it is bound to, in its label
    assert plan.env["TORCH_CUDA_ARCH_LIST"] == "12.0"
    assert plan.commands[1].argv[-1] == "/wh/torch.whl"  # the wheelhouse torch goes into the build env
    assert plan.wheel_name == f"{name}-{version}+cu128.sm120.torch2.15.0-py3-none-linux_x86_64.whl"
    assert plan.nvidia["versions"] == {"nvidia-cuda-runtime-cu12": "12.8.90"}
    with pytest.raises(PlanError) as exc:
        _plan(name, target)  # no torch resolved
    assert exc.value.id == "plan.missing-dep"


def test_no_isolation_needs_the_interpreters_site_packages(target):
    with pytest.raises(PlanError) as exc:
        _plan("torch", target, isolation=False)
    assert exc.value.id == "plan.placeholder" and "nvidia_cudnn" in exc.value.message
    plan = _plan("torch", target, isolation=False, build_env_site="/opt/venv/lib/python3.11/site-packages")
    assert "-DCUDNN_INCLUDE_PATH=/opt/venv/lib/python3.11/site-packages/nvidia/cudnn/include" in plan.env["CMAKE_ARGS"]
    assert plan.commands[0].phase == "compile"  # nothing is installed without isolation


def test_nvidia_paths_do_not_change_the_key(target):
    a = _plan("cuda-libs-demo", target, tree_hash="t" * 64)
    b = make_plan(find_recipe("cuda-libs-demo", recipe_dirs(None, env={})), None, target, FACTS,
                  workdir=PurePosixPath("/elsewhere"), tree_hash="t" * 64)
    assert a.key == b.key and a.env["CMAKE_ARGS"] != b.env["CMAKE_ARGS"]


def test_no_isolation_keys_the_installed_nvidia_versions(target):
    site = "/opt/venv/lib/python3.11/site-packages"
    a = _plan("cuda-libs-demo", target, isolation=False, build_env_site=site, tree_hash="t" * 64,
              nvidia_installed={"nvidia-cudnn-cu12": "9.19.0.56", "nvidia-cublas-cu12": "12.8.4.1"})
    b = _plan("cuda-libs-demo", target, isolation=False, build_env_site=site, tree_hash="t" * 64,
              nvidia_installed={"nvidia-cudnn-cu12": "9.26.0.51", "nvidia-cublas-cu12": "12.8.4.1"})
    assert a.key != b.key and a.key_inputs["nvidia_installed"]["nvidia-cudnn-cu12"] == "9.19.0.56"
    assert "nvidia_installed" not in _plan("cuda-libs-demo", target, tree_hash="t" * 64).key_inputs
