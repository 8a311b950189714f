"""wheelforge.model.nvidia_wheels against the real wheels on PyPI: each pinned wheel holds the library file and the
include folder the table says (file lists read with HTTP range requests: the zip directory only, no download)."""

from __future__ import annotations

import io
import zipfile

import pytest
import requests

from wheelforge.host.index_client import RangeFile
from wheelforge.model.nvidia_wheels import nvidia_wheel
from wheelforge.model.recipe import find_recipe, recipe_dirs

pytestmark = pytest.mark.integration


def _pins() -> list[tuple[str, str, str]]:
    """(library, CUDA version, exact version) for every [nvidia_versions] pin of the bundled recipes."""
    out = set()
    for name in ("torch", "cuda-libs-demo"):
        recipe = find_recipe(name, recipe_dirs(None, env={}))
        for major, libs in recipe.nvidia_versions.items():
            cuda = {"cu12": "12.8", "cu13": "13.0"}[major]
            out.update((lib, cuda, version) for lib, version in libs.items())
    return sorted(out)


@pytest.fixture(scope="module")
def session() -> requests.Session:
    return requests.Session()


def _file_list(session: requests.Session, dist: str, version: str) -> list[str]:
    page = session.get(f"https://pypi.org/simple/{dist}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"},
                       timeout=60)
    if page.status_code != 200:
        pytest.skip(f"PyPI not reachable ({page.status_code})")
    files = [f for f in page.json()["files"] if f"-{version}-" in f["filename"] and f["filename"].endswith(".whl")
             and "x86_64" in f["filename"] and "manylinux" in f["filename"]]
    assert files, f"PyPI has no manylinux x86_64 wheel of {dist} {version}"
    f = files[0]
    remote = RangeFile(session, f["url"].split("#", 1)[0], f["size"])
    with zipfile.ZipFile(io.BufferedReader(remote, buffer_size=64 * 1024)) as zf:
        return zf.namelist()


@pytest.mark.parametrize("lib,cuda,version", _pins(), ids=[f"{lib}-{cuda}-{v}" for lib, cuda, v in _pins()])
def test_pinned_wheel_holds_the_files_the_table_names(session, lib, cuda, version) -> None:
    wheel = nvidia_wheel(lib, cuda)
    names = _file_list(session, wheel.distribution, version)
    assert wheel.library in names, f"{wheel.distribution} {version} has no {wheel.library}"
    if wheel.lib.key not in ("nvtx", "cufile", "nvjitlink", "curand", "cufft", "cusolver", "cusparse", "cupti", "nvrtc"):
        # the libraries wheelforge compiles against must bring their headers
        assert any(n.startswith(wheel.include + "/") and n.endswith(".h") for n in names), \
            f"{wheel.distribution} {version} has no headers under {wheel.include}"
