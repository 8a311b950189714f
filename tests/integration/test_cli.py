"""The command line as users run it: tasks listed, plans without the requested toolkit, two-line errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def invoke(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("WHEELFORGE_")}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=REPO, capture_output=True, text=True, timeout=120, env=env)


def test_list_shows_every_task():
    out = invoke("--list")
    assert out.returncode == 0, out.stderr
    for name in ("doctor", "toolchain", "plan", "fetch", "patches.check", "build", "inspect", "verify", "index", "serve",
                 "publish", "farm.matrix", "farm.status"):
        assert f"  {name} " in out.stdout, name


def test_plan_torch_for_cuda_12_8_without_that_toolkit():
    out = invoke("plan", "torch", "--cuda", "12.8", "--json")
    assert out.returncode == 0, out.stderr
    plan = json.loads(out.stdout)
    assert plan["env"]["TORCH_CUDA_ARCH_LIST"] == "12.0"
    assert plan["env"]["PYTORCH_BUILD_VERSION"] == "2.15.0+cu128.sm120"
    assert plan["source"]["commit"] == "d0f2af8b66b20da4baa50644c0cd3f887a2eae2e"
    assert len(plan["key"]) == 64 and plan["wheel_name"].startswith("torch-2.15.0+cu128.sm120-")
    assert "CUDA 12.8" in out.stderr  # says the toolkit is not here and a build would stop


@pytest.mark.parametrize("name", ["torchvision", "torchaudio"])
def test_plan_torch_family_pins_the_torch_given(name):
    # a labelled pin needs no lookup: CUDA 12.8 from "+cu128"
    out = invoke("plan", name, "--cuda", "12.8", "--with", "torch==2.15.0+cu128", "--json")
    assert out.returncode == 0, out.stderr
    plan = json.loads(out.stdout)
    assert plan["env"]["PYTORCH_VERSION"] == "2.15.0+cu128"
    env_step = next(s for s in plan["steps"] if s["name"] == "env")
    assert any("torch==2.15.0+cu128" in c["argv"] for c in env_step["commands"])  # after the recipe's locked requirements
    assert plan["build_deps"][0]["identity"] == "pypi:torch==2.15.0+cu128"


def test_bad_input_is_two_lines_and_an_exit_code():
    out = invoke("plan", "torch", "--arch", "sm_999")
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert lines == [lines[0], lines[1]] and lines[0].startswith("error[arch.unknown]") and lines[1].startswith("hint: ")
    assert "Traceback" not in out.stderr


def test_environment_overrides_pyproject():
    out = invoke("plan", "xformers", "--cuda", "auto", "--json", env_extra={"WHEELFORGE_ARCH": "9.0;12.0"})
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["env"]["TORCH_CUDA_ARCH_LIST"] == "9.0;12.0"


def test_xformers_against_pypi_torch_for_another_cuda_major_stops_at_planning():
    """PyPI's torch 2.15.0 is a CUDA 13.2 build (read from PyPI here): planning for 12.8 stops, naming both."""
    out = invoke("plan", "xformers", "--with", "torch==2.15.0", "--cuda", "12.8")
    assert out.returncode != 0
    assert "error[plan.dep-cuda-major]: torch 2.15.0 was built for CUDA 13.2, but the target is CUDA 12.8" in out.stderr
    assert "Traceback" not in out.stderr
    same_major = invoke("plan", "xformers", "--with", "torch==2.11.0", "--cuda", "13.0", "--json")
    assert same_major.returncode == 0, same_major.stderr
    deps = json.dumps(json.loads(same_major.stdout))
    assert "torch==2.11.0" in deps


TASKS = ("doctor", "toolchain", "plan", "fetch", "patches.check", "build", "inspect", "verify", "index", "serve",
         "publish", "farm.matrix", "farm.status")


@pytest.mark.parametrize("flag", ["--help", "-h"])
@pytest.mark.parametrize("task", TASKS)
def test_help_after_the_task_prints_its_help(task, flag):
    """Also for tasks with a positional (invoke would hand it `--help` as the recipe); publish sends no request."""
    out = invoke(task, flag)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"Usage: inv[oke] [--core-opts] {task} "), out.stdout
    assert "Options:" in out.stdout and "error" not in out.stderr


