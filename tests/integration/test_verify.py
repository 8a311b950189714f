"""verify end to end on a GPU-less machine: real nvcc, real wheels, real venvs, real pip and pytest."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from wheelforge.store.wheelhouse import make_manifest
from wheelforge.verify.suite import CaseResult, install, make_venv, parse_junit, run_suite, suite_modules, verify

pytestmark = pytest.mark.integration

NVCC = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if Path("/usr/local/cuda/bin/nvcc").is_file() else None)
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc not found (CUDA toolkit needed to build the test wheels)")

KERNEL = r"""
extern "C" __global__ void wf_scale(float *x, float a, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] *= a;
}
extern "C" int wf_launch(float *x, float a, int n) { wf_scale<<<(n + 255) / 256, 256>>>(x, a, n); return 0; }
"""


def _nvcc_version() -> str:
    out = subprocess.run([NVCC, "--version"], capture_output=True, text=True, check=True).stdout
    release = out.split("release ", 1)[1].split(",", 1)[0]
    return release.strip()


def _build_so(out: Path, sm: str) -> Path:
    src = out / "kern.cu"
    src.write_text(KERNEL)
    lib = out / f"libwf_{sm}.so"
    cmd = [NVCC, "-shared", "-Xcompiler", "-fPIC", f"-gencode=arch=compute_{sm},code=sm_{sm}", "-o", str(lib), str(src)]
    print("$", " ".join(cmd))
    subprocess.run(cmd, check=True, cwd=out, env={"PATH": f"{Path(NVCC).parent}:/usr/bin:/bin", "HOME": str(out), "TMPDIR": str(out)})
    return lib


def _make_wheel(out: Path, dist: str, version: str, lib: Path) -> Path:
    """A valid platform wheel by hand: package + CUDA .so + METADATA/WHEEL/RECORD with sha256."""
    tag = "py3-none-linux_x86_64"
    info = f"{dist}-{version}.dist-info"
    files = {
        f"{dist}/__init__.py": b"import ctypes, pathlib\nLIB = pathlib.Path(__file__).with_name('" + lib.name.encode() + b"')\n",
        f"{dist}/{lib.name}": lib.read_bytes(),
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n".encode(),
        f"{info}/WHEEL": f"Wheel-Version: 1.0\nGenerator: wheelforge-tests\nRoot-Is-Purelib: false\nTag: {tag}\n".encode(),
    }
    rows = [f"{n},sha256={base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b'=').decode()},{len(d)}" for n, d in files.items()]
    files[f"{info}/RECORD"] = ("\n".join(rows + [f"{info}/RECORD,,"]) + "\n").encode()
    path = out / f"{dist}-{version}-{tag}.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for n, d in files.items():
            zf.writestr(n, d)
    return path


def _entry(wheelhouse: Path, key: str, wheel: Path, archs: list[str], cuda: str, label: str) -> Path:
    d = wheelhouse / "entries" / key
    d.mkdir(parents=True)
    dest = d / wheel.name
    shutil.copy2(wheel, dest)
    manifest = make_manifest(
        key=key, recipe="wftiny", version="0.1.0", project="wftiny", wheel=dest,
        sha256=hashlib.sha256(dest.read_bytes()).hexdigest(),
        target={"archs": archs, "cuda": cuda, "python": "cp311", "label": label},
        archs_found=[], built_at="2025-01-01T00:00:00Z", build_seconds=1.0,
    )
    (d / "entry.json").write_text(json.dumps(manifest, indent=2))
    return d


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Two wheels from real nvcc: sm_120 SASS, and sm_90 SASS only; both labelled for 12.0."""
    if NVCC is None:
        pytest.skip("nvcc not found")
    cuda = _nvcc_version()
    label = f"cu{cuda.replace('.', '')}.sm120"
    out = tmp_path_factory.mktemp("wheels")
    wheels = {}
    for sm in ("120", "90"):
        d = out / sm
        d.mkdir()
        wheels[sm] = _make_wheel(d, "wftiny", f"0.1.0+{label}", _build_so(d, sm))
    return cuda, label, wheels


@needs_nvcc
def test_verify_sm120_wheel_passes_without_gpu(built, tmp_path):
    cuda, label, wheels = built
    wh = tmp_path / "wheelhouse"
    entry = _entry(wh, "a" * 64, wheels["120"], ["12.0"], cuda, label)

    report = verify(entry, archs=["12.0"], cuda=cuda)

    assert report.result == "passed", report.reason + "\n" + report.log_tail
    assert report.archs_found == ["sm_120"]
    assert report.audit["ok"] is True
    assert report.gpu is None and report.gpu_reason, "no GPU here: the reason must be recorded"
    by_name = {t.name.rsplit("::", 1)[1]: t for t in report.tests}
    for name in ("test_static_audit_covers_requested_archs", "test_metadata_version_carries_local_label",
                 "test_record_hashes_valid", "test_installed_distribution_is_this_wheel"):
        assert by_name[name].outcome == "passed", by_name[name]
    gpu_test = by_name["test_gpu_is_covered"]
    assert gpu_test.outcome == "skipped" and gpu_test.message.startswith("needs a CUDA GPU:"), gpu_test

    stored = json.loads((entry / "verify.json").read_text())
    assert stored["result"] == "passed"
    assert stored["sha256"] == hashlib.sha256(wheels["120"].read_bytes()).hexdigest()
    assert stored["wheel"] == wheels["120"].name and stored["archs_requested"] == ["12.0"]
    assert stored["counts"]["skipped"] >= 1 and stored["counts"]["failed"] == 0
    assert json.loads((entry / "entry.json").read_text())["verify"] == "passed"
    assert not list(entry.glob("*.tmp")), "temporary files left in the entry"


