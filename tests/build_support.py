"""Helpers for the build-engine integration tests: run `pipeline.build` in a child process.

A child process is what the CLI is, and the concurrency and kill -9 tests need real processes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NVCC = Path("/usr/local/cuda/bin/nvcc")


def cuda_build_root(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """A fresh folder for real nvcc builds; the test is skipped where the CUDA toolkit is not at /usr/local/cuda."""
    if not NVCC.exists():
        pytest.skip("needs the CUDA toolkit at /usr/local/cuda")
    return tmp_path_factory.mktemp(name)

_SCRIPT = """
import json, sys
from wheelforge.model.settings import resolve_settings
from wheelforge.model.errors import WheelforgeError
from wheelforge.build.pipeline import build
from wheelforge.model.report import Reporter
class Echo(Reporter):  # what `invoke build -v` shows: every command and output line
    def log(self, line): print(line, flush=True)
    def note(self, line): print(line, flush=True)
args = json.loads(sys.argv[1])
settings = resolve_settings(args["flags"], pyproject={"sccache": args.get("sccache", {})})
try:
    results = build([args["recipe"]], settings=settings, verify=False, reporter=Echo(), no_isolation=args.get("no_isolation", False))
except WheelforgeError as exc:
    print(exc.render(), flush=True)
    sys.exit(exc.exit_code)
for r in results:
    print("RESULT " + json.dumps({"key": r.key, "wheel": str(r.wheel), "noop": r.noop, "cache": r.cache}), flush=True)
"""


def build_args(wheelhouse: Path, cache: Path, *, arch: str = "12.0", recipe: str = "demo-cuda", jobs: int | None = None,
               sccache: dict[str, str] | None = None, compiler_cache: str = "auto", no_isolation: bool = False) -> list[str]:
    """``no_isolation``: build with this interpreter's cmake, ninja and scikit-build-core (test extras) instead of
    filling a build venv, for tests about something other than the build venv."""
    flags = {"cuda": "13.0", "arch": arch, "wheelhouse": str(wheelhouse), "cache": str(cache), "compiler_cache": compiler_cache}
    if jobs:
        flags["jobs"] = jobs
    return [sys.executable, "-c", _SCRIPT, json.dumps({"recipe": recipe, "flags": flags, "sccache": sccache or {},
                                                       "no_isolation": no_isolation})]


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    return env


def start_build(log: Path, *args: object, **kwargs: object) -> subprocess.Popen[str]:
    out = open(log, "w", encoding="utf-8")  # noqa: SIM115 - closed by the caller via finish()
    return subprocess.Popen(build_args(*args, **kwargs), stdout=out, stderr=subprocess.STDOUT, text=True, env=child_env(),
                            start_new_session=True)


def finish(proc: subprocess.Popen[str], log: Path, timeout: float = 900) -> tuple[int, str, list[dict]]:
    rc = proc.wait(timeout=timeout)
    text = log.read_text(encoding="utf-8")
    results = [json.loads(line[7:]) for line in text.splitlines() if line.startswith("RESULT ")]
    return rc, text, results


def entries(wheelhouse: Path) -> list[Path]:
    d = wheelhouse / "entries"
    return sorted(p for p in d.iterdir() if p.is_dir()) if d.is_dir() else []
