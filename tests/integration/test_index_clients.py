"""Real installers in fresh venvs against the served index: pip, uv, and pip --require-hashes."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from index_support import LABEL, child_env, make_wheelhouse, running_server  # noqa: E402

from wheelforge.serving.index import build_index, require_hashes  # noqa: E402

pytestmark = pytest.mark.integration

PIN = f"demo-pkg==1.0.0+{LABEL}"
WHEEL = f"demo_pkg-1.0.0+{LABEL}-py3-none-any.whl"


def run(cmd, **kw):
    print("+", " ".join(map(str, cmd)), flush=True)
    return subprocess.run([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=child_env(), **kw)


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory):
    path = tmp_path_factory.mktemp("venv") / "v"
    venv.EnvBuilder(with_pip=True, clear=True).create(path)
    return path


def installed_version(python: Path) -> str:
    out = run([python, "-c", "import demo_pkg; print(demo_pkg.__version__)"])
    assert out.returncode == 0, out.stdout
    return out.stdout.strip()


def test_pip_installs_labelled_wheel_from_index_only(tmp_path, fresh_venv):
    wh = make_wheelhouse(tmp_path / "wh")
    build_index(wh, include_unverified=True)  # the fixture holds failed and unverified entries too
    py = fresh_venv / "bin/python"
    with running_server(wh) as base:
        out = run([py, "-m", "pip", "install", "--no-cache-dir", "--index-url", f"{base}/simple/", PIN])
        assert out.returncode == 0, out.stdout
    assert installed_version(py) == f"1.0.0+{LABEL}"
    run([py, "-m", "pip", "uninstall", "-y", "demo-pkg"])


def test_uv_installs_through_an_explicit_index(tmp_path):
    wh = make_wheelhouse(tmp_path / "wh")
    build_index(wh, include_unverified=True)  # the fixture holds failed and unverified entries too
    project = tmp_path / "consumer"
    project.mkdir()
    with running_server(wh) as base:
        (project / "pyproject.toml").write_text(
            f"""[project]
name = "consumer"
version = "0.1.0"
requires-python = ">=3.9"
dependencies = ["{PIN}"]

[[tool.uv.index]]
name = "wheelforge"
url = "{base}/simple/"
explicit = true

[tool.uv.sources]
demo-pkg = {{ index = "wheelforge" }}
"""
        )
        env_extra = {"UV_CACHE_DIR": str(tmp_path / "uv-cache"), "UV_PYTHON_DOWNLOADS": "never", "UV_PYTHON": sys.executable}
        cmd = [sys.executable, "-m", "uv", "sync", "--no-progress"]
        print("+", " ".join(cmd), flush=True)
        out = subprocess.run(cmd, cwd=project, env=child_env(**env_extra), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert out.returncode == 0, out.stdout
    lock = (project / "uv.lock").read_text()
    assert f'source = {{ registry = "{base}/simple/" }}' in lock and "1.0.0+cu128.sm120" in lock
    assert installed_version(project / ".venv/bin/python") == f"1.0.0+{LABEL}"


def test_require_hashes_refuses_a_flipped_byte(tmp_path, fresh_venv):
    wh = make_wheelhouse(tmp_path / "wh")
    build_index(wh, include_unverified=True)  # the fixture holds failed and unverified entries too
    req = tmp_path / "req.txt"
    req.write_text(require_hashes(wh, [PIN]))
    # Corrupt the served copy only (it is a hardlink of the entry: replace it, never edit in place).
    served = wh / "index/files" / WHEEL
    data = bytearray(served.read_bytes())
    data[len(data) // 2] ^= 0xFF
    tmp = served.with_suffix(".tmp")
    tmp.write_bytes(bytes(data))
    os.replace(tmp, served)
    py = fresh_venv / "bin/python"
    with running_server(wh) as base:
        out = run([py, "-m", "pip", "install", "--no-cache-dir", "--require-hashes", "--index-url", f"{base}/simple/", "-r", req])
    assert out.returncode != 0
    assert "DO NOT MATCH THE HASHES" in out.stdout, out.stdout
    assert run([py, "-c", "import demo_pkg"]).returncode != 0


def test_require_hashes_file_installs_the_intact_wheel(tmp_path, fresh_venv):
    wh = make_wheelhouse(tmp_path / "wh")
    build_index(wh, include_unverified=True)  # the fixture holds failed and unverified entries too
    req = tmp_path / "req.txt"
    req.write_text(require_hashes(wh, [PIN]))
    py = fresh_venv / "bin/python"
    with running_server(wh) as base:
        out = run([py, "-m", "pip", "install", "--no-cache-dir", "--require-hashes", "--index-url", f"{base}/simple/", "-r", req])
    assert out.returncode == 0, out.stdout
    assert installed_version(py) == f"1.0.0+{LABEL}"
    run([py, "-m", "pip", "uninstall", "-y", "demo-pkg"])


@pytest.mark.parametrize(
    "cutoff, expected",
    [
        ("2025-03-01T00:00:00Z", None),  # before every build: nothing to find
        ("2025-04-15T00:00:00Z", f"demo_pkg-0.9.0+{LABEL}-py3-none-any.whl"),  # only the April build existed
        ("2025-05-01T12:00:01Z", WHEEL),  # one second after the May build
    ],
)
def test_pip_uploaded_prior_to_sees_only_earlier_builds(tmp_path, cutoff, expected):
    """PEP 700 upload-time comes from each entry's built_at (1.0.0: 2025-05-01T12:00Z, 0.9.0: 2025-04-01T08:00Z)."""
    wh = make_wheelhouse(tmp_path / "wh")
    build_index(wh, include_unverified=True)  # the fixture holds failed and unverified entries too
    dest = tmp_path / "dl"
    with running_server(wh) as base:
        # pip >= 26.0 (test extras) has --uploaded-prior-to; it reads upload-time from the JSON pages.
        out = run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir", "-d", dest, "--index-url", f"{base}/simple/",
                   "--uploaded-prior-to", cutoff, "demo-pkg"])
    if expected is None:
        assert out.returncode != 0 and "No matching distribution found for demo-pkg" in out.stdout, out.stdout
        assert not dest.exists() or not list(dest.iterdir())
    else:
        assert out.returncode == 0, out.stdout
        assert [p.name for p in dest.iterdir()] == [expected]