@needs_nvcc
def test_verify_sm90_only_wheel_fails_static_audit(built, tmp_path):
    cuda, label, wheels = built
    entry = _entry(tmp_path / "wheelhouse", "b" * 64, wheels["90"], ["12.0"], cuda, label)

    report = verify(entry, archs=["12.0"], cuda=cuda)

    assert report.result == "failed"
    assert report.archs_found == ["sm_90"]
    assert "static audit failed" in report.reason and "libwf_90.so" in report.reason and "sm_120" in report.reason, report.reason
    assert report.tests == [], "the suite must not run on a wheel the audit rejects"
    assert json.loads((entry / "verify.json").read_text())["result"] == "failed"
    assert json.loads((entry / "entry.json").read_text())["verify"] == "failed"
    with pytest.raises(Exception, match="static audit failed"):
        report.raise_for_result()


@needs_nvcc
def test_suite_failure_is_reported_per_test(built, tmp_path):
    """A bare wheel (no entry) with the wrong expected label: one named failing test, nothing written."""
    cuda, _, wheels = built
    wheel = tmp_path / wheels["120"].name
    shutil.copy2(wheels["120"], wheel)

    report = verify(wheel, archs=["12.0"], cuda=cuda, local_label="cu128.sm120")

    assert report.result == "failed"
    failed = [t for t in report.tests if t.outcome == "failed"]
    assert [t.name.rsplit("::", 1)[1] for t in failed] == ["test_metadata_version_carries_local_label"]
    assert "lacks the local label +cu128.sm120" in failed[0].message
    assert "test_metadata_version_carries_local_label" in report.reason
    assert not (tmp_path / "verify.json").exists(), "a bare wheel is not an entry: nothing is written beside it"


@pytest.mark.parametrize("wheel,module", [
    ("xformers-0.0.35+cu128.sm120-py39-none-linux_x86_64.whl", "test_xformers.py"),
    ("llama_cpp_python-0.3.16-cp311-cp311-linux_x86_64.whl", "test_llama_cpp.py"),
    ("flash_attn-2.8.3.post2+cu130.sm90-cp312-cp312-linux_x86_64.whl", "test_flash_attn.py"),
    ("foo-1.0-py3-none-any.whl", None),
])
def test_a_bare_wheel_gets_the_suite_of_the_recipe_that_builds_its_project(tmp_path, wheel, module):
    """Not a table of module names: the bundled recipes' ``project`` and ``test_module`` decide."""
    from wheelforge.model.recipe import recipe_dirs
    from wheelforge.verify.suite import POSTBUILD_DIR, choose_suite

    path = tmp_path / wheel
    path.write_bytes(b"")  # only its name is read to choose the suite
    choice = choose_suite(path, wheelhouse=None, recipe_dirs=recipe_dirs(None, env={}))
    assert choice.test_module == (POSTBUILD_DIR / module if module else None)
    assert suite_modules(choice.test_module) == [POSTBUILD_DIR / "test_wheel_static.py"] + ([POSTBUILD_DIR / module] if module else [])


def test_parse_junit_outcomes(tmp_path):
    junit = tmp_path / "j.xml"
    junit.write_text(
        '<testsuites><testsuite><testcase classname="m" name="a"/>'
        '<testcase classname="m" name="b"><failure message="boom">tb</failure></testcase>'
        '<testcase classname="m" name="c"><skipped message="needs a CUDA GPU: none"/></testcase>'
        '</testsuite></testsuites>'
    )
    assert parse_junit(junit) == [
        CaseResult("m::a", "passed", ""), CaseResult("m::b", "failed", "boom"), CaseResult("m::c", "skipped", "needs a CUDA GPU: none"),
    ]


LLAMA_WHEEL = os.environ.get("WHEELFORGE_LLAMA_WHEEL")


