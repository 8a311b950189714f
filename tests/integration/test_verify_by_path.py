"""``invoke verify <path>`` runs the same suite as ``invoke verify <recipe>``, and a reduced run never replaces a
fuller verify.json.  Real venvs, pip and pytest; the wheel is a synthetic CUDA wheel in a wheelhouse entry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from variant_support import add_cuda_entry

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]

RECIPE = """name = "gate-kernels"
kind = "pep517"
ram_per_job_gb = 1
test_module = "tests/test_gate_kernels.py"
default_version = "1.0.0"
[env]
[build]
[versions."1.0.0"]
source = { type = "path", path = "." }
"""
MODULE = '''"""The recipe's own post-build module: it imports the wheel's package."""
import pytest

pytestmark = pytest.mark.postbuild


def test_package_imports_with_its_version(target):
    import gate_kernels

    assert gate_kernels.__version__.endswith("+" + target.local_label)
'''


def invoke(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHEELFORGE_")}
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=REPO, capture_output=True, text=True, timeout=600, env=env)


@pytest.fixture(scope="module")
def house(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("verify-by-path")
    recipes = root / "recipes"
    (recipes / "tests").mkdir(parents=True)
    (recipes / "gate-kernels.toml").write_text(RECIPE)
    (recipes / "tests" / "test_gate_kernels.py").write_text(MODULE)
    wh = root / "wheelhouse"
    entry = add_cuda_entry(wh, "gate-kernels", "cu130.sm120", sass=(120,))
    entry_dir = wh / "entries" / entry["key"]
    return {"recipes": recipes, "wheelhouse": wh, "entry_dir": entry_dir, "wheel": entry_dir / entry["wheel"]}


@pytest.fixture(scope="module")
def full_run(house: dict) -> subprocess.CompletedProcess:
    return invoke("verify", str(house["wheel"]), "--wheelhouse", str(house["wheelhouse"]), "--recipes-dir", str(house["recipes"]))


def test_verify_by_path_runs_the_recipes_whole_suite(house: dict, full_run: subprocess.CompletedProcess) -> None:
    assert full_run.returncode == 0, full_run.stderr[-3000:]
    stored = json.loads((house["entry_dir"] / "verify.json").read_text())
    assert stored["result"] == "passed"
    assert sorted(stored["modules"]) == ["test_gate_kernels.py", "test_wheel_static.py"]
    assert "test_gate_kernels::test_package_imports_with_its_version" in [t["name"] for t in stored["tests"]]
    assert f"note: entry {house['entry_dir'].name}: the suite of recipe gate-kernels" in full_run.stderr


def test_a_reduced_run_keeps_the_fuller_verify_json(house: dict, full_run: subprocess.CompletedProcess) -> None:
    """Without the recipe folder the entry's recipe is unknown: static checks only, and verify.json stays."""
    assert full_run.returncode == 0, full_run.stderr[-3000:]
    before = (house["entry_dir"] / "verify.json").read_text()

    out = invoke("verify", str(house["wheel"]), "--wheelhouse", str(house["wheelhouse"]))

    assert out.returncode == 0, out.stderr[-3000:]
    assert "which no recipe folder holds: static checks only" in out.stderr
    assert "note: verify.json keeps the fuller run of " in out.stderr
    assert "(test_wheel_static.py; 4 tests run) was not stored" in out.stderr
    assert (house["entry_dir"] / "verify.json").read_text() == before