def test_help_of_the_installed_command_names_it():
    out = subprocess.run([sys.executable, "-c", "import sys; sys.argv[0] = 'wheelforge'; from wheelforge.cli.program import main; main()",
                          "build", "--help"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("Usage: wheelforge [--core-opts] build ")
    assert "-v, --verbose" in out.stdout and "-a STRING, --arch=STRING" in out.stdout


def test_a_missing_recipe_is_named():
    out = invoke("build")
    assert out.returncode != 0
    assert "'build' did not receive required positional arguments: 'recipe'" in out.stderr


def _toolkits() -> list[dict]:
    out = invoke("toolchain", "--cuda", "auto", "--json")
    return json.loads(out.stdout)["found"] if out.returncode == 0 else []


def test_arch_takes_every_capability_the_toolkits_nvcc_lists():
    kits = [k for k in _toolkits() if k.get("nvcc_archs")]
    if not kits:
        pytest.skip("no CUDA toolkit here")
    listed = [f"{n[:-1]}.{n[-1]}" for n in (a.removeprefix("compute_") for a in kits[0]["nvcc_archs"] if a.startswith("compute_"))]
    assert listed
    out = invoke("plan", "demo-cuda", "--cuda", kits[0]["cuda_version"], "--arch", ";".join(listed), "--json")
    assert out.returncode == 0, out.stderr
    assert sorted(json.loads(out.stdout)["target"]["archs"]) == sorted(listed)


@pytest.mark.parametrize("arch", ["6.1", "5.2", "5.3", "6.2", "7.2"])
def test_arch_without_the_toolkit_is_checked_against_the_table(arch):
    """CUDA 11.8 is not installed here: the table knows these capabilities and that 11.8 builds them."""
    out = invoke("plan", "demo-cuda", "--cuda", "11.8", "--arch", arch, "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["target"]["archs"] == [arch]


def test_errors_come_in_the_order_a_user_needs_them():
    # 1. an unknown recipe, whatever else is wrong
    for task in ("build", "plan"):
        out = invoke(task, "nosuch", "--cuda", "11.8", "--arch", "12.0")
        assert out.returncode == 2 and out.stderr.startswith("error[recipe.not-found]: no recipe named 'nosuch'"), out.stderr
    # 2. the arch against the requested CUDA, before looking for that toolkit
    out = invoke("build", "demo-cuda", "--cuda", "11.8", "--arch", "12.0")
    assert out.returncode == 2 and out.stderr.startswith("error[arch.toolkit-too-old]: sm_120 needs CUDA >= 12.8"), out.stderr
    plan = invoke("plan", "demo-cuda", "--cuda", "11.8", "--arch", "12.0")
    assert plan.stderr == out.stderr
    # 3. the toolkit: the one found is named, and how to use it
    found = [k["cuda_version"] for k in _toolkits() if k.get("cuda_version")]
    absent = next(v for v in ("12.6", "12.5", "12.4") if v not in found)
    out = invoke("build", "demo-cuda", "--cuda", absent, "--arch", "9.0")
    assert out.returncode != 0
    if found:
        assert out.stderr.startswith(f"error[toolchain.cuda-mismatch]: the target asks for CUDA {absent}, which is not installed; found CUDA {found[0]} at ")
        assert "--cuda auto" in out.stderr and 'cuda = "auto" under [tool.wheelforge]' in out.stderr
    else:
        assert out.stderr.startswith("error[toolchain.no-cuda]")


def test_farm_status_names_a_build_for_another_cuda(tmp_path):
    """The wheelhouse holds demo-cuda built with --cuda auto on CUDA 13.0; the farm's target is 12.8."""
    import json as _json

    sys.path.insert(0, str(REPO / "tests"))
    from index_support import WheelSpec, add_entry

    wheel = "demo_cuda-0.1.0+cu130.sm120-cp311-cp311-linux_x86_64.whl"
    entry = add_entry(tmp_path / "wh", WheelSpec(name="demo-cuda", version="0.1.0+cu130.sm120", tag="cp311-cp311-linux_x86_64"))
    manifest = tmp_path / "wh" / "entries" / entry["key"] / "entry.json"
    data = _json.loads(manifest.read_text())
    data["target"].update(cuda="13.0", label="cu130.sm120")
    manifest.write_text(_json.dumps(data))
    out = invoke("farm.status", "--recipe", "demo-cuda", "--python", "3.11", "--cuda", "12.8", "--wheelhouse", str(tmp_path / "wh"))
    assert out.returncode == 0, out.stderr
    assert f"demo-cuda-0.1.0-cp311-sm120  missing  a cu130 build exists: {wheel}" in out.stdout
    out = invoke("farm.status", "--recipe", "demo-cuda", "--python", "3.11", "--cuda", "auto", "--wheelhouse", str(tmp_path / "wh"))
    assert "present" in out.stdout and "1 present, 0 missing" in out.stdout


def test_serve_says_where_once_after_it_listens_and_nothing_when_it_cannot(tmp_path):
    import socket
    import urllib.request

    sys.path.insert(0, str(REPO / "tests"))
    from index_support import free_port, make_wheelhouse

    from wheelforge.serving.index import build_index

    empty = tmp_path / "empty"
    empty.mkdir()
    out = invoke("serve", "--wheelhouse", str(empty), "--port", str(free_port()))
    assert out.returncode == 2 and out.stderr.startswith("error[index.missing]") and "serving" not in out.stdout + out.stderr

    wh = make_wheelhouse(tmp_path / "wh")
    build_index(wh)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        out = invoke("serve", "--wheelhouse", str(wh), "--port", str(busy.getsockname()[1]))
    assert out.returncode == 2 and out.stderr.startswith("error[index.port-busy]") and "serving" not in out.stdout + out.stderr

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "invoke", "serve", "--wheelhouse", str(wh), "--port", str(port)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        first = proc.stdout.readline()
        assert first.startswith(f"serving {wh / 'index'} at http://127.0.0.1:{port}/"), first
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/simple/", timeout=10) as r:  # listening when it said so
            assert r.status == 200
    finally:
        proc.terminate()
        rest, _ = proc.communicate(timeout=20)
    assert "serving" not in rest, rest
