"""Precedence: flags over environment over [tool.wheelforge] over defaults."""

import sys

import pytest

from wheelforge.model.arch import CudaArch
from wheelforge.model.errors import ConfigError
from wheelforge.model.settings import read_pyproject, resolve_settings


def test_defaults(tmp_path):
    s = resolve_settings({}, env={}, pyproject={}, cwd=tmp_path)
    assert s.target.archs == (CudaArch(12, 0),)
    assert s.target.cuda == "12.8"
    assert s.target.python == sys.executable
    assert s.target.python_tag == f"cp{sys.version_info.major}{sys.version_info.minor}"
    assert s.wheelhouse == tmp_path / "wheelhouse"
    assert s.sources["arch"] == "default"


@pytest.mark.parametrize(
    "flags,env,pyproject,arch,cuda,origin",
    [
        ({}, {}, {"arch": "9.0", "cuda": "13.0"}, "9.0", "13.0", "pyproject"),
        ({}, {"WHEELFORGE_ARCH": "8.6", "WHEELFORGE_CUDA": "12.9"}, {"arch": "9.0", "cuda": "13.0"}, "8.6", "12.9", "WHEELFORGE_ARCH"),
        ({"arch": "sm_120a", "cuda": "auto"}, {"WHEELFORGE_ARCH": "8.6", "WHEELFORGE_CUDA": "12.9"}, {"arch": "9.0"}, "12.0a", "auto", "flag"),
        ({"arch": None}, {"WHEELFORGE_ARCH": "8.6"}, {}, "8.6", "12.8", "WHEELFORGE_ARCH"),
    ],
)
def test_precedence(tmp_path, flags, env, pyproject, arch, cuda, origin):
    s = resolve_settings(flags, env=env, pyproject=pyproject, cwd=tmp_path)
    assert ";".join(str(a) for a in s.target.archs) == arch
    assert s.target.cuda == cuda
    assert s.sources["arch"] == origin


def test_cache_and_wheelhouse_from_env(tmp_path):
    s = resolve_settings({}, env={"WHEELFORGE_CACHE": str(tmp_path / "c"), "WHEELFORGE_WHEELHOUSE": str(tmp_path / "w")}, pyproject={})
    assert s.cache == tmp_path / "c"
    assert s.wheelhouse == tmp_path / "w"


def test_read_pyproject_table(tmp_path):
    p = tmp_path / "pyproject.toml"
    p.write_text('[tool.wheelforge]\narch = "9.0;12.0"\n[tool.wheelforge.mirrors]\n"https://files.pythonhosted.org/" = "file:///mirror/"\n')
    table = read_pyproject(p)
    s = resolve_settings({}, env={}, pyproject=table, cwd=tmp_path)
    assert len(s.target.archs) == 2
    assert s.mirrors == {"https://files.pythonhosted.org/": "file:///mirror/"}


@pytest.mark.parametrize(
    "flags,error_id",
    [
        ({"cuda": "twelve"}, "config.cuda"),
        ({"cuda": "12"}, "config.cuda"),
        ({"jobs": "0"}, "config.jobs"),
        ({"compiler_cache": "distcc"}, "config.compiler-cache"),
        ({"installer": "poetry"}, "config.installer"),
        ({"arch": "sm_12"}, "arch.unknown"),  # 1.2; sm_999 (99.9) is well spelled: the toolkit check refuses it
    ],
)
def test_bad_values(tmp_path, flags, error_id):
    with pytest.raises(ConfigError) as exc:
        resolve_settings(flags, env={}, pyproject={}, cwd=tmp_path)
    assert exc.value.id == error_id


def test_unknown_pyproject_key(tmp_path):
    p = tmp_path / "pyproject.toml"
    p.write_text('[tool.wheelforge]\narchs = "9.0"\n')
    with pytest.raises(ConfigError) as exc:
        read_pyproject(p)
    assert "unknown key 'archs'" in exc.value.message
