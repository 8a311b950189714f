"""README command 1 on a copy of this checkout: wheelforge lands in the copy's .venv, the system interpreter
gets nothing, a second bootstrap is a no-op, and the whole command run again after ``bootstrap.sh --test``
builds nothing (installing the test tools changes no key)."""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from readme_support import readme_commands

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


@pytest.fixture(scope="module")
def checkout_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The files git tracks or would track, copied: what a fresh clone holds, with this work tree's changes."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO, capture_output=True,
                           check=True).stdout.decode().split("\0")
    clone = tmp_path_factory.mktemp("bootstrap") / "checkout"
    for rel in filter(None, files):
        src = REPO / rel
        if src.is_file():
            (clone / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, clone / rel)
    return clone


def test_bootstrap_installs_wheelforge_into_the_project_venv_only(checkout_copy: Path):
    clone = checkout_copy
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


def test_the_main_command_again_after_the_test_bootstrap_builds_nothing(checkout_copy: Path):
    """README command 1, ``bootstrap.sh --test``, command 1 again: the second build is "up to date"."""
    main = readme_commands()[0]
    env = _system_env()
    first = subprocess.run(["bash", "-c", main], cwd=checkout_copy, env=env, capture_output=True, text=True, timeout=1800)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "demo-cuda: built " in first.stdout + first.stderr
    tools = subprocess.run(["bash", "scripts/bootstrap.sh", "--test"], cwd=checkout_copy, env=env, capture_output=True, text=True,
                           timeout=1800)
    assert tools.returncode == 0, tools.stdout[-3000:] + tools.stderr[-3000:]
    again = subprocess.run(["bash", "-c", main], cwd=checkout_copy, env=env, capture_output=True, text=True, timeout=1800)
    out = again.stdout + again.stderr
    assert again.returncode == 0, out[-3000:]
    assert "demo-cuda: up to date -> " in out and "demo-cuda: built " not in out, out[-3000:]
