"""The llama.cpp programs wheel (recipe llama.cpp), built for real on CPU: packaging, relocation, the CPU suite.

CI has no GPU and 2 cores, so it builds the recipe's CPU-only target: the same [cmake] table with
``{cuda_enabled}`` = OFF and no CUDA archs (the only defines that change; test_cmake_wheel checks
that).  The tree is the llama.cpp that the pinned llama-cpp-python 0.3.36 sdist vendors (b11312),
which PyPI serves where GitHub is out of reach.  The project comes from wheelforge.cmake_wheel, and
the commands are those the cmake kind runs (``pip wheel --no-deps --no-build-isolation``).

Checked on the built wheel: each shared library once, as ``lib/libX.so`` with SONAME = file name;
programs in ``bin/`` with RUNPATH ``$ORIGIN/../lib``; nothing the relocation check cannot place (no
libgomp, libssl, libcurl); no torch requirement.  Then the post-build suite runs in a fresh venv
(tests/postbuild/test_llama_cpp_tools.py; no torch there, so its GGUF comes from gguf_model.py).
Slow: the build is most of it (see docs/llama-cpp-tools.md for the measured time).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
import tomllib
import zipfile
from pathlib import Path

import pytest
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from patch_support import REPO, download_sdist, extract_sdist, run  # noqa: E402

from wheelforge.cmake_wheel import cuda_enabled, spec_from_recipe, write_project  # noqa: E402
from wheelforge.relocate import analyze  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RECIPE = REPO / "recipes" / "drafts" / "llama.cpp.toml"
VERSION = "11312"


@pytest.fixture(scope="module")
def cpu_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("scikit_build_core")
    root = tmp_path_factory.mktemp("llama-cpp-tools")
    cache = Path(os.environ["WHEELFORGE_CACHE"]) / "test-sdists" if os.environ.get("WHEELFORGE_CACHE") else root / "sdists"
    sdist = extract_sdist(download_sdist("llama-cpp-python", cache), root / "sdist")
    src = root / "src"
    shutil.copytree(sdist / "vendor" / "llama.cpp", src, symlinks=True)
    values = {"version": VERSION, "full_version": f"{VERSION}+cpu", "local_version": "cpu", "cmake_cuda_architectures": "",
              "cuda_enabled": cuda_enabled(""), "cuda_home": "/usr/local/cuda", "cuda_version": "", "jobs": "2",
              "python_tag": "py3", "torch_cuda_arch_list": ""}
    spec = spec_from_recipe(tomllib.loads(RECIPE.read_text()), version=VERSION, full_version=f"{VERSION}+cpu",
                            source_dir="../src", values=values, where=str(RECIPE))
    project = write_project(spec, root / "project").parent
    env = {**os.environ, "CMAKE_BUILD_PARALLEL_LEVEL": "2"}
    start = time.monotonic()
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--disable-pip-version-check",
         "-C", f"build-dir={root / 'build'}", "--wheel-dir", root / "out", project], cwd=root, env=env, timeout=5400)
    (wheel,) = (root / "out").glob("llama_cpp_tools-*.whl")
    print(f"built {wheel.name}: {wheel.stat().st_size} bytes in {time.monotonic() - start:.0f} s")
    return wheel


def _dynamic(data: bytes) -> tuple[str | None, list[str], list[str]]:
    import io

    soname, needed, runpath = None, [], []
    for section in ELFFile(io.BytesIO(data)).iter_sections():
        if isinstance(section, DynamicSection):
            for tag in section.iter_tags():
                if tag.entry.d_tag == "DT_SONAME":
                    soname = tag.soname
                elif tag.entry.d_tag == "DT_NEEDED":
                    needed.append(tag.needed)
                elif tag.entry.d_tag in ("DT_RUNPATH", "DT_RPATH"):
                    runpath += (tag.runpath if tag.entry.d_tag == "DT_RUNPATH" else tag.rpath).split(":")
    return soname, needed, runpath


@pytest.mark.timeout(5400)
def test_cpu_wheel_layout_and_relocation(cpu_wheel: Path) -> None:
    assert cpu_wheel.name.startswith(f"llama_cpp_tools-{VERSION}+cpu-py3-none-linux_"), cpu_wheel.name
    with zipfile.ZipFile(cpu_wheel) as zf:
        names = [n for n in zf.namelist() if not n.endswith("/")]
        libs = sorted(n for n in names if n.startswith("llama_cpp_tools/lib/"))
        bins = sorted(n for n in names if n.startswith("llama_cpp_tools/bin/"))
        stems = [n.rsplit("/", 1)[1].split(".so", 1)[0] for n in libs]
        assert len(stems) == len(set(stems)), f"a library is stored twice: {libs}"
        assert all(n.endswith(".so") for n in libs), libs
        assert {f"llama_cpp_tools/bin/{p}" for p in ("llama-server", "llama-quantize", "llama-bench", "llama-completion")} <= set(bins)
        assert not [n for n in names if "/include/" in n or "/cmake/" in n or "/pkgconfig/" in n]
        for lib in libs:
            soname, _, runpath = _dynamic(zf.read(lib))
            assert soname == lib.rsplit("/", 1)[1], f"{lib}: SONAME {soname}"
        for program in bins:
            assert (zf.getinfo(program).external_attr >> 16) & 0o111, f"{program} is not executable in the wheel"
            _, needed, runpath = _dynamic(zf.read(program))
            assert "$ORIGIN/../lib" in runpath, f"{program}: RUNPATH {runpath}"
        meta = next(zf.read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
        assert "torch" not in meta.lower().replace("needs torch", "")
        assert any(n.startswith("llama_cpp_tools-") and n.endswith(".dist-info/licenses/LICENSE") for n in names)
    report = analyze(cpu_wheel, "12.8")
    assert not report.unknown, [f"{n.file}: {n.soname}" for n in report.unknown]
    assert not report.fixes and not report.requirements, report.to_dict()
    print(f"{len(libs)} libraries, {len(bins)} programs, {sum(1 for n in report.needs if n.source == 'wheel')} in-wheel links")


@pytest.mark.timeout(5400)
def test_cpu_postbuild_suite_passes(cpu_wheel: Path, tmp_path: Path) -> None:
    from wheelforge.verify import TEST_REQUIRES, install, make_venv, run_suite

    module = "test_llama_cpp_tools.py"
    venv_python = make_venv(tmp_path / "venv")
    install(venv_python, [str(cpu_wheel), *TEST_REQUIRES[""], *TEST_REQUIRES[module]])
    suite = run_suite(venv_python, [module], workdir=tmp_path, wheel=cpu_wheel, archs=[], cuda=None, timeout=1800)
    outcomes = {t.name.rsplit("::", 1)[-1]: t.outcome for t in suite.tests}
    print(suite.log_tail)
    assert suite.returncode == 0, suite.log_tail
    for name in ("test_every_program_starts_and_prints_its_version", "test_wheel_layout_each_library_once",
                 "test_quantize_q8_0_and_q4_k_m", "test_server_greedy_equals_llama_completion[Q8_0]",
                 "test_server_greedy_equals_llama_completion[Q4_K_M]", "test_convert_without_torch_is_one_clear_line"):
        assert outcomes.get(name) == "passed", f"{name}: {outcomes.get(name)}; all: {outcomes}"
