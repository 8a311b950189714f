"""`invoke index --print-config` as users run it: every snippet it prints, used as printed against a served index.

The wheelhouse holds tiny real wheels under the names and labels wheelforge gives its builds; pip installs
with the printed command and with the printed --require-hashes file, and uv locks and syncs the printed
pyproject.toml as a project of its own.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from index_support import WheelSpec, child_env, make_wheelhouse, running_server  # noqa: E402

from wheelforge.serving.index import build_index  # noqa: E402

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
SPECS = [
    WheelSpec(name="demo-cuda", version="0.1.0+cu130.sm120", built_at="2026-01-01T00:00:00Z"),
    WheelSpec(name="demo-cuda", version="0.1.0+cu130.sm90", built_at="2026-02-01T00:00:00Z"),  # newer, other arch
    WheelSpec(name="llama-cpp-python", version="0.3.36+cu130.sm120", requires_python=">=3.9"),
]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    wh = make_wheelhouse(tmp_path_factory.mktemp("printcfg") / "wh", SPECS)
    build_index(wh)
    with running_server(wh) as base:
        out = subprocess.run([sys.executable, "-m", "invoke", "index", "--print-config", "--wheelhouse", str(wh), "--base-url", base],
                             cwd=REPO, capture_output=True, text=True, timeout=120, env=child_env())
        assert out.returncode == 0, out.stderr
        yield base, out.stdout


def sections(text: str) -> dict[str, str]:
    """'pip', 'requirements-hashes.txt', 'pyproject.toml' -> the lines under each '# == ... ==' header."""
    out: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("# == "):
            current = line[5:].split(":", 1)[0].split()[0]
            out[current] = []
        elif current:
            out[current].append(line)
    return {k: "\n".join(v).strip() + "\n" for k, v in out.items()}


def fresh_venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    return path / "bin" / "python"


def installed(python: Path, name: str) -> str:
    return subprocess.run([str(python), "-c", f"import importlib.metadata as m; print(m.version({name!r}))"],
                          capture_output=True, text=True, check=True).stdout.strip()


def test_pins_are_what_the_wheelhouse_holds(served):
    _, text = served
    assert "<project>" not in text and "<version>" not in text
    assert set(sections(text)) == {"pip", "requirements-hashes.txt", "pyproject.toml"}
    # the configured arch (12.0) first, even though the sm90 build is newer; the other is named
    assert "'demo-cuda==0.1.0+cu130.sm120' 'llama-cpp-python==0.3.36+cu130.sm120'" in text
    assert "# also in the index: demo-cuda==0.1.0+cu130.sm90" in text
    assert "extra-index-url" not in "\n".join(line for line in text.splitlines() if not line.startswith("#"))


def test_pip_command_as_printed(served, tmp_path):
    base, text = served
    (command,) = [line for line in sections(text)["pip"].splitlines() if not line.startswith("#")]
    argv = shlex.split(command)
    assert argv[:2] == ["pip", "install"]
    python = fresh_venv(tmp_path / "venv")
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), *argv[1:]], capture_output=True, text=True,
                          env=child_env(), timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert installed(python, "demo-cuda") == "0.1.0+cu130.sm120"
    assert installed(python, "llama-cpp-python") == "0.3.36+cu130.sm120"


def test_require_hashes_file_as_printed(served, tmp_path):
    base, text = served
    body = sections(text)["requirements-hashes.txt"]
    (how,) = [line[1:].strip() for line in body.splitlines() if line.startswith("#")]
    req = tmp_path / "requirements-hashes.txt"
    req.write_text(body)
    argv = shlex.split(how)
    assert argv[:2] == ["pip", "install"] and "--require-hashes" in argv
    python = fresh_venv(tmp_path / "venv")
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), *argv[1:]], cwd=tmp_path, capture_output=True,
                          text=True, env=child_env(), timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert installed(python, "demo-cuda") == "0.1.0+cu130.sm120"


def test_uv_project_as_printed(served, tmp_path):
    """The pyproject.toml is a project on its own: uv sync locks it and installs the pinned wheels from our index."""
    base, text = served
    project = tmp_path / "app"
    project.mkdir()
    (project / "pyproject.toml").write_text(sections(text)["pyproject.toml"])
    env = child_env(UV_CACHE_DIR=str(tmp_path / "uv-cache"), UV_PYTHON_DOWNLOADS="never", UV_PYTHON=sys.executable)
    proc = subprocess.run([sys.executable, "-m", "uv", "sync", "--no-progress"], cwd=project, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f'registry = "{base}/simple/"' in (project / "uv.lock").read_text()
    assert installed(project / ".venv" / "bin" / "python", "demo-cuda") == "0.1.0+cu130.sm120"
