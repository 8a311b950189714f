"""The uv project snippet of docs/index.md, run as written against served indexes.

Two real servers: ours, holding tiny wheels at exactly the snippet's pins, and a stand-in for
PyPI (uv's default index here) holding the same names at 99.0.  uv must take every routed name
from ours, everything else from the default, and fail rather than look elsewhere for a routed
name that ours lacks (dependency confusion).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from docs_support import docs_snippet  # noqa: E402
from index_support import WheelSpec, child_env, make_wheelhouse, running_server  # noqa: E402

from wheelforge.serving.index import build_index  # noqa: E402

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

pytestmark = pytest.mark.integration

EXAMPLE = "https://wheels.example.com/simple/"


SNIPPET = docs_snippet("uv-project")
PINS = [Requirement(d) for d in tomllib.loads(SNIPPET)["project"]["dependencies"]]


def serve_specs(root: Path, specs: list[WheelSpec]) -> Path:
    wh = make_wheelhouse(root, specs)
    build_index(wh)
    return wh


def uv_lock(project: Path, ours: str, public: str, extra_dependency: str | None = None) -> subprocess.CompletedProcess:
    text = SNIPPET.replace(EXAMPLE, f"{ours}/simple/")
    assert text != SNIPPET
    if extra_dependency:
        text = text.replace("dependencies = [\n", f'dependencies = [\n    "{extra_dependency}",\n', 1)
    project.mkdir()
    (project / "pyproject.toml").write_text(text)
    env = child_env(UV_CACHE_DIR=str(project.parent / "uv-cache"), UV_PYTHON_DOWNLOADS="never", UV_PYTHON=sys.executable,
                    UV_DEFAULT_INDEX=f"{public}/simple/")
    cmd = [sys.executable, "-m", "uv", "lock", "--no-progress"]
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def locked(project: Path) -> dict[str, tuple[str, str]]:
    lock = tomllib.loads((project / "uv.lock").read_text())
    return {p["name"]: (p["version"], p["source"].get("registry", "")) for p in lock["package"] if "registry" in p["source"]}


@pytest.fixture(scope="module")
def public(tmp_path_factory):
    """The stand-in for PyPI: every routed name at 99.0, plus one package ours does not hold."""
    specs = [WheelSpec(name=p.name, version="99.0", archs_found=()) for p in PINS] + [WheelSpec(name="plain-dep", version="1.0", archs_found=())]
    with running_server(serve_specs(tmp_path_factory.mktemp("public") / "wh", specs)) as base:
        yield base


def test_snippet_pins_every_routed_package_to_our_index(tmp_path, public):
    assert {p.name for p in PINS} == {"torch", "xformers", "flash-attn", "llama-cpp-python"}
    specs = [WheelSpec(name=p.name, version=str(next(iter(p.specifier)).version)) for p in PINS]
    with running_server(serve_specs(tmp_path / "ours", specs)) as ours:
        out = uv_lock(tmp_path / "app", ours, public, extra_dependency="plain-dep")
    assert out.returncode == 0, out.stdout
    got = locked(tmp_path / "app")
    for p in PINS:
        assert got[p.name] == (str(next(iter(p.specifier)).version), f"{ours}/simple/"), p.name
    assert got["plain-dep"] == ("1.0", f"{public}/simple/")  # not routed: the default index


def test_a_routed_name_missing_from_our_index_fails_instead_of_falling_back(tmp_path, public):
    specs = [WheelSpec(name=p.name, version=str(next(iter(p.specifier)).version)) for p in PINS if p.name != "flash-attn"]
    with running_server(serve_specs(tmp_path / "ours", specs)) as ours:
        out = uv_lock(tmp_path / "app", ours, public)
    assert out.returncode != 0, out.stdout
    assert "flash-attn was not found in the package registry" in out.stdout, out.stdout
    assert not (tmp_path / "app/uv.lock").exists()
