"""A recipe that brings its own post-build test (examples/vector-add, documented in docs/recipes.md), built
through the CLI from a private recipe folder: a failing variant of its test module fails the build with exit
code 4 (VerifyError), the passing one passes; ``--allow-arch-mismatch`` reaches the test session; and a
recipe whose module is missing stops at planning, before any compile."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from build_support import cuda_build_root

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "vector-add"

#: Appended to the documented module: the flag as the session saw it (conftest's ``target``) and its variable.
FLAG_PROBE = '''

def test_allow_arch_mismatch_reached_the_session(target):
    import os

    assert target.allow_arch_mismatch is True
    assert os.environ["WHEELFORGE_ALLOW_ARCH_MISMATCH"] == "1"
'''
FAILING = '''

def test_kernel_library_built_for_sm_75(demo_cuda):
    """Deliberately wrong: the build is for the target's archs, not sm_75."""
    assert demo_cuda.arch_info()["cuda_architectures"] == ["75-real"]


def test_allow_arch_mismatch_off_by_default(target):
    assert target.allow_arch_mismatch is False
'''


def invoke(*args: str, cache: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHEELFORGE_")}
    env["WHEELFORGE_CACHE"] = str(cache)
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=REPO, capture_output=True, text=True, timeout=900, env=env)


def _variant(recipes: Path, name: str, extra: str) -> None:
    """``<name>.toml``: the example recipe under another name, its test module the documented one plus ``extra``."""
    text = (EXAMPLE / "recipes" / "vector-add.toml").read_text()
    text = text.replace('name = "vector-add"', f'name = "{name}"')
    text = text.replace('test_module = "../tests/test_vector_add.py"', f'test_module = "../tests/test_{name.replace("-", "_")}.py"')
    text = text.replace('path = "../../demo-cuda"', f'path = "{REPO / "examples" / "demo-cuda"}"')
    (recipes / f"{name}.toml").write_text(text)
    module = (EXAMPLE / "tests" / "test_vector_add.py").read_text() + extra
    (recipes.parent / "tests" / f"test_{name.replace('-', '_')}.py").write_text(module)
    # the example's build locks (same [build] requires, so the same lock whatever the recipe's name)
    shutil.copytree(EXAMPLE / "recipes" / "locks" / "vector-add", recipes / "locks" / name)


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two builds of the example from one private recipe folder (different names, so different keys)."""
    root = cuda_build_root(tmp_path_factory, "own-tests")
    recipes = root / "recipes"
    recipes.mkdir()
    (root / "tests").mkdir()
    _variant(recipes, "vector-add", FLAG_PROBE)
    _variant(recipes, "vector-add-broken", FAILING)
    common = ["--recipes-dir", str(recipes), "--cuda", "auto", "--wheelhouse", str(root / "wh"), "--compiler-cache", "none"]
    passing = invoke("build", "vector-add", *common, "--allow-arch-mismatch", cache=root / "cache")
    failing = invoke("build", "vector-add-broken", *common, cache=root / "cache")
    return {"root": root, "wh": root / "wh", "passing": passing, "failing": failing}


def _verify_json(wh: Path, recipe: str) -> dict:
    (entry,) = [d for d in (wh / "entries").iterdir() if json.loads((d / "entry.json").read_text())["recipe"] == recipe]
    return json.loads((entry / "verify.json").read_text())


def test_the_passing_module_passes_the_build(builds: dict) -> None:
    out = builds["passing"]
    assert out.returncode == 0, out.stderr[-3000:]
    report = _verify_json(builds["wh"], "vector-add")
    assert report["result"] == "passed"
    assert sorted(report["modules"]) == ["test_vector_add.py", "test_wheel_static.py"]
    outcomes = {t["name"]: t["outcome"] for t in report["tests"]}
    assert outcomes["test_vector_add::test_kernel_library_built_for_the_target_archs"] == "passed"
    # no GPU here: the kernel test is skipped, and says why; on a GPU it runs
    assert outcomes["test_vector_add::test_add_runs_the_kernel_in_the_wheel"] in ("skipped", "passed")


def test_allow_arch_mismatch_reaches_the_tests(builds: dict) -> None:
    """build --allow-arch-mismatch -> Request.verify_options -> steps.verify -> suite.verify -> the pytest session."""
    report = _verify_json(builds["wh"], "vector-add")
    outcomes = {t["name"]: t["outcome"] for t in report["tests"]}
    assert outcomes["test_vector_add::test_allow_arch_mismatch_reached_the_session"] == "passed", report["tests"]


def test_the_failing_module_fails_the_build_with_exit_code_4(builds: dict) -> None:
    out = builds["failing"]
    assert out.returncode == 4, out.stderr[-3000:]
    lines = out.stderr.strip().splitlines()
    assert lines[-2].startswith("error[verify.failed]: demo_cuda-0.1.0+") and lines[-1].startswith("hint: "), lines[-4:]
    assert "test_vector_add_broken::test_kernel_library_built_for_sm_75" in lines[-2]
    assert "Traceback" not in out.stderr
    report = _verify_json(builds["wh"], "vector-add-broken")
    outcomes = {t["name"]: t["outcome"] for t in report["tests"]}
    assert report["result"] == "failed"
    assert outcomes["test_vector_add_broken::test_kernel_library_built_for_sm_75"] == "failed"
    assert outcomes["test_vector_add_broken::test_allow_arch_mismatch_off_by_default"] == "passed"


def test_a_missing_test_module_stops_the_plan_before_any_compile(tmp_path: Path) -> None:
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    text = (EXAMPLE / "recipes" / "vector-add.toml").read_text().replace('path = "../../demo-cuda"', f'path = "{REPO / "examples" / "demo-cuda"}"')
    (recipes / "vector-add.toml").write_text(text)
    for task in (["plan", "vector-add", "--cuda", "12.8"], ["build", "vector-add", "--cuda", "auto", "--wheelhouse", str(tmp_path / "wh")]):
        out = invoke(*task, "--recipes-dir", str(recipes), cache=tmp_path / "cache")
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
        lines = out.stderr.strip().splitlines()
        assert lines[-2] == (f"error[recipe.no-test-module]: {recipes / 'vector-add.toml'}: key 'test_module': "
                             f"'../tests/test_vector_add.py' names {tmp_path / 'tests' / 'test_vector_add.py'}, which is not a file")
        assert lines[-1].startswith("hint: ")
    assert not (tmp_path / "wh" / "logs").exists()  # nothing was built


def test_a_failed_entry_is_never_up_to_date_and_never_served(builds: dict) -> None:
    """The next build of a failed key runs its suite again (and fails again, exit 4) instead of saying "up to date";
    --no-verify does not wave it through; the index leaves it out."""
    common = ["--recipes-dir", str(builds["root"] / "recipes"), "--cuda", "auto", "--wheelhouse", str(builds["wh"]), "--compiler-cache", "none"]
    again = invoke("build", "vector-add-broken", *common, cache=builds["root"] / "cache")
    assert again.returncode == 4, again.stderr[-3000:]
    assert "failed its post-build suite before: running it again" in again.stderr and "up to date" not in again.stdout
    skipped = invoke("build", "vector-add-broken", *common, "--no-verify", cache=builds["root"] / "cache")
    assert skipped.returncode == 4 and "error[verify.failed-before]" in skipped.stderr, skipped.stderr[-2000:]
    idx = invoke("index", "--wheelhouse", str(builds["wh"]), cache=builds["root"] / "cache")
    assert idx.returncode == 0, idx.stderr
    # both recipes build demo-cuda's project: the same file name and, builds being reproducible, the same bytes;
    # the failed entry is left out with a warning, the verified one is what the URL serves
    failed = next(d for d in (builds["wh"] / "entries").iterdir() if json.loads((d / "entry.json").read_text())["recipe"] == "vector-add-broken")
    manifest = json.loads((failed / "entry.json").read_text())
    assert manifest["state"] == "failed"
    assert f"not served: {manifest['wheel']} is failed" in idx.stderr
    page = json.loads((builds["wh"] / "index" / "simple" / "demo-cuda" / "index.json").read_text())
    passed = next(d for d in (builds["wh"] / "entries").iterdir() if json.loads((d / "entry.json").read_text())["recipe"] == "vector-add")
    assert [f["hashes"]["sha256"] for f in page["files"]] == [json.loads((passed / "entry.json").read_text())["sha256"]]
