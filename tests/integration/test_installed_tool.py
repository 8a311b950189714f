"""wheelforge installed from the checkout into a fresh venv (as pip or pipx would) finds its bundled recipes,
patches, examples and post-build suite, and its ``wheelforge`` command runs the same tasks as ``invoke``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("installed") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    out = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(REPO)],
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    return venv


def test_plan_from_an_installed_wheelforge_lists_every_step(installed: Path, tmp_path: Path) -> None:
    out = subprocess.run([str(installed / "bin" / "wheelforge"), "plan", "demo-cuda", "--cuda", "auto", "--json"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)  # no checkout in sight
    assert out.returncode == 0, out.stderr
    plan = json.loads(out.stdout)
    assert [s["name"] for s in plan["steps"]] == ["fetch", "patch", "env", "compile", "label", "relocate", "audit", "store", "verify"]
    site = next((installed / "lib").glob("python3.*/site-packages"))
    assert plan["source"]["path"] == str(site / "wheelforge" / "bundled" / "examples" / "demo-cuda")
    lock = next(s for s in plan["steps"] if s["name"] == "env")["commands"][1]["argv"][-1]
    assert lock.startswith(str(site / "wheelforge" / "bundled" / "recipes" / "locks" / "demo-cuda"))
    # the installed copy of the example hashes like the checkout's: the same key from either
    checkout = subprocess.run([sys.executable, "-m", "invoke", "-r", str(REPO), "plan", "demo-cuda", "--cuda", "auto", "--json"],
                              capture_output=True, text=True, timeout=300)
    assert json.loads(checkout.stdout)["key"] == plan["key"]


def test_the_console_script_lists_the_same_tasks_as_invoke(installed: Path) -> None:
    ours = subprocess.run([str(installed / "bin" / "wheelforge"), "--list"], capture_output=True, text=True, timeout=60)
    theirs = subprocess.run([sys.executable, "-m", "invoke", "-r", str(REPO), "--list"], capture_output=True, text=True, timeout=60)
    assert ours.returncode == 0 and theirs.returncode == 0
    names = lambda text: sorted(line.split()[0] for line in text.splitlines() if line.startswith("  ") and line.split())  # noqa: E731
    assert names(ours.stdout) == names(theirs.stdout) and "build" in names(ours.stdout)
