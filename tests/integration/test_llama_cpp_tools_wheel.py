"""The llama.cpp programs wheel (recipe llama.cpp, kind cmake), built for real on CPU through wheelforge.

CI has no GPU and 2 cores, so it builds the recipe's CPU-only target (``--arch cpu``: the same [cmake]
table with ``{cuda_enabled}`` = OFF and no CUDA archs), from the llama.cpp tree that the pinned
llama-cpp-python 0.3.36 sdist vendors (b11312; the recipe's source ``llama-cpp-python-0-3-36``), which
PyPI serves where GitHub is out of reach.  ``invoke build`` runs every step of the cmake kind: the
generated scikit-build-core project, the locked build venv, relocation, the audit, the wheelhouse and
the post-build suite in a fresh venv (tests/postbuild/test_llama_cpp_tools.py, CPU tests).

Checked on the built wheel: each shared library once, as ``lib/libX.so`` with SONAME = file name;
programs in ``bin/`` with RUNPATH ``$ORIGIN/../lib``; nothing the relocation check cannot place (no
libgomp, libssl, libcurl); no torch requirement.  Slow: the build is most of it (docs/llama-cpp-tools.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from patch_support import elf_dynamic

from wheelforge.binaries.relocate import analyze

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
VERSION = "11312"


@pytest.fixture(scope="module")
def cpu_build(tmp_path_factory: pytest.TempPathFactory) -> dict:
    pytest.importorskip("scikit_build_core")
    root = tmp_path_factory.mktemp("llama-cpp-tools")
    wh = root / "wheelhouse"
    start = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "invoke", "-r", str(REPO), "build", "llama.cpp", "--arch", "cpu", "--cuda", "auto",
                          "--source-name", "llama-cpp-python-0-3-36", "--wheelhouse", str(wh)],
                         capture_output=True, text=True, timeout=5400, env=dict(os.environ))
    seconds = time.monotonic() - start
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-5000:]
    (wheel,) = wh.glob("entries/*/llama_cpp_tools-*.whl")
    print(f"built and verified {wheel.name}: {wheel.stat().st_size} bytes in {seconds:.0f} s")
    return {"wheel": wheel, "entry": wheel.parent, "out": out}


@pytest.mark.timeout(5400)
def test_cpu_wheel_layout_and_relocation(cpu_build: dict) -> None:
    cpu_wheel = cpu_build["wheel"]
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
            soname, _, runpath = elf_dynamic(zf.read(lib))
            assert soname == lib.rsplit("/", 1)[1], f"{lib}: SONAME {soname}"
        for program in bins:
            assert (zf.getinfo(program).external_attr >> 16) & 0o111, f"{program} is not executable in the wheel"
            _, needed, runpath = elf_dynamic(zf.read(program))
            assert "$ORIGIN/../lib" in runpath, f"{program}: RUNPATH {runpath}"
        meta = next(zf.read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
        assert "torch" not in meta.lower().replace("needs torch", "")
        assert any(n.startswith("llama_cpp_tools-") and n.endswith(".dist-info/licenses/LICENSE") for n in names)
    report = analyze(cpu_wheel, "12.8")
    assert not report.unknown, [f"{n.file}: {n.soname}" for n in report.unknown]
    assert not report.fixes and not report.requirements, report.to_dict()
    print(f"{len(libs)} libraries, {len(bins)} programs, {sum(1 for n in report.needs if n.source == 'wheel')} in-wheel links")


@pytest.mark.timeout(5400)
def test_cpu_postbuild_suite_passed_in_the_build(cpu_build: dict) -> None:
    entry = cpu_build["entry"]
    manifest = json.loads((entry / "entry.json").read_text())
    assert manifest["state"] == "verified" and manifest["target"]["archs"] == [] and manifest["target"]["label"] == "cpu"
    report = json.loads((entry / "verify.json").read_text())
    outcomes = {t["name"].rsplit("::", 1)[-1]: t["outcome"] for t in report["tests"]}
    for name in ("test_every_program_starts_and_prints_its_version", "test_wheel_layout_each_library_once",
                 "test_quantize_q8_0_and_q4_k_m", "test_server_greedy_equals_llama_completion[Q8_0]",
                 "test_server_greedy_equals_llama_completion[Q4_K_M]", "test_convert_without_torch_is_one_clear_line"):
        assert outcomes.get(name) == "passed", f"{name}: {outcomes.get(name)}; all: {outcomes}"
