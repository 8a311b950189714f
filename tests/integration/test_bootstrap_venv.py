"""README command 1's first half on a copy of this checkout: wheelforge lands in the copy's .venv, the system
interpreter gets nothing, and a second run is a no-op."""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]


def _system_env() -> dict[str, str]:
    """This environment without the venv the tests run in: `python3` is the machine's interpreter again."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    here = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p and p != here)
    return env


def _system_packages(env: dict[str, str]) -> str:
    proc = subprocess.run(["python3", "-m", "pip", "list", "--format=freeze", "--disable-pip-version-check"], env=env,
                          capture_output=True, text=True, timeout=120)
    return proc.stdout if proc.returncode == 0 else f"no pip ({proc.returncode})"


def test_bootstrap_installs_wheelforge_into_the_project_venv_only(tmp_path):
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO, capture_output=True,
                           check=True).stdout.decode().split("\0")
    clone = tmp_path / "checkout"
    for rel in filter(None, files):
        src = REPO / rel
        if src.is_file():
            (clone / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, clone / rel)
    env = _system_env()
    before = _system_packages(env)

    first = subprocess.run(["bash", "scripts/bootstrap.sh"], cwd=clone, env=env, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stdout + first.stderr
    assert _system_packages(env) == before  # nothing new, nothing upgraded

    venv = clone / ".venv"
    where = subprocess.run([str(venv / "bin/python"), "-c", "import wheelforge; print(wheelforge.__file__)"], capture_output=True,
                           text=True, check=True).stdout.strip()
    assert Path(where).resolve().is_relative_to((clone / "src").resolve())  # editable: the checkout's own source
    listed = subprocess.run([str(venv / "bin/invoke"), "--list"], cwd=clone, capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0 and "farm.status" in listed.stdout, listed.stderr

    t0 = time.monotonic()
    again = subprocess.run(["bash", "scripts/bootstrap.sh"], cwd=clone, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert time.monotonic() - t0 < 10, "a second bootstrap reinstalled what the venv already had"