@pytest.mark.slow
@pytest.mark.skipif(not LLAMA_WHEEL, reason="set WHEELFORGE_LLAMA_WHEEL to a llama-cpp-python wheel to run its post-build module")
def test_llama_cpp_module_on_real_wheel(tmp_path):
    """The llama module against a real llama-cpp-python wheel: tiny GGUF loads, CPU greedy is well posed."""
    venv_python = make_venv(tmp_path / "venv", python=sys.executable)
    install(venv_python, [LLAMA_WHEEL, "pytest>=8.0", "gguf>=0.10", "numpy>=1.26"])
    result = run_suite(venv_python, ["test_llama_cpp.py"], workdir=tmp_path, wheel=Path(LLAMA_WHEEL), archs=["12.0"], cuda=None)
    outcomes = {t.name.rsplit("::", 1)[1]: t.outcome for t in result.tests}
    assert result.returncode == 0, result.log_tail
    assert outcomes["test_tokenizer_roundtrip[f32]"] == outcomes["test_tokenizer_roundtrip[f16]"] == "passed"
    assert outcomes["test_cpu_greedy_is_well_posed[f32]"] == outcomes["test_cpu_greedy_is_well_posed[f16]"] == "passed"
    expect_gpu = "passed" if result.gpu else "skipped"
    assert outcomes["test_gpu_matches_cpu[f32]"] == expect_gpu, result.log_tail


def test_arch_mismatch_line():
    """The conftest's GPU-fit rule (no GPU here, so the rule itself is checked directly)."""
    import importlib.util

    from wheelforge.verify.suite import POSTBUILD_DIR

    spec = importlib.util.spec_from_file_location("wf_postbuild_conftest", POSTBUILD_DIR / "conftest.py")
    conf = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = conf  # dataclasses look their module up while the class is built
    try:
        spec.loader.exec_module(conf)
    finally:
        del sys.modules[spec.name]

    def target(archs: str, allow: bool = False):
        return conf.Target(wheel=None, archs=[conf.parse_arch(a) for a in archs.split(";")], cuda="12.8",
                           local_label=None, allow_arch_mismatch=allow, audit_json=None)

    h100, b200, rtx5090, spark = (conf.Gpu(n, c) for n, c in (("H100", (9, 0)), ("B200", (10, 0)), ("RTX 5090", (12, 0)), ("GB10", (12, 1))))
    assert conf.mismatch_line(h100, target("12.0")) == "GPU sm_90 is not covered by this wheel: sm_120"
    assert conf.mismatch_line(h100, target("12.0", allow=True)) is None
    assert conf.mismatch_line(h100, target("9.0;12.0")) is None
    assert conf.mismatch_line(b200, target("9.0;12.0")) == "GPU sm_100 is not covered by this wheel: sm_90, sm_120"
    assert conf.mismatch_line(rtx5090, target("12.0a")) is None
    assert conf.mismatch_line(spark, target("12.0")) is None  # sm_120 SASS runs on 12.1 (same major, higher minor)
    assert conf.mismatch_line(spark, target("12.0a")) == "GPU sm_121 is not covered by this wheel: sm_120a"
    assert conf.mismatch_line(None, target("12.0")) is None


def test_system_site_packages_venv_sees_a_parent_venv(tmp_path):
    """The GPU machine's torch lives in a venv; a test venv made from it must still see it."""
    import subprocess
    import sys

    from wheelforge.verify.suite import make_venv

    parent = tmp_path / "parent"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(parent)], check=True)
    site = subprocess.run([str(parent / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (Path(site) / "wf_parent_probe.py").write_text("WHERE = 'parent venv'\n")
    child = make_venv(tmp_path / "child", python=str(parent / "bin" / "python"), system_site_packages=True, echo=lambda _: None)
    out = subprocess.run([str(child), "-c", "import wf_parent_probe; print(wf_parent_probe.WHERE)"], capture_output=True, text=True)
    assert out.stdout.strip() == "parent venv", out.stderr
    isolated = make_venv(tmp_path / "isolated", python=str(parent / "bin" / "python"), echo=lambda _: None)
    assert subprocess.run([str(isolated), "-c", "import wf_parent_probe"], capture_output=True).returncode != 0


def test_test_tools_found_only_on_our_pythonpath_are_still_installed(tmp_path, monkeypatch):
    """The GPU machine carries wheelforge's own helpers on PYTHONPATH; the test venv never sees that
    variable, so a tool found only there must still be installed into the venv (seen: gguf skipped,
    then 'No module named gguf' in every llama test)."""
    from wheelforge.verify.suite import _satisfied

    carried = tmp_path / "carried"
    (carried / "wf_carried_tool-1.0.dist-info").mkdir(parents=True)
    (carried / "wf_carried_tool-1.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: wf-carried-tool\nVersion: 1.0\n")
    probe = [sys.executable, "-c", "import importlib.metadata as m; print(m.version('wf-carried-tool'))"]
    assert subprocess.run(probe, env={**os.environ, "PYTHONPATH": str(carried)}, capture_output=True, text=True).stdout.strip() == "1.0"
    monkeypatch.setenv("PYTHONPATH", str(carried))
    assert not _satisfied(sys.executable, "wf-carried-tool>=1.0")
    assert _satisfied(sys.executable, "pytest>=7")
